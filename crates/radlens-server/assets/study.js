import { api, el, interval, showUser } from './api.js';
import { Viewer } from './viewer.js';

const studyId = Number(location.pathname.split('/').pop());
const $ = id => document.getElementById(id);
const viewer = new Viewer($('viewer'), s => { $('viewer-status').textContent = s; });
// tests and the console reach the page's state here
window.radlens = { viewer, studyId, ready: false, draft: null };

function showError(e) { $('page-error').textContent = e.message ?? String(e); }


// ---- tabs
for (const b of document.querySelectorAll('[role=tab]')) {
  b.addEventListener('click', () => {
    for (const t of document.querySelectorAll('[role=tab]')) t.setAttribute('aria-selected', t === b);
    for (const p of document.querySelectorAll('[data-panel]')) p.hidden = p.dataset.panel !== b.dataset.tab;
  });
}

// ---- viewer controls
$('wl-reset').onclick = () => { viewer.invert = false; viewer.setWindow(0.5, 1); viewer.reset(); };
$('wl-invert').onclick = () => { viewer.invert = !viewer.invert; viewer.renderBase(); viewer.render(); };
$('show-ctr').onchange = e => { viewer.showCtr = e.target.checked; viewer.render(); };
$('opacity').oninput = e => { viewer.opacity = Number(e.target.value); viewer.render(); };

async function loadImage(url) {
  const img = new Image();
  img.src = url;
  await img.decode();
  return img;
}

async function showAnalysis(a) {
  const m = a.measurements;
  if (a.ctr_lines && m.ctr) viewer.ctr = { ...a.ctr_lines, label: `CTR ${interval(m.ctr)}` };
  $('legend').replaceChildren(...a.legend.map(([name, colour]) =>
    el('span', { class: 'muted' }, el('span', { class: 'swatch', style: `background:${colour}` }), name.replace('_', ' '), ' ')));
  const toggles = [];
  for (const o of a.overlays) {
    const on = o.name === 'structures';
    const box = el('input', { type: 'checkbox', 'data-overlay': o.name });
    box.checked = on;
    box.onchange = () => viewer.showOverlay(o.name, box.checked);
    toggles.push(el('label', {}, box, o.colour ? el('span', { class: 'swatch', style: `background:${o.colour}` }) : '', o.label));
    loadImage(o.url).then(img => viewer.setOverlay(o.name, img, box.checked)).catch(showError);
  }
  $('overlay-toggles').replaceChildren(...toggles);
  const rows = [
    ['CTR', interval(m.ctr)],
    [`Right lung area (${m.area_unit})`, interval(m.right_lung_area, 0)],
    [`Left lung area (${m.area_unit})`, interval(m.left_lung_area, 0)],
    ['Left/right area', interval(m.lung_ratio)],
    ['Plausible', m.plausibility.plausible ? 'yes' : `no: ${m.plausibility.problems.join('; ')}`],
    ['SSN samples', String(m.samples.samples)],
  ];
  $('measures').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  $('model-line').textContent = `Model ${a.model_version}; analysed ${a.created_at}. ${m.caveat}`;
}

// ---- jobs
async function waitForJob(job) {
  $('job').hidden = false;
  $('analyse').hidden = true;
  while (job && (job.state === 'queued' || job.state === 'running')) {
    $('job-stage').textContent = `Analysis ${job.state}: ${job.stage}`;
    $('job-bar').style.width = `${Math.round(100 * job.progress)}%`;
    await new Promise(r => setTimeout(r, 400));
    job = await api.get(`/api/jobs/${job.id}`);
  }
  if (job && job.state === 'failed') {
    $('job-error').textContent = `Analysis failed: ${job.error}`;
    $('analyse').hidden = false;
    return false;
  }
  $('job').hidden = true;
  return true;
}

