// CSV import by upload (POST /api/v1/machines/import): all or nothing; every bad line is listed.

import { call, el, announce } from './api.js';

/** The import page. */
export function importPage(main) {
  const file = el('input', { id: 'csv-file', type: 'file', accept: '.csv,text/csv', 'aria-describedby': 'csv-help' });
  const text = el('textarea', { id: 'csv-text', rows: 8, cols: 70, 'aria-describedby': 'csv-help' });
  const result = el('div', { id: 'import-result', 'aria-live': 'polite' });
  const form = el('form', { id: 'import', 'aria-label': 'Import machines from CSV' },
    el('p', { id: 'csv-help', class: 'help',
      text: 'Columns: mac,hostname,profile,key=value… (or a header line starting with mac). A file with any bad line imports nothing.' }),
    el('label', { for: 'csv-file', text: 'CSV file' }), file,
    el('label', { for: 'csv-text', text: 'or paste CSV' }), text,
    el('p', {}, el('button', { type: 'submit', id: 'import-submit', text: 'Import' })));
  main.append(el('h1', { text: 'Import machines' }), form, result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = file.files.length ? await file.files[0].text() : text.value;
    result.replaceChildren(el('p', { text: 'Importing…' }));
    try {
      const r = await call('POST', '/machines/import', body, 'text/csv');
      result.replaceChildren(el('p', { class: 'ok', id: 'import-ok', text: `Imported ${r.imported} machines.` }));
      announce(`Imported ${r.imported} machines`);
    } catch (e) {
      const lines = (e.body && e.body.lines) || [];
      const rows = lines.map((l) => el('tr', {},
        el('td', { text: l.line ? String(l.line) : '' }), el('td', { text: l.message })));
      result.replaceChildren(
        el('p', { class: 'error', role: 'alert', id: 'import-error', text: e.message }),
        lines.length ? el('table', { id: 'import-lines' },
          el('caption', { text: 'Problems by line' }),
          el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Line' }), el('th', { scope: 'col', text: 'Problem' }))),
          el('tbody', {}, rows)) : null);
    }
  });
}
