// SPDX-License-Identifier: Apache-2.0
// Rollouts: the list with a create form (fields or YAML), and the live view of one rollout: waves
// with progress, per-state counts, failures with their reasons, the plan against the actual
// timeline (inline SVG), the ETA, and the actions the caller's role allows, each confirmed.
import { api, may, query, session } from './api.js';
import { badge, bar, duration, el, fill, svg, table, time } from './dom.js';
import { confirmAction, live, throttle } from './ui.js';

const ACTIVE = ['dispatched', 'updating', 'retry_wait', 'rolling_back'];
const sum = (counts, states) => states.reduce((n, s) => n + (counts?.[s] || 0), 0);
const FAILED = ['failed', 'rollback_failed'];

function progress(r, label) {
  return bar(r.devices, r.counts?.succeeded || 0, sum(r.counts, FAILED), sum(r.counts, ACTIVE), label);
}

// Which actions each state takes (the server refuses the others with 409 anyway).
const ACTIONS = {
  created: ['start', 'abort'], running: ['pause', 'abort', 'rollback'], paused: ['resume', 'abort', 'rollback'],
  completed: ['rollback'], aborted: ['rollback'], rolling_back: [], rolled_back: [],
};
const EXPLAIN = {
  start: 'Start sending this release to the first wave.',
  pause: 'Pause: no new device is sent the update; devices already updating finish.',
  resume: 'Resume sending the release where the rollout paused.',
  abort: 'Abort: no further device gets the update; devices updating now are cancelled.',
  rollback: 'Roll back: every device this rollout updated is sent back to its previous release.',
};

export async function rolloutsPage() {
  await session.known;
  const [rollouts, artifacts] = await Promise.all([api('/api/v1/rollouts?limit=1000'), api('/api/v1/artifacts?limit=1000')]);
  const listBox = el('div');
  const render = (items) => listBox.replaceChildren(table(['Rollout', 'State', 'Progress', 'Devices', 'Artifact', 'Created'],
    items.slice().reverse().map((r) => [
      el('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, r.name || r.id), badge(r.state), progress(r, r.name),
      `${r.counts?.succeeded || 0} / ${r.devices}`, el('code', {}, r.artifact.slice(0, 12)), time(r.created_at)])));
  render(rollouts);
  const byId = new Map(rollouts.map((r) => [r.id, r]));
  const off = live.on((kind, data) => {
    if (kind === 'rollout') { byId.set(data.id, data); render([...byId.values()].sort((a, b) => a.created_at.localeCompare(b.created_at))); }
  });
  return { node: el('section', {}, el('h1', {}, 'Rollouts'), may('operator') ? createForm(artifacts) : null, listBox), dispose: off };
}

function createForm(artifacts) {
  const error = el('p', { class: 'error', role: 'alert' });
  const field = (id, label, input) => el('div', {}, el('label', { for: id }, label), input);
  const form = el('form', { class: 'filters', 'aria-label': 'New rollout from fields' },
    field('r-name', 'Name', el('input', { id: 'r-name', name: 'name', required: true })),
    field('r-artifact', 'Artifact', el('select', { id: 'r-artifact', name: 'artifact', required: true },
      artifacts.map((a) => el('option', { value: a.artifact_id }, `${a.version} (${a.artifact_id.slice(0, 8)})`)))),
    field('r-hardware', 'Hardware (comma separated)', el('input', { id: 'r-hardware', name: 'hardware' })),
    field('r-group', 'Group', el('input', { id: 'r-group', name: 'group' })),
    field('r-waves', 'Wave sizes', el('input', { id: 'r-waves', name: 'waves', value: '1, 25%, 100%' })),
    field('r-breach', 'On breach', el('select', { id: 'r-breach', name: 'on_breach' }, ['pause', 'abort', 'rollback'].map((v) => el('option', { value: v }, v)))),
    el('div', {}, el('button', { type: 'submit' }, 'Create rollout')));
  const yaml = el('textarea', { id: 'r-yaml', name: 'yaml', spellcheck: 'false', placeholder: 'name: ...\nartifact: ...\ntarget: {hardware: [...]}\nwaves:\n  - {size: 10%}' });
  const yamlForm = el('form', { 'aria-label': 'New rollout from YAML' },
    el('label', { for: 'r-yaml' }, 'Rollout spec (YAML, docs/ORCHESTRATOR.md "Rollout spec")'), yaml,
    el('div', { class: 'actions' }, el('button', { type: 'submit' }, 'Create from YAML')));
  const submit = async (spec) => {
    error.textContent = '';
    try {
      const r = await api('/api/v1/rollouts', { method: 'POST', body: spec, type: 'application/yaml' });
      location.hash = `#/rollouts/${encodeURIComponent(r.id)}`;
    } catch (e) { error.textContent = e.message; }
  };
  const quote = (s) => JSON.stringify(s);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = form.elements;
    const hardware = f.hardware.value.split(',').map((s) => s.trim()).filter(Boolean);
    const target = [hardware.length ? `hardware: [${hardware.map(quote).join(', ')}]` : '', f.group.value.trim() ? `groups: [${quote(f.group.value.trim())}]` : '']
      .filter(Boolean).join(', ');
    const waves = f.waves.value.split(',').map((s) => s.trim()).filter(Boolean).map((s) => `  - {size: ${quote(s)}}`).join('\n');
    submit(`name: ${quote(f.name.value.trim())}\nartifact: ${quote(f.artifact.value)}\ntarget: {${target}}\nwaves:\n${waves}\non_breach: ${f.on_breach.value}\n`);
  });
  yamlForm.addEventListener('submit', (e) => { e.preventDefault(); submit(yaml.value); });
  return el('details', { class: 'card' }, el('summary', {}, 'New rollout'), el('h2', {}, 'From fields'), form, el('h2', {}, 'From YAML'), yamlForm, error);
}

