// SPDX-License-Identifier: Apache-2.0
// Fleet overview: counts by presence, phase, version and hardware (GET /api/v1/fleet/summary), and
// the device list filtered and paged by the server (GET /api/v1/devices?limit=&cursor=...).
import { api, query } from './api.js';
import { badge, el, table, time } from './dom.js';
import { live, throttle } from './ui.js';

const PAGE = 50;
const PHASES = ['', 'idle', 'downloading', 'verifying', 'installing', 'rebooting', 'committed', 'failed', 'rolled_back', 'unknown'];

function breakdown(title, counts, filter) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]).slice(0, 8);
  return el('div', { class: 'card' }, el('h2', {}, title),
    entries.length ? el('ul', {}, entries.map(([k, n]) => el('li', {},
      filter ? el('a', { href: '#', onclick: (e) => { e.preventDefault(); filter(k); } }, k || '(none)') : (k || '(none)'), `: ${n.toLocaleString()}`))) : el('p', { class: 'muted' }, 'none'));
}

export async function fleetPage() {
  const filters = { q: '', version: '', state: '', online: '', hardware: '', group: '', tag: '' };
  const cursors = [''];  // the cursor of each page seen, for "Previous"
  const summaryBox = el('div', { class: 'grid', id: 'summary' });
  const listBox = el('div', { id: 'devices' });
  // The three calls of the first view go out together.
  const firstPage = api(`/api/v1/devices${query({ limit: PAGE })}`, { page: true });
  firstPage.catch(() => {});
  const [groups, summary] = await Promise.all([api('/api/v1/groups?limit=1000').catch(() => []), api('/api/v1/fleet/summary')]);
  const status = el('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });

  const input = (name, label, attrs = {}) => el('div', {}, el('label', { for: `f-${name}` }, label),
    el('input', { id: `f-${name}`, name, value: filters[name], ...attrs }));
  const select = (name, label, options) => el('div', {}, el('label', { for: `f-${name}` }, label),
    el('select', { id: `f-${name}`, name }, options.map(([v, t]) => el('option', { value: v }, t))));
  const form = el('form', { class: 'card filters', role: 'search', 'aria-label': 'Filter devices' },
    input('q', 'Device id contains', { type: 'search', placeholder: 'e.g. gw-00' }),
    input('version', 'Version', { placeholder: '2.0 or <2.0' }),
    select('state', 'Phase', PHASES.map((p) => [p, p || 'any'])),
    select('online', 'Presence', [['', 'any'], ['true', 'online'], ['false', 'offline']]),
    input('hardware', 'Hardware'),
    select('group', 'Group', [['', 'any'], ...groups.map((g) => [g.name, g.name])]),
    input('tag', 'Tag'),
    el('div', {}, el('button', { type: 'submit' }, 'Apply filters')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    for (const k of Object.keys(filters)) filters[k] = form.elements[k].value.trim();
    cursors.length = 1;
    loadPage(0);
  });
  const setFilter = (name) => (value) => { form.elements[name].value = value; form.requestSubmit(); };

  function renderSummary(s) {
    summaryBox.replaceChildren(
      el('div', { class: 'card' }, el('h2', {}, 'Devices'), el('div', { class: 'stat', 'data-testid': 'device-count' }, s.devices.toLocaleString()),
        el('p', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); setFilter('online')('true'); } }, `${s.online.toLocaleString()} online`), ', ',
          el('a', { href: '#', onclick: (e) => { e.preventDefault(); setFilter('online')('false'); } }, `${s.offline.toLocaleString()} offline`))),
      breakdown('By phase', s.by_phase, (k) => setFilter('state')(k)),
      breakdown('By version', s.by_version, (k) => k && setFilter('version')(k)),
      breakdown('By hardware', s.by_hardware, (k) => k && setFilter('hardware')(k)),
      breakdown('Rollouts', Object.fromEntries(Object.entries(s.rollouts_by_state || {}).filter(([, n]) => n))));
  }

  let index = 0;
  async function loadPage(i, prefetched) {
    index = i;
    status.textContent = 'Loading devices…';
    try {
      const { items, next } = await (prefetched || api(`/api/v1/devices${query({ ...filters, limit: PAGE, cursor: cursors[i] })}`, { page: true }));
      cursors[i + 1] = next;
      cursors.length = next ? i + 2 : i + 1;
      const rows = items.map((d) => [
        el('a', { href: `#/devices/${encodeURIComponent(d.id)}` }, d.id), d.version || '—', d.hardware,
        badge(d.online ? 'online' : 'offline'), badge(d.last_phase), [...d.groups, d.group].filter(Boolean).join(', ') || '—',
        d.rollout ? el('a', { href: `#/rollouts/${encodeURIComponent(d.rollout)}` }, d.rollout) : '—',
        el('span', { class: 'hide-narrow' }, time(d.last_seen))]);
      listBox.replaceChildren(
        table(['Device', 'Version', 'Hardware', 'Presence', 'Phase', 'Groups', 'Rollout', 'Last seen'], rows),
        el('div', { class: 'pager' },
          el('button', { type: 'button', class: 'secondary', disabled: i === 0, onclick: () => loadPage(i - 1) }, 'Previous page'),
          el('span', {}, `Page ${i + 1}`),
          el('button', { type: 'button', class: 'secondary', disabled: !next, onclick: () => loadPage(i + 1) }, 'Next page')));
      status.textContent = `${items.length} devices on page ${i + 1}${next ? '' : ' (last page)'}`;
    } catch (e) {
      status.textContent = '';
      listBox.replaceChildren(el('p', { class: 'error', role: 'alert' }, e.message));
    }
  }

  renderSummary(summary);
  await loadPage(0, firstPage);
  const refresh = throttle(() => loadPage(index), 3000);
  const off = live.on((kind, data) => {
    if (kind === 'fleet') { renderSummary(data); refresh(); }
  });
  return {
    node: el('section', {}, el('h1', {}, 'Fleet'), summaryBox, form, status, listBox),
    dispose: off,
  };
}
