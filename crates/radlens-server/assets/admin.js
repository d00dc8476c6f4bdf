import { api, el, showUser } from './api.js';

const $ = id => document.getElementById(id);
window.radlens = { ready: false };
function showError(e) { $('page-error').textContent = e.message ?? String(e); }

function roleSelect(u) {
  const s = el('select', { 'data-user': u.id },
    ...['viewer', 'radiologist', 'admin'].map(r => el('option', r === u.role ? { selected: '' } : {}, r)));
  s.addEventListener('change', () => update(u, s.value, u.disabled));
  return s;
}

async function update(u, role, disabled) {
  try { await api.post(`/api/users/${u.id}`, { role, disabled }); } catch (e) { showError(e); }
  await load();
}

async function load() {
  const [users, audit] = await Promise.all([api.get('/api/users'), api.get('/api/audit')]);
  $('users').tBodies[0].replaceChildren(...users.map(u => el('tr', { 'data-user': u.id },
    el('td', {}, u.username), el('td', {}, roleSelect(u)), el('td', {}, u.disabled ? 'disabled' : 'active'),
    el('td', {}, u.created_at),
    el('td', {}, el('button', { onclick: () => update(u, u.role, !u.disabled) }, u.disabled ? 'Enable' : 'Disable')))));
  $('audit').tBodies[0].replaceChildren(...audit.map(a => el('tr', { 'data-action': a.action },
    el('td', {}, a.at), el('td', {}, a.username ?? '–'), el('td', {}, a.action),
    el('td', {}, a.study_id ? el('a', { href: `/studies/${a.study_id}` }, a.study_id) : '–'),
    el('td', {}, a.detail), el('td', {}, a.request_id ?? '–'))));
}

$('user-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const f = ev.target;
  try {
    await api.post('/api/users', { username: f.elements.username.value, password: f.elements.password.value, role: f.elements.role.value });
    f.reset();
    await load();
  } catch (e) { showError(e); }
});

showUser().then(load).then(() => { window.radlens.ready = true; }).catch(showError);
