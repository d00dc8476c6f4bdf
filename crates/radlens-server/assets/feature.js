// One latent of an SAE run: firing statistics, activation histogram, top and quantile
// examples with each token shaded by the latent's activation, its explanations and their
// scores, concept probe scores, the
// decoder direction's logits and a steering box (when the server has the run's language
// model), and a search over the run's features.
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

// The run's link to a language model (`lm.status` 'ready' or 'unavailable' with a reason).
let runInfo = null;
const base = () => `/api/features/${encodeURIComponent(run)}`;

function logitList(list) {
  return list.map(t => el('li', {}, el('span', { class: 'tok' }, t.token), ` ${fmt(t.logit)}`));
}

async function loadLogits(index) {
  if (runInfo.lm.status !== 'ready') return;
  const l = await api.get(`${base()}/${index}/logits`);
  if (window.radlens.feature.index !== index) return; // another latent was opened meanwhile
  window.radlens.logits = l;
  $('feature-logits-top').replaceChildren(...logitList(l.top));
  $('feature-logits-bottom').replaceChildren(...logitList(l.bottom));
}

async function load(index) {
  const f = await api.get(`${base()}/${index}`);
  window.radlens = { ...window.radlens, feature: f, logits: null, steered: null };
  $('steer-result').hidden = true;
  $('steer-error').textContent = '';
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
  $('feature-explanations-card').hidden = f.explanations.length === 0;
  $('feature-explanations').replaceChildren(...f.explanations.map(x => el('li', { 'data-explainer': x.explainer },
    el('q', {}, x.text), el('span', { class: 'muted' }, ` · ${x.explainer}`),
    ...(x.scores.length ? x.scores.map(sc => el('span', { class: 'score', title: `${sc.n_positive} firing and ${sc.n_negative} non-firing examples` }, ` ${sc.scorer} ${fmt(sc.score)}`))
      : [el('span', { class: 'muted' }, ' · not scored')]))));
  $('feature-concepts-card').hidden = f.concepts.length === 0;
  document.querySelector('#feature-concepts tbody').replaceChildren(...f.concepts.map(c => el('tr', {},
    el('td', {}, c.finding), el('td', {}, c.rank + 1), el('td', {}, c.direction), el('td', {}, fmt(c.train_auroc)),
    el('td', {}, `${fmt(c.heldout_auroc)}${c.ci_low === null ? '' : ` [${fmt(c.ci_low)}, ${fmt(c.ci_high)}]`}`))));
  await loadLogits(f.index);
}

// Viewers read; steering runs the model, which radiologists and admins may do.
function showRun(info, user) {
  runInfo = info;
  const ready = info.lm.status === 'ready';
  const allowed = user.role !== 'viewer';
  $('steer-form').hidden = !(ready && allowed);
  $('steer-note').textContent = !ready
    ? `Steering is not available: ${info.lm.reason}.`
    : allowed
      ? `Generates a reply twice with ${info.lm.model} (same seed): as is, and with this feature steered at layer ${info.lm.layer}. The coefficient is in the SAE's activation units.`
      : 'Steering runs the language model, which needs a radiologist or admin account.';
  $('feature-logits-card').hidden = !ready;
}

async function steer() {
  const index = window.radlens.feature.index;
  const body = {
    prompt: $('steer-prompt').value,
    coef: Number($('steer-coef').value),
    mode: $('steer-mode').value,
    max_tokens: Number($('steer-max-tokens').value),
  };
  $('steer-run').disabled = true;
  $('steer-error').textContent = '';
  try {
    const r = await api.post(`${base()}/${index}/steer`, body);
    window.radlens.steered = r;
    $('steer-baseline').textContent = r.pair.baseline;
    $('steer-steered').textContent = r.pair.steered;
    $('steer-baseline-act').textContent = `feature's mean activation on the reply ${fmt(r.pair.baseline_activation)}`;
    $('steer-steered-act').textContent = `feature's mean activation on the reply ${fmt(r.pair.steered_activation)} (${r.mode} ${r.coef})`;
    $('steer-result').hidden = false;
  } catch (e) {
    $('steer-error').textContent = e.message;
  } finally {
    $('steer-run').disabled = false;
  }
}

const kinds = { explanation: 'explanation', concept: 'concept probe', token: 'top-example token' };
function hitScore(h) {
  if (h.score === null) return ' (not scored)';
  return { explanation: ` (best score ${fmt(h.score)})`, concept: ` (held-out AUROC ${fmt(h.score)})`, token: ` (${h.score} top examples)` }[h.kind] ?? '';
}
async function search(q) {
  const hits = await api.get(`${base()}/search?q=${encodeURIComponent(q)}`);
  window.radlens.search = hits;
  $('feature-search-results').replaceChildren(...(hits.length ? hits.map(h => el('li', { 'data-latent': h.index },
    el('a', { href: `/features/${encodeURIComponent(run)}/${h.index}`, onclick: ev => { ev.preventDefault(); go(h.index); } }, `latent ${h.index}`),
    ` · ${kinds[h.kind] ?? h.kind} `, el('span', { class: 'tok' }, h.text), hitScore(h)))
    : [el('li', { class: 'muted' }, `No feature matches "${q}".`)]));
}

function go(index) {
  if (!(index >= 0)) return;
  history.replaceState(null, '', `/features/${encodeURIComponent(run)}/${index}`);
  load(index).then(() => { $('page-error').textContent = ''; }).catch(e => { $('page-error').textContent = e.message; });
}

$('feature-go').addEventListener('submit', ev => { ev.preventDefault(); go(Number($('feature-index').value)); });
$('feature-prev').onclick = () => go(Number($('feature-index').value) - 1);
$('feature-next').onclick = () => go(Number($('feature-index').value) + 1);
$('steer-form').addEventListener('submit', ev => { ev.preventDefault(); steer(); });
$('feature-search').addEventListener('submit', ev => {
  ev.preventDefault();
  search($('feature-search-q').value.trim()).catch(e => { $('page-error').textContent = e.message; });
});
window.radlens = {};
showUser()
  .then(user => Promise.all([user, api.get('/api/features')]))
  .then(([user, runs]) => {
    const info = runs.find(r => r.name === run);
    if (!info) throw new Error(`no SAE run '${run}'`);
    showRun(info, user);
    return load(Number(rawIndex));
  })
  .catch(e => { $('page-error').textContent = e.message; });
