// Calls to the radlens JSON API; a failed call throws an Error carrying the server's message.
async function check(r) {
  if (r.ok) return r;
  let msg = `${r.status} ${r.statusText}`;
  try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
  throw new Error(msg);
}

export const api = {
  async get(url) { return (await check(await fetch(url))).json(); },
  async bytes(url) { return (await check(await fetch(url))).arrayBuffer(); },
  async post(url, body) {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}) });
    return (await check(r)).json();
  },
  async upload(url, formData) {
    return (await check(await fetch(url, { method: 'POST', body: formData }))).json();
  },
};

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
