// Sign in, then go back to the page that sent us here (same-site paths only).
const form = document.getElementById('login-form');
const next = new URLSearchParams(location.search).get('next');
const target = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';

form.addEventListener('submit', async ev => {
  ev.preventDefault();
  const err = document.getElementById('login-error');
  err.textContent = '';
  const body = { username: form.elements.username.value, password: form.elements.password.value };
  const r = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body), credentials: 'same-origin' });
  if (r.ok) { location.href = target; return; }
  let msg = `${r.status} ${r.statusText}`;
  try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
  err.textContent = msg;
});
