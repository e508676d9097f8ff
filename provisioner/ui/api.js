// The operator API as the dashboard calls it: the session cookie travels by itself, and every
// write carries the session's CSRF value. Everything shown from the inventory goes into the
// page as text (el() never parses HTML): hostnames and labels can come from anyone.

let csrf = null;

/** Fetches the session's CSRF value; sends the browser to the login page without a session. */
export async function init() {
  const r = await fetch('/ui/session', { credentials: 'same-origin' });
  if (r.status === 401) {
    location.assign('/ui/login');
    throw new Error('not logged in');
  }
  csrf = (await r.json()).csrf;
}

/** An API error: the HTTP status and the server's JSON error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Calls `method path` under /api/v1; `body` is JSON unless `type` says otherwise. */
export async function call(method, path, body, type) {
  const headers = {};
  const opts = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) {
    headers['Content-Type'] = type || 'application/json';
    opts.body = type ? body : JSON.stringify(body);
  }
  const r = await fetch('/api/v1' + path, opts);
  if (r.status === 401) {
    location.assign('/ui/login');
    throw new ApiError(401, { detail: 'session ended' });
  }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = { detail: text }; }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

/** Ends the session on the server, then shows the login page. */
export async function logout() {
  await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } });
  location.assign('/ui/login');
}

/**
 * A new element: `attrs` are attributes (functions under `on*` become listeners, `text` sets
 * textContent), `children` are nodes or strings (inserted as text).
 */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Milliseconds since the epoch as local date and time, or an empty string. */
export function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

/** `labels` as `k=v, k=v`. */
export function fmtLabels(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');
}

/** Says `text` to screen readers (the page's polite live region). */
export function announce(text) {
  const a = document.getElementById('announce');
  if (a) a.textContent = text;
}

/** The newest event sequence number (from /metrics), so a stream replays only recent history. */
export async function lastSeq() {
  const r = await fetch('/metrics');
  const line = (await r.text()).split('\n').find((l) => l.startsWith('provisioner_event_sequence '));
  return line ? Number(line.split(' ')[1]) || 0 : 0;
}
