import { api, el, showUser } from './api.js';

async function loadStudies() {
  const studies = await api.get('/api/studies');
  const body = document.querySelector('#studies tbody');
  body.replaceChildren(...studies.map(s => el('tr', { 'data-study': s.id },
    el('td', {}, el('a', { href: `/patients/${s.patient_id}` }, s.patient_key)), el('td', {}, s.study_date ?? '–'), el('td', {}, s.view ?? '–'),
    el('td', {}, s.file_name), el('td', {}, `${s.width}×${s.height}`),
    el('td', {}, el('a', { href: `/studies/${s.id}` }, 'Open')))));
  document.getElementById('studies-empty').hidden = studies.length > 0;
}

document.getElementById('upload-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const form = ev.target;
  const err = document.getElementById('upload-error');
  err.textContent = '';
  const data = new FormData();
  data.append('file', document.getElementById('upload-file').files[0]);
  for (const name of ['patient_id', 'study_date', 'view']) {
    const v = form.elements[name].value.trim();
    if (v) data.append(name, v);
  }
  form.querySelector('button').disabled = true;
  try {
    const created = await api.upload('/api/studies', data);
    location.href = `/studies/${created.id}`;
  } catch (e) {
    err.textContent = e.message;
  } finally {
    form.querySelector('button').disabled = false;
  }
});

api.get('/healthz').then(h => { document.getElementById('model-version').textContent = `model ${h.model_version}`; });
async function loadRuns() {
  const runs = await api.get('/api/features');
  document.getElementById('sae-runs-card').hidden = runs.length === 0;
  document.getElementById('sae-runs').replaceChildren(...runs.map(r => el('li', {},
    el('a', { href: `/features/${encodeURIComponent(r.name)}/0`, 'data-run': r.name }, r.name), ` · ${r.latents} latents`)));
}

showUser().then(() => Promise.all([loadStudies(), loadRuns()])).catch(e => { document.getElementById('upload-error').textContent = e.message; });
