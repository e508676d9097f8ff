// One machine: registration details, the boot decision and why, the install progress, the
// event timeline and the install log (both following live), and the operator's actions.

import { call, el, fmtTime, fmtLabels, announce } from './api.js';

function describe(e) {
  const rest = { ...e };
  for (const k of ['seq', 'at', 'mac', 'type']) delete rest[k];
  const parts = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return `${e.type} ${parts.join(' ')}`;
}

function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i < 1) throw new Error(`label "${part}" is not key=value`);
    labels[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return labels;
}

/** Renders the page of `mac` into `main`; returns a function that closes its streams. */
export function machinePage(main, mac) {
  const path = `/machines/${encodeURIComponent(mac)}`;
  const error = el('p', { class: 'error', role: 'alert', id: 'machine-error' });
  const details = el('dl', { class: 'details', id: 'details' });
  const decision = el('p', { id: 'decision', 'aria-live': 'polite' });
  const bar = el('progress', { id: 'progress', max: 100, value: 0, 'aria-labelledby': 'progress-label' });
  const barText = el('span', { id: 'progress-text' });
  const timeline = el('ol', { class: 'timeline', id: 'timeline', 'aria-live': 'polite', 'aria-label': 'Events' });
  const log = el('pre', { id: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Install log', tabindex: 0 });
  const actions = el('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
  const hostname = el('input', { id: 'edit-hostname', type: 'text' });
  const profile = el('input', { id: 'edit-profile', type: 'text' });
  const labels = el('input', { id: 'edit-labels', type: 'text', placeholder: 'rack=a1, role=worker', 'aria-describedby': 'labels-help' });
  const field = (id, text, c) => el('div', {}, el('label', { for: id, text }), c);
  const form = el('form', { class: 'edit', id: 'edit', 'aria-label': 'Edit machine' },
    field('edit-hostname', 'Hostname', hostname), field('edit-profile', 'Profile', profile),
    field('edit-labels', 'Labels', labels),
    el('p', { id: 'labels-help', class: 'help', text: 'Comma-separated key=value pairs.' }),
    el('div', {}, el('button', { type: 'submit', id: 'save', text: 'Save' })));
  main.append(
    el('p', {}, el('a', { href: '#/machines', text: '← Machines' })),
    el('h1', { id: 'machine-title', text: `Machine ${mac}` }), error,
    el('h2', { text: 'Boot decision' }), decision,
    el('h2', { id: 'progress-label', text: 'Install progress' }), el('p', {}, bar, ' ', barText),
    el('h2', { text: 'Details' }), details,
    el('h2', { text: 'Actions' }), actions,
    el('h2', { text: 'Edit' }), form,
    el('h2', { text: 'Events' }), timeline,
    el('h2', { text: 'Install log' }), log);

  let machine = null;
  async function act(method, suffix, done, body) {
    try {
      const r = await call(method, path + suffix, body);
      announce(`${mac}: ${done}`);
      error.textContent = '';
      return r;
    } catch (e) {
      error.textContent = `${done} failed: ${e.message}`;
      return undefined;
    }
  }
  function renderActions(m) {
    const b = (id, text, cls, onclick) => el('button', { type: 'button', id, class: cls, text, onclick });
    const list = [];
    if (m.lifecycle.state === 'discovered') list.push(b('approve', 'Approve', '', () => act('POST', '/approve', 'approved').then(load)));
    list.push(b('reprovision', 'Reprovision', 'secondary', () => act('POST', '/reprovision', 'reprovisioning').then(load)));
    const del = b('delete', 'Delete', 'danger', () => {
      del.replaceWith(b('delete-confirm', `Really delete ${mac}`, 'danger', async () => {
        if ((await act('DELETE', '', 'deleted')) !== undefined) location.hash = '#/machines';
      }));
    });
    list.push(del);
    actions.replaceChildren(...list);
  }
  function renderDetails(m) {
    const rows = [
      ['MAC', m.mac], ['Hostname', m.hostname], ['Profile', m.profile], ['State', m.lifecycle.state],
      ['State since', fmtTime(m.lifecycle.since)], ['Reason', m.lifecycle.reason], ['Labels', fmtLabels(m.labels)],
      ['Reserved address', m.ip], ['Boot address', m.boot_ip], ['UUID', m.uuid], ['Serial', m.serial], ['Site', m.site],
      ['First seen', fmtTime(m.first_seen)], ['Last seen', fmtTime(m.last_seen)],
      ['Registered machine-id', m.registration && m.registration.machine_id],
      ['Registration', m.registration && JSON.stringify(m.registration)],
      ['Attestation', m.attestation && JSON.stringify(m.attestation)],
    ];
    details.replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  }
  async function load() {
    try {
      machine = await call('GET', path);
      renderDetails(machine);
      renderActions(machine);
      if (document.activeElement?.form !== form) {
        hostname.value = machine.hostname || '';
        profile.value = machine.profile || '';
        labels.value = fmtLabels(machine.labels);
      }
      const d = await call('GET', `${path}/boot`);
      decision.textContent = `${d.intent.replace('_', ' ')}${d.reason ? ` — ${d.reason}` : ''}`;
      decision.dataset.intent = d.intent;
    } catch (e) {
      error.textContent = `Loading ${mac} failed: ${e.message}`;
    }
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const spec = { ...machine };
      for (const k of ['mac', 'lifecycle', 'arch', 'first_seen', 'last_seen', 'boot_ip', 'token_epoch', 'location', 'registration', 'attestation', 'created']) delete spec[k];
      spec.hostname = hostname.value.trim() || undefined;
      spec.profile = profile.value.trim() || undefined;
      spec.labels = parseLabels(labels.value);
      if ((await act('PUT', '', 'saved', spec)) !== undefined) load();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  function addEvent(e) {
    timeline.append(el('li', { 'data-type': e.type }, el('time', { text: fmtTime(e.at) }), ' ', describe(e)));
    if (e.type === 'progress') {
      if (e.percent !== undefined) bar.value = e.percent;
      barText.textContent = `${e.phase}${e.percent !== undefined ? ` ${e.percent}%` : ''}`;
    }
  }
  const sources = [];
  let closed = false;
  (async () => {
    await load();
    try {
      const events = await call('GET', `/events?machine=${encodeURIComponent(mac)}&limit=100000`);
      events.forEach(addEvent);
      const lines = await call('GET', `${path}/logs`);
      log.textContent = lines.map((l) => l.text ?? l.message ?? JSON.stringify(l)).join('\n');
      if (closed) return;
      const after = events.length ? events[events.length - 1].seq : 0;
      const ev = new EventSource(`/api/v1/events/stream?machine=${encodeURIComponent(mac)}&after=${after}`);
      ev.addEventListener('event', (m) => { addEvent(JSON.parse(m.data)); load(); });
      const logAfter = lines.length ? lines[lines.length - 1].seq : 0;
      const ls = new EventSource(`/api/v1${path}/logs/stream?after=${logAfter}`);
      ls.addEventListener('log', (m) => {
        const l = JSON.parse(m.data);
        log.append(document.createTextNode(`${log.textContent ? '\n' : ''}${l.text ?? l.message ?? m.data}`));
      });
      sources.push(ev, ls);
    } catch (e) {
      error.textContent = `Loading the history failed: ${e.message}`;
    }
  })();
  return () => { closed = true; sources.forEach((s) => s.close()); };
}