// Plan (forecast) against actual wave timelines, as bars on one time axis.
function chart(r, plan) {
  const now = Date.now();
  const t = (iso) => (iso ? Date.parse(iso) : null);
  const rows = r.waves.map((w, i) => ({
    label: `Wave ${w.index}`,
    plan: plan?.waves?.[i] ? [t(plan.waves[i].start_at), t(plan.waves[i].end_at)] : null,
    actual: w.started_at ? [t(w.started_at), t(w.finished_at) || now] : null,
  }));
  const times = rows.flatMap((x) => [...(x.plan || []), ...(x.actual || [])]).filter((x) => x);
  if (!times.length) return el('p', { class: 'muted' }, 'No timeline yet.');
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1000);
  const W = 640, left = 70, right = 10, rowH = 34;
  const x = (ms) => left + ((ms - t0) / (t1 - t0)) * (W - left - right);
  const H = rows.length * rowH + 30;
  const parts = [];
  rows.forEach((row, i) => {
    const y = 8 + i * rowH;
    parts.push(svg('text', { x: 4, y: y + 16 }, row.label));
    if (row.plan) parts.push(svg('rect', { x: x(row.plan[0]), y, width: Math.max(2, x(row.plan[1]) - x(row.plan[0])), height: 11, fill: '#9aa7b4' }, svg('title', {}, `plan ${new Date(row.plan[0]).toLocaleTimeString()} – ${new Date(row.plan[1]).toLocaleTimeString()}`)));
    if (row.actual) parts.push(svg('rect', { x: x(row.actual[0]), y: y + 13, width: Math.max(2, x(row.actual[1]) - x(row.actual[0])), height: 11, fill: '#0b57d0' }, svg('title', {}, `actual from ${new Date(row.actual[0]).toLocaleTimeString()}`)));
  });
  parts.push(svg('text', { x: left, y: H - 4 }, new Date(t0).toLocaleTimeString()));
  parts.push(svg('text', { x: W - right, y: H - 4, 'text-anchor': 'end' }, new Date(t1).toLocaleTimeString()));
  return el('div', { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Plan against actual timeline of ${rows.length} waves` }, parts),
    el('p', { class: 'counts' }, el('span', {}, '▬ grey: plan'), el('span', {}, '▬ blue: actual')));
}

export async function rolloutPage(id) {
  await session.known;
  const all = await api('/api/v1/rollouts?limit=1000');
  let r = all.find((x) => x.id === id);
  if (!r) throw new Error(`no rollout ${id}`);
  const plan = await api(`/api/v1/rollouts/${encodeURIComponent(id)}/plan`).catch(() => null);
  const head = el('div', { class: 'card', id: 'rollout-head' });
  const waves = el('div', { id: 'waves' });
  const timeline = el('div', { class: 'card' });
  const failures = el('div', { id: 'failures' });
  const message = el('p', { role: 'status', 'aria-live': 'polite', id: 'action-status' });

  async function act(action) {
    if (!(await confirmAction(`${EXPLAIN[action]} Rollout "${r.name}".`, action[0].toUpperCase() + action.slice(1)))) return;
    message.textContent = `${action}…`;
    try {
      r = await api(`/api/v1/rollouts/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
      delete r.members;
      message.textContent = `${action}: done, the rollout is ${r.state}`;
      render();
    } catch (e) { message.textContent = `${action} refused: ${e.message}`; }
  }

  function render() {
    const eta = r.eta ? `${duration(r.eta.remaining_seconds)} (ends ${time(r.eta.end_at)})` : r.finished_at ? `finished ${time(r.finished_at)}` : '—';
    fill(head,
      el('dl', { class: 'kv' },
        el('dt', {}, 'State'), el('dd', { 'data-testid': 'rollout-state' }, badge(r.state), r.reason ? ` ${r.reason}` : ''),
        el('dt', {}, 'Progress'), el('dd', {}, progress(r, 'rollout'), `${r.counts?.succeeded || 0} of ${r.devices} succeeded, ${sum(r.counts, FAILED)} failed`),
        el('dt', {}, 'ETA'), el('dd', { 'data-testid': 'eta' }, eta),
        el('dt', {}, 'Artifact'), el('dd', {}, el('code', {}, r.artifact)),
        el('dt', {}, 'Started'), el('dd', {}, time(r.started_at))),
      el('div', { class: 'counts', 'aria-label': 'Devices by state' }, Object.entries(r.counts || {}).filter(([, n]) => n).map(([s, n]) => el('span', {}, `${s}: ${n}`))),
      may('operator') ? el('div', { class: 'actions' }, (ACTIONS[r.state] || []).map((a) =>
        el('button', { type: 'button', class: a === 'abort' || a === 'rollback' ? 'danger' : '', onclick: () => act(a) }, a[0].toUpperCase() + a.slice(1)))) : null,
      message);
    waves.replaceChildren(table(['Wave', 'Status', 'Progress', 'Counts', 'Transferred'], r.waves.map((w) => [
      `${w.index}`, badge(w.status),
      bar(w.devices, w.counts?.succeeded || 0, sum(w.counts, FAILED), sum(w.counts, ACTIVE), `wave ${w.index}`),
      el('span', { class: 'counts' }, `${w.devices} devices`, Object.entries(w.counts || {}).filter(([, n]) => n).map(([s, n]) => el('span', {}, `${s} ${n}`))),
      w.bytes_total ? `${Math.round((100 * w.bytes_done) / w.bytes_total)}%` : '—'])));
    timeline.replaceChildren(el('h2', {}, 'Plan and actual'), chart(r, plan));
  }

  async function loadFailures() {
    try {
      const failed = await api(`/api/v1/rollouts/${encodeURIComponent(id)}/members${query({ state: 'failed', limit: 100 })}`);
      failures.replaceChildren(table(['Device', 'Wave', 'Attempt', 'Phase', 'Reason'], failed.map((m) => [
        el('a', { href: `#/devices/${encodeURIComponent(m.device)}` }, m.device), `${m.wave}`, `${m.attempt}`, m.phase, el('span', { class: 'error' }, m.error || '—')])));
    } catch (e) { failures.replaceChildren(el('p', { class: 'error' }, e.message)); }
  }

  render();
  await loadFailures();
  const refreshFailures = throttle(loadFailures, 2000);
  const off = live.on((kind, data) => {
    if (kind === 'rollout' && data.id === id) { r = data; render(); refreshFailures(); }
    if (kind === 'resync') api('/api/v1/rollouts?limit=1000').then((list) => { r = list.find((x) => x.id === id) || r; render(); });
  });
  return {
    node: el('section', {}, el('p', {}, el('a', { href: '#/rollouts' }, '← Rollouts')), el('h1', {}, `Rollout ${r.name}`),
      head, el('h2', {}, 'Waves'), waves, timeline, el('h2', {}, 'Failures'), failures),
    dispose: off,
  };
}
