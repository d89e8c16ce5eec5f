// SPDX-License-Identifier: Apache-2.0
// The fota web console: hash routes over the public API (api.js), live through the event stream.
import { api, ApiError, session, signIn, signOut } from './api.js';
import { live } from './ui.js';
import { el } from './dom.js';
import { fleetPage } from './fleet.js';
import { rolloutsPage, rolloutPage } from './rollouts.js';
import { devicePage } from './device.js';
import { artifactsPage } from './artifacts.js';
import { auditPage } from './audit.js';

const $ = (id) => document.getElementById(id);
let cleanup = () => {};

const routes = [
  [/^#\/fleet$/, 'fleet', () => fleetPage()],
  [/^#\/rollouts$/, 'rollouts', () => rolloutsPage()],
  [/^#\/rollouts\/([^/]+)$/, 'rollouts', (m) => rolloutPage(decodeURIComponent(m[1]))],
  [/^#\/devices\/([^/]+)$/, 'fleet', (m) => devicePage(decodeURIComponent(m[1]))],
  [/^#\/artifacts$/, 'artifacts', () => artifactsPage()],
  [/^#\/audit$/, 'audit', () => auditPage()],
];

async function route() {
  cleanup();
  cleanup = () => {};
  const hash = location.hash || '#/fleet';
  const view = $('view');
  for (const [re, section, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.route === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    try {
      const { node, dispose } = await page(m);
      view.replaceChildren(node);
      cleanup = dispose || (() => {});
      view.querySelector('h1')?.setAttribute('tabindex', '-1');
      view.querySelector('h1')?.focus({ preventScroll: true });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return showLogin(e.message);
      view.replaceChildren(el('p', { class: 'error', role: 'alert' }, e.message));
    }
    return;
  }
  location.hash = '#/fleet';
}

function showLogin(message = '') {
  live.stop();
  $('login').hidden = false;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('view').replaceChildren();
  $('login-error').textContent = message;
  $('token').focus();
}

async function enter() {
  // Who the caller is and the first page are asked for at once; the live feed opens after.
  const me = api('/api/v1/whoami').then((who) => {
    session.actor = who.actor;
    session.role = who.role;
    $('login').hidden = true;
    $('nav').hidden = false;
    $('who').hidden = false;
    $('actor').textContent = `${who.actor} (${who.role})`;
    document.body.dataset.role = who.role;
  });
  session.known = me;
  me.catch(() => {});
  const first = route();
  await me;
  await first;
  live.start();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  signIn($('token').value.trim());
  $('token').value = '';
  try {
    await enter();
  } catch (err) {
    signOut();
    showLogin(err.message);
  }
});
$('logout').addEventListener('click', () => { signOut(); showLogin(); });
window.addEventListener('hashchange', () => { if (session.token) route(); });

if (session.token) enter().catch((e) => { signOut(); showLogin(e.message); });
else showLogin();

