// The machines table: every machine with its address, state and install progress, kept live
// by the event stream (no reload), filtered by state, profile and label, and searchable.

import { call, el, fmtTime, fmtLabels, announce, lastSeq, ApiError } from './api.js';

const STATES = ['discovered', 'registered', 'booting', 'installing', 'installed', 'ready', 'failed', 'reprovision'];
const REFRESH_EVENTS = new Set(['created', 'updated', 'deleted', 'state', 'seen', 'registered', 'operator']);

/** Renders the page into `main`; returns a function that closes its event stream. */
export function machinesPage(main) {
  let machines = [];
  const progress = new Map(); // mac → {phase, percent}
  const field = (id, label, control) => el('div', {}, el('label', { for: id, text: label }), control);
  const state = el('select', { id: 'filter-state' },
    el('option', { value: '', text: 'any' }), ...STATES.map((s) => el('option', { value: s, text: s })));
  const profile = el('input', { id: 'filter-profile', type: 'text', placeholder: 'profile' });
  const label = el('input', { id: 'filter-label', type: 'text', placeholder: 'key=value' });
  const search = el('input', { id: 'search', type: 'search', placeholder: 'MAC, hostname, address…' });
  const count = el('p', { id: 'machine-count', 'aria-live': 'polite' });
  const error = el('p', { class: 'error', role: 'alert', id: 'machines-error' });
  const body = el('tbody', { id: 'machines-body' });
  const cols = ['MAC', 'Hostname', 'Profile', 'State', 'Address', 'Last seen', 'Install progress', 'Actions'];
  const table = el('table', { id: 'machines', 'aria-describedby': 'machine-count' },
    el('caption', { class: 'visually-hidden', text: 'Machines' }),
    el('thead', {}, el('tr', {}, cols.map((c) => el('th', { scope: 'col', text: c })))),
    body);
  main.append(
    el('h1', { text: 'Machines' }),
    el('div', { class: 'filters', role: 'search', 'aria-label': 'Filter machines' },
      field('filter-state', 'State', state), field('filter-profile', 'Profile', profile),
      field('filter-label', 'Label', label), field('search', 'Search', search)),
    error, count, table);

  function visible(m) {
    if (state.value && m.lifecycle.state !== state.value) return false;
    if (profile.value.trim() && (m.profile || '') !== profile.value.trim()) return false;
    const l = label.value.trim();
    if (l) {
      const [k, v] = l.split('=');
      const labels = m.labels || {};
      if (!(k in labels) || (v !== undefined && labels[k] !== v)) return false;
    }
    const q = search.value.trim().toLowerCase();
    if (q) {
      const hay = [m.mac, m.hostname, m.address, m.profile, fmtLabels(m.labels)].join(' ').toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  function progressCell(m) {
    const p = progress.get(m.mac);
    if (!p || !['booting', 'installing'].includes(m.lifecycle.state)) return '';
    const bar = p.percent !== undefined
      ? el('progress', { max: 100, value: p.percent, 'aria-label': `Install progress of ${m.mac}` })
      : null;
    return el('span', {}, bar, ` ${p.phase}${p.percent !== undefined ? ` ${p.percent}%` : ''}`);
  }

  function row(m) {
    const link = el('a', { href: `#/machine/${encodeURIComponent(m.mac)}`, text: m.mac });
    const actions = el('td', {});
    if (m.lifecycle.state === 'discovered') {
      actions.append(el('button', {
        type: 'button', class: 'approve', 'aria-label': `Approve ${m.mac}`, text: 'Approve',
        onclick: () => approve(m.mac),
      }));
    }
    return el('tr', { 'data-mac': m.mac },
      el('td', { class: 'mono' }, link),
      el('td', { class: 'hostname', text: m.hostname || '' }),
      el('td', { text: m.profile || '' }),
      el('td', {}, el('span', { class: 'state', 'data-state': m.lifecycle.state, text: m.lifecycle.state })),
      el('td', { class: 'mono', text: m.address || m.ip || '' }),
      el('td', { text: fmtTime(m.last_seen) }),
      el('td', {}, progressCell(m)),
      actions);
  }

  function render() {
    const shown = machines.filter(visible);
    body.replaceChildren(...shown.map(row));
    count.textContent = `${shown.length} of ${machines.length} machines`;
  }

  async function approve(mac) {
    try {
      await call('POST', `/machines/${mac}/approve`);
      announce(`${mac} approved`);
      await refresh();
    } catch (e) {
      error.textContent = `Approving ${mac} failed: ${e.message}`;
    }
  }

  let pending = null;
  async function refresh() {
    try {
      machines = await call('GET', '/machines');
      machines.sort((a, b) => a.mac.localeCompare(b.mac));
      error.textContent = '';
      render();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) error.textContent = `Loading machines failed: ${e.message}`;
    }
  }
  function soon() {
    if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 200);
  }

  for (const c of [state, profile, label, search]) c.addEventListener('input', render);
  let source = null;
  let closed = false;
  (async () => {
    await refresh();
    const after = Math.max(0, (await lastSeq()) - 5000);
    if (closed) return;
    source = new EventSource(`/api/v1/events/stream?after=${after}`);
    source.addEventListener('event', (msg) => {
      const e = JSON.parse(msg.data);
      if (e.type === 'progress' && e.mac) {
        progress.set(e.mac, { phase: e.phase, percent: e.percent });
        soon();
      } else if (REFRESH_EVENTS.has(e.type)) {
        if (e.type === 'state' && e.mac) announce(`${e.mac} is now ${e.to}`);
        soon();
      }
    });
  })();
  return () => { closed = true; if (source) source.close(); clearTimeout(pending); };
}
