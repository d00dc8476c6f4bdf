import { api, el, interval, showUser } from './api.js';
import { Viewer } from './viewer.js';

const patientId = Number(location.pathname.split('/').pop());
const $ = id => document.getElementById(id);
window.radlens = { ready: false, viewers: [] };

const NAMES = {
  ctr: 'Cardiothoracic ratio', lung_ratio: 'Left/right lung area ratio', right_lung_area: 'Right lung area',
  left_lung_area: 'Left lung area', opacity_extent_right: 'Opacity extent, right lung', opacity_extent_left: 'Opacity extent, left lung',
};

async function card(t) {
  const s = t.study;
  const canvas = el('canvas', { class: 'thumb', 'data-study': s.id });
  const m = t.measurements;
  const node = el('div', { class: 'study-card' },
    el('div', {}, el('strong', {}, s.study_date ?? 'date unknown'), ` · ${s.view ?? 'view unknown'} · `,
      el('a', { href: `/studies/${s.id}` }, 'open')),
    canvas,
    el('div', { class: 'muted' }, m ? `CTR ${interval(m.ctr)}` : `not analysed (${t.job ? t.job.state : 'no job'})`),
    el('div', { class: 'muted' }, t.signed ? `signed by ${t.signed.author}` : 'report not signed'));
  $('timeline').append(node);
  const v = new Viewer(canvas);
  window.radlens.viewers.push(v);
  const view = await api.get(`/api/studies/${s.id}`);
  v.setImage(new Uint16Array(await api.bytes(`/api/studies/${s.id}/pixels`)), s.width, s.height);
  const a = view.analysis;
  if (a) {
    if (a.ctr_lines && a.measurements.ctr) v.ctr = { ...a.ctr_lines, label: `CTR ${interval(a.measurements.ctr)}` };
    const img = new Image();
    img.src = a.overlays.find(o => o.name === 'structures').url;
    await img.decode();
    v.setOverlay('structures', img, true);
  }
}

async function main() {
  const h = await api.get(`/api/patients/${patientId}/history`);
  $('patient-title').textContent = h.patient.patient_key;
  document.title = `radlens · ${h.patient.patient_key}`;
  $('model-version').textContent = `model ${h.model_version}`;
  await Promise.all(h.studies.map(card));
  const byId = new Map(h.studies.map(t => [t.study.id, t.study]));
  $('intervals').replaceChildren(...(h.intervals.length ? h.intervals.map(i => {
    const from = byId.get(i.from_study), to = byId.get(i.to_study);
    return el('div', { class: 'interval' },
      el('h3', {}, `${from.study_date ?? '?'} → ${to.study_date ?? '?'}`, i.days !== null ? ` (${i.days} days)` : ''),
      el('table', {}, el('tbody', {}, ...i.changes.map(c => {
        const pct = c.measurement.startsWith('opacity') ? 100 : 1;
        return el('tr', { 'data-change': c.measurement }, el('td', {}, NAMES[c.measurement] ?? c.measurement),
          el('td', {}, interval(c.prior, 2, pct)), el('td', {}, '→'), el('td', {}, interval(c.current, 2, pct)),
          el('td', {}, `${c.direction}: ${interval(c.difference, 2, pct)}`));
      }))));
  }) : [el('p', { class: 'muted' }, 'Fewer than two analysed studies: nothing to compare.')]));
  window.radlens.ready = true;
}

showUser().then(main).catch(e => { $('page-error').textContent = e.message; });
