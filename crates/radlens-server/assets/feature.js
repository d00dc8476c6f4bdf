// One latent of an SAE run: firing statistics, activation histogram, top and quantile
// examples with each token shaded by the latent's activation, concept probe scores.
import { api, el, showUser } from './api.js';

const [, , run, rawIndex] = location.pathname.split('/').map(decodeURIComponent);
const $ = id => document.getElementById(id);
const fmt = v => (v === null || v === undefined ? '–' : Number(v).toPrecision(3));

function context(ex, max) {
  return el('p', { class: 'context', 'data-activation': ex.activation }, ...ex.context.map((tok, i) => {
    const a = ex.context_activations[i];
    const shade = max > 0 ? Math.min(1, a / max) : 0;
    return el('span', {
      class: i === ex.focus ? 'tok focus' : 'tok',
      style: `background: rgba(255, 140, 0, ${shade.toFixed(3)})`,
      title: `activation ${fmt(a)}`,
    }, tok);
  }), el('span', { class: 'muted' }, ` ${fmt(ex.activation)} · report ${ex.doc}`));
}

function histogram(svg, h) {
  const ns = 'http://www.w3.org/2000/svg';
  const [w, ht, pad] = [480, 160, 24];
  const top = Math.max(1, ...h.counts);
  const bw = (w - 2 * pad) / Math.max(1, h.counts.length);
  svg.replaceChildren();
  h.counts.forEach((c, i) => {
    const r = document.createElementNS(ns, 'rect');
    const bh = (ht - 2 * pad) * c / top;
    Object.entries({ x: pad + i * bw, y: ht - pad - bh, width: Math.max(1, bw - 1), height: bh, class: 'bar' })
      .forEach(([k, v]) => r.setAttribute(k, v));
    const t = document.createElementNS(ns, 'title');
    t.textContent = `(${fmt(h.edges[i])}, ${fmt(h.edges[i + 1])}]: ${c}`;
    r.append(t);
    svg.append(r);
  });
  for (const [x, v, anchor] of [[pad, h.edges[0], 'start'], [w - pad, h.edges[h.edges.length - 1], 'end']]) {
    const t = document.createElementNS(ns, 'text');
    Object.entries({ x, y: ht - 6, 'text-anchor': anchor }).forEach(([k, val]) => t.setAttribute(k, val));
    t.textContent = fmt(v);
    svg.append(t);
  }
}

async function load(index) {
  const f = await api.get(`/api/features/${encodeURIComponent(run)}/${index}`);
  window.radlens = { feature: f };
  document.title = `radlens ${run} · latent ${f.index}`;
  $('feature-title').textContent = `${run} · latent ${f.index}`;
  $('feature-index').value = f.index;
  $('feature-stats').textContent = `Matryoshka group ${f.matryoshka_group} · fired on ${f.fires} tokens (${(100 * f.frequency).toPrecision(3)}%) · mean ${fmt(f.mean_activation)} · max ${fmt(f.max_activation)}`;
  histogram($('feature-histogram'), f.histogram);
  const max = f.max_activation ?? 0;
  $('feature-top').replaceChildren(...(f.top.length ? f.top.map(ex => context(ex, max)) : [el('p', { class: 'muted' }, 'This latent never fired.')]));
  const bins = [...new Set(f.quantiles.map(ex => ex.quantile))].sort((a, b) => b - a);
  $('feature-quantiles').replaceChildren(...bins.map(q => el('div', {},
    el('h3', {}, `activation quantile ${q + 1} (1 = weakest)`),
    ...f.quantiles.filter(ex => ex.quantile === q).map(ex => context(ex, max)))));
  $('feature-concepts-card').hidden = f.concepts.length === 0;
  document.querySelector('#feature-concepts tbody').replaceChildren(...f.concepts.map(c => el('tr', {},
    el('td', {}, c.finding), el('td', {}, c.rank + 1), el('td', {}, fmt(c.train_auroc)),
    el('td', {}, `${fmt(c.heldout_auroc)}${c.ci_low === null ? '' : ` [${fmt(c.ci_low)}, ${fmt(c.ci_high)}]`}`))));
}

function go(index) {
  if (!(index >= 0)) return;
  history.replaceState(null, '', `/features/${encodeURIComponent(run)}/${index}`);
  load(index).then(() => { $('page-error').textContent = ''; }).catch(e => { $('page-error').textContent = e.message; });
}

$('feature-go').addEventListener('submit', ev => { ev.preventDefault(); go(Number($('feature-index').value)); });
$('feature-prev').onclick = () => go(Number($('feature-index').value) - 1);
$('feature-next').onclick = () => go(Number($('feature-index').value) + 1);
showUser().then(() => load(Number(rawIndex))).catch(e => { $('page-error').textContent = e.message; });
