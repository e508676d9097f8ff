// The dashboard's entry: loads the session, then renders the page the URL's hash names.
// Pages: #/machines, #/machine/<mac>, #/profiles, #/assets, #/import. Each page returns a
// function that stops what it started (event streams) when another page is shown.

import { init, logout } from './api.js';
import { machinesPage } from './machines.js';
import { machinePage } from './machine.js';
import { profilesPage, assetsPage } from './catalog.js';
import { importPage } from './import.js';

let stop = null;

function route() {
  const hash = location.hash || '#/machines';
  const main = document.getElementById('main');
  if (stop) stop();
  stop = null;
  main.replaceChildren();
  const [, page, arg] = hash.split('/');
  for (const a of document.querySelectorAll('header nav a')) {
    if (a.getAttribute('href') === `#/${page}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const pages = {
    machines: () => machinesPage(main),
    machine: () => machinePage(main, decodeURIComponent(arg || '')),
    profiles: () => profilesPage(main),
    assets: () => assetsPage(main),
    import: () => importPage(main),
  };
  stop = (pages[page] || pages.machines)() || null;
}

async function start() {
  await init();
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  route();
}

start();