$('analyse').onclick = async () => {
  try {
    $('job-error').textContent = '';
    const job = await api.post(`/api/studies/${studyId}/analyse`);
    if (await waitForJob(job)) await loadAnalysis();
  } catch (e) { showError(e); }
};

// ---- draft
function evidenceBoxes(evidence) {
  return evidence.filter(e => e.region_box).map(e => ({ ...e.region_box.pixels, label: e.region }));
}

function evidenceLine(s) {
  return s.evidence.map(e => `${e.measurement} ${interval(e.interval)} vs ${e.threshold} · ${e.region}`).join('; ');
}

let pinned = null;
function activate(li, s) {
  for (const x of document.querySelectorAll('li.sentence.active')) x.classList.remove('active');
  if (li) li.classList.add('active');
  viewer.setHighlights(s ? evidenceBoxes(s.evidence) : []);
}

function sentenceItem(s) {
  const li = el('li', { class: `sentence status-${s.status}`, 'data-sentence': s.id });
  const who = s.status === 'pending'
    ? el('span', { class: 'badge ai', title: 'AI-generated, not yet checked' }, 'AI')
    : el('span', { class: 'badge person' }, s.status);
  const conf = s.confidence === 'uncertain' ? el('span', { class: 'badge uncertain' }, 'uncertain') : '';
  const text = el('span', { class: 'text' }, s.text);
  const act = action => async () => {
    try {
      const body = { action };
      if (action === 'edit') body.text = li.querySelector('textarea').value;
      await api.post(`/api/studies/${studyId}/sentences/${s.id}`, body);
      await loadDraft();
    } catch (e) { showError(e); }
  };
  const edit = () => {
    const ta = el('textarea', { rows: 3 });
    ta.value = s.text;
    text.replaceWith(ta);
    li.querySelector('.actions').replaceChildren(
      el('button', { onclick: act('edit') }, 'Save'), el('button', { onclick: () => loadDraft() }, 'Cancel'));
    ta.focus();
  };
  li.append(who, conf, text,
    s.evidence.length ? el('div', { class: 'evidence' }, evidenceLine(s)) : '',
    ...s.prior.map(p => el('div', { class: 'evidence' }, `prior report (${p.relation}): “${p.sentence}”`)),
    el('div', { class: 'actions' },
      el('button', { onclick: act('accept') }, 'Accept'),
      el('button', { onclick: act('reject') }, 'Reject'),
      el('button', { onclick: edit }, 'Edit'),
      s.status !== 'pending' ? el('button', { onclick: act('reset') }, 'Restore AI text') : ''));
  li.addEventListener('mouseenter', () => { if (!pinned) activate(li, s); });
  li.addEventListener('mouseleave', () => { if (!pinned) activate(null, null); });
  text.addEventListener('click', () => {
    pinned = pinned === s.id ? null : s.id;
    activate(pinned ? li : null, pinned ? s : null);
  });
  return li;
}

async function loadDraft() {
  const d = await api.get(`/api/studies/${studyId}/draft`);
  window.radlens.draft = d;
  $('not-assessable').textContent = d.not_assessable ?? '';
  $('sentences').replaceChildren(...d.sentences.map(sentenceItem));
  $('draft-empty').hidden = d.sentences.length > 0;
  $('caveat').textContent = d.caveat;
  if (d.signed) {
    $('signed-status').textContent = `Signed by ${d.signed.author} at ${d.signed.signed_at}` +
      (d.signed.version > 1 ? ` (amendment ${d.signed.version - 1})` : '');
    $('fhir-link').hidden = false;
    $('fhir-link').href = `/api/studies/${studyId}/fhir`;
  }
  const edits = await api.get(`/api/studies/${studyId}/edits`);
  $('history-list').replaceChildren(...edits.map(e =>
    el('li', {}, `${e.at} ${e.author} ${e.action} #${e.sentence_id}: “${e.text}”`)));
}

