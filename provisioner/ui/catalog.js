// The profiles and assets pages: what machines install, and the files it comes from (a UKI's
// inspection: its sections, command line, signature verdict).

import { call, el, fmtTime } from './api.js';

function table(id, caption, cols, rows) {
  return el('table', { id },
    el('caption', { class: 'visually-hidden', text: caption }),
    el('thead', {}, el('tr', {}, cols.map((c) => el('th', { scope: 'col', text: c })))),
    el('tbody', {}, rows));
}

/** The profiles page. */
export function profilesPage(main) {
  const error = el('p', { class: 'error', role: 'alert' });
  const detail = el('pre', { id: 'profile-detail', 'aria-live': 'polite', 'aria-label': 'Profile', tabindex: 0 });
  main.append(el('h1', { text: 'Profiles' }), error);
  call('GET', '/profiles').then((profiles) => {
    const rows = profiles.map((p) => el('tr', {},
      el('th', { scope: 'row' }, el('button', {
        type: 'button', class: 'secondary', text: p.name, 'aria-label': `Show profile ${p.name}`,
        onclick: () => { detail.textContent = JSON.stringify(p, null, 2); },
      })),
      el('td', { class: 'mono', text: p.uki || '' }),
      el('td', { text: p.secure_boot ? 'yes' : 'no' }),
      el('td', { text: p.install_disk || '' }),
      el('td', { text: p.description || '' })));
    main.append(table('profiles', 'Profiles', ['Name', 'UKI', 'Secure Boot', 'Install disk', 'Description'], rows),
      el('h2', { text: 'Selected profile' }), detail);
  }).catch((e) => { error.textContent = `Loading profiles failed: ${e.message}`; });
}

/** The assets page: every stored file; "Inspect" shows what the server read from it. */
export function assetsPage(main) {
  const error = el('p', { class: 'error', role: 'alert' });
  const detail = el('pre', { id: 'asset-detail', 'aria-live': 'polite', 'aria-label': 'Asset inspection', tabindex: 0 });
  main.append(el('h1', { text: 'Assets' }), error);
  call('GET', '/assets').then((assets) => {
    const rows = assets.map((a) => el('tr', {},
      el('th', { scope: 'row', text: a.name }),
      el('td', { text: a.kind }),
      el('td', { text: `${a.size} bytes` }),
      el('td', { text: fmtTime(a.imported_ms) }),
      el('td', { class: 'mono', text: a.digest }),
      el('td', {}, el('button', {
        type: 'button', class: 'secondary', text: 'Inspect', 'aria-label': `Inspect ${a.name}`,
        onclick: async () => {
          try {
            detail.textContent = JSON.stringify(await call('GET', `/assets/${encodeURIComponent(a.digest)}`), null, 2);
          } catch (e) { error.textContent = `Inspecting failed: ${e.message}`; }
        },
      }))));
    main.append(table('assets', 'Assets', ['Name', 'Kind', 'Size', 'Imported', 'Digest', 'Inspect'], rows),
      el('h2', { text: 'Inspection' }), detail);
  }).catch((e) => { error.textContent = `Loading assets failed: ${e.message}`; });
}
