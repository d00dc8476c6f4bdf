// Calls to the radlens JSON API; a failed call throws an Error carrying the server's message.
async function check(r) {
  if (r.ok) return r;
  let msg = `${r.status} ${r.statusText}`;
  try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
  throw new Error(msg);
}

// Without a session the API answers 401: go to the sign-in page and come back here.
function signIn() {
  location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  return new Promise(() => {}); // the page is leaving
}

async function call(url, init = {}) {
  const r = await fetch(url, { ...init, credentials: 'same-origin' });
  if (r.status === 401) return signIn();
  return check(r);
}

// The signed-in user, with the CSRF token every state-changing request sends back.
let session = null;
export function me() {
  session ??= call('/api/me').then(r => r.json()).then(u => u ?? signIn());
  return session;
}

async function send(url, init) {
  const { csrf_token } = await me();
  return call(url, { method: 'POST', ...init, headers: { ...init.headers, 'x-csrf-token': csrf_token } });
}

export const api = {
  async get(url) { return (await call(url)).json(); },
  async bytes(url) { return (await call(url)).arrayBuffer(); },
  async post(url, body) {
    return (await send(url, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) })).json();
  },
  async upload(url, formData) { return (await send(url, { body: formData })).json(); },
  async logout() { await send('/api/logout', {}); location.href = '/login'; },
};

// The signed-in user and a sign-out button in the page header's `#user`.
export async function showUser() {
  const u = await me();
  const slot = document.getElementById('user');
  if (!slot) return u;
  slot.replaceChildren(
    el('span', { class: 'muted', id: 'user-name' }, `${u.username} (${u.role})`),
    u.role === 'admin' ? el('a', { href: '/admin' }, 'Admin') : '',
    el('button', { id: 'logout', onclick: () => api.logout() }, 'Sign out'));
  return u;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/// "0.48 [0.45–0.51]" for a measured interval.
export function interval(i, digits = 2, scale = 1) {
  if (!i) return '–';
  const f = v => (v * scale).toFixed(digits);
  return `${f(i.value)} [${f(i.low)}–${f(i.high)}]`;
}