$('sign').onclick = async () => {
  try {
    const r = await api.post(`/api/studies/${studyId}/sign`);
    await loadDraft();
    if (r.left_out_pending) $('signed-status').textContent += ` · ${r.left_out_pending} unchecked AI sentence(s) left out`;
  } catch (e) { showError(e); }
};

// ---- review
// A span's offsets count characters (code points) within its sentence, as the labeller
// does; a JS string indexes UTF-16 units, so slice the sentence's code points.
function marked(span, flags) {
  const chars = Array.from(span.sentence);
  const mine = flags.filter(f => f.span && f.span.sentence_start === span.sentence_start).sort((a, b) => a.span.start - b.span.start);
  const out = [];
  let at = 0;
  for (const f of mine) {
    if (f.span.start < at) continue;
    out.push(chars.slice(at, f.span.start).join(''));
    out.push(el('mark', { class: `flag ${f.severity}`, title: f.message }, chars.slice(f.span.start, f.span.end).join('')));
    at = f.span.end;
  }
  out.push(chars.slice(at).join(''));
  return el('p', {}, ...out);
}

$('review-run').onclick = async () => {
  try {
    const text = $('review-text').value;
    const r = await api.post(`/api/studies/${studyId}/review`, { text });
    const spans = new Map(r.flags.filter(f => f.span).map(f => [f.span.sentence_start, f.span]));
    $('review-marked').replaceChildren(...[...spans.values()].sort((a, b) => a.sentence_start - b.sentence_start).map(sp => marked(sp, r.flags)));
    $('review-flags').replaceChildren(...(r.flags.length ? r.flags.map(f => {
      const item = el('div', { class: 'flag-item', 'data-flag': f.kind },
        el('span', { class: `badge ${f.severity === 'uncertain' ? 'uncertain' : 'ai'}` }, `AI · ${f.kind}`),
        f.message, f.evidence.length ? el('div', { class: 'evidence' }, f.evidence.map(e => `${e.measurement} ${interval(e.interval)} · ${e.region}`).join('; ')) : '');
      item.addEventListener('mouseenter', () => { item.classList.add('active'); viewer.setHighlights(evidenceBoxes(f.evidence)); });
      item.addEventListener('mouseleave', () => { item.classList.remove('active'); viewer.setHighlights([]); });
      return item;
    }) : [el('p', { class: 'muted' }, 'No flags: the report agrees with what radlens measured.')]));
  } catch (e) { showError(e); }
};

// ---- search
$('search-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  try {
    const r = await api.get(`/api/studies/${studyId}/search?q=${encodeURIComponent($('search-q').value)}`);
    $('search-result').replaceChildren(el('p', {}, el('span', { class: 'badge ai' }, 'AI'), r.note));
    viewer.setHighlights(r.region_box ? [{ ...r.region_box.pixels, label: r.region }] : []);
  } catch (e) { showError(e); }
});

async function loadAnalysis() {
  const view = await api.get(`/api/studies/${studyId}`);
  if (view.analysis) {
    await showAnalysis(view.analysis);
    await loadDraft();
  } else {
    $('job').hidden = false;
    $('job-stage').textContent = 'Not analysed with the running model.';
    $('analyse').hidden = false;
  }
}

async function main() {
  await showUser();
  const view = await api.get(`/api/studies/${studyId}`);
  const s = view.study;
  document.title = `radlens · ${s.patient_key} ${s.study_date ?? ''}`;
  $('study-title').replaceChildren(el('a', { href: `/patients/${s.patient_id}`, title: 'patient timeline' }, s.patient_key),
    ` · ${s.study_date ?? 'date unknown'} · ${s.view ?? 'view unknown'} · ${s.file_name}`);
  const px = await api.bytes(`/api/studies/${studyId}/pixels`);
  viewer.setImage(new Uint16Array(px), s.width, s.height);
  if (!view.analysis && view.job && !(await waitForJob(view.job))) return;
  await loadAnalysis();
  window.radlens.ready = true;
}

main().catch(showError);
