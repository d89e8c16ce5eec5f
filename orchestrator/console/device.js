// SPDX-License-Identifier: Apache-2.0
// One device: its inventory, its live progress in the rollout that owns it, its update history
// (events) and its logs, followed live.
import { api, query } from './api.js';
import { badge, bytes, el, fill, table, time } from './dom.js';
import { live, throttle } from './ui.js';

// The API gives a log entry's level as the protocol's number (fota.proto LogLevel).
const LEVELS = ['', 'TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];
const PHASES = ['downloading', 'verifying', 'installing', 'rebooting', 'confirming', 'committed'];

export async function devicePage(id) {
  const path = `/api/v1/devices/${encodeURIComponent(id)}`;
  const inventory = el('div', { class: 'card', id: 'inventory' });
  const progressBox = el('div', { class: 'card', id: 'progress' });
  const history = el('div', { id: 'history' });
  const logs = el('div', { class: 'logs', id: 'logs', tabindex: '0', role: 'log', 'aria-label': `Logs of ${id}` });
  let lastLog = 0;

  async function loadDevice() {
    const d = await api(path);
    const row = (k, v) => [el('dt', {}, k), el('dd', {}, v)];
    inventory.replaceChildren(el('h2', {}, 'Inventory'), el('dl', { class: 'kv' },
      row('Version', d.version || '—'), row('Artifact', el('code', {}, d.artifact_id || '—')), row('Hardware', d.hardware),
      row('Presence', badge(d.online ? 'online' : 'offline')), row('Last seen', time(d.last_seen)),
      row('Client', d.client_version || '—'), row('Security counter', `${d.security_counter}`),
      row('Free space', bytes(d.free_bytes || 0)), row('Time zone', d.time_zone || 'UTC'),
      row('Tags', [...(d.tags || []), ...(d.operator_tags || [])].join(', ') || '—'),
      row('Groups', [...(d.groups || []), d.group].filter(Boolean).join(', ') || '—'),
      row('Certificate until', d.certificate_not_after ? time(d.certificate_not_after) : '—'),
      row('Registered', time(d.registered_at)), row('Revoked', d.revoked ? 'yes' : 'no')));
    const step = PHASES.indexOf(d.last_phase);
    const member = d.rollout ? await findMember(d.rollout, id) : null;
    fill(progressBox, el('h2', {}, 'Update progress'),
      el('p', {}, 'Phase: ', el('span', { 'data-testid': 'device-phase' }, badge(d.last_phase)),
        d.rollout ? [' in rollout ', el('a', { href: `#/rollouts/${encodeURIComponent(d.rollout)}` }, d.rollout)] : ' (no active rollout)'),
      step >= 0 ? el('progress', { max: PHASES.length, value: step + 1, 'aria-label': `step ${step + 1} of ${PHASES.length}: ${d.last_phase}` }) : null,
      member && member.bytes_total ? el('p', {}, `Downloaded ${bytes(member.bytes_done)} of ${bytes(member.bytes_total)}`,
        el('progress', { max: member.bytes_total, value: member.bytes_done, 'aria-label': 'download' })) : null,
      d.last_error ? el('p', { class: 'error', 'data-testid': 'device-error' }, `Last error: ${d.last_error}`) : null);
    const events = await api(`/api/v1/events${query({ device: id, limit: 50 })}`);
    history.replaceChildren(table(['Time', 'Event', 'Rollout', 'Detail'], events.map((e) => [
      time(e.time), badge(e.kind), e.rollout ? el('a', { href: `#/rollouts/${encodeURIComponent(e.rollout)}` }, e.rollout) : '—', e.detail])));
  }

  // Its member in the rollout (the members list pages by device id; the first page of 1000 holds it
  // in a small rollout, otherwise the device's phase above is what shows).
  async function findMember(rollout, device) {
    try {
      const page = await api(`/api/v1/rollouts/${encodeURIComponent(rollout)}/members${query({ limit: 1000 })}`);
      return page.find((m) => m.device === device) || null;
    } catch { return null; }
  }

  async function loadLogs() {
    const fresh = await api(`${path}/logs${query({ after: lastLog, limit: 500 })}`);
    for (const l of fresh) {
      lastLog = Math.max(lastLog, l.id);
      logs.append(el('div', {}, `${time(l.time)} ${LEVELS[l.level] || l.level} ${l.source ? `[${l.source}] ` : ''}${l.message}`));
    }
    if (!logs.childElementCount) logs.replaceChildren(el('div', { class: 'muted' }, 'No logs uploaded yet.'));
    else logs.querySelector('.muted')?.remove();
    if (fresh.length) logs.scrollTop = logs.scrollHeight;
  }

  await loadDevice();
  await loadLogs();
  const refresh = throttle(() => { loadDevice().catch(() => {}); loadLogs().catch(() => {}); }, 1500);
  const off = live.on((kind, data) => {
    if (kind === 'rollout' || kind === 'resync' || (kind === 'event' && data.device === id)) refresh();
  });
  return {
    node: el('section', {}, el('p', {}, el('a', { href: '#/fleet' }, '← Fleet')), el('h1', {}, `Device ${id}`),
      el('div', { class: 'grid' }, inventory, progressBox), el('h2', {}, 'Update history'), history,
      el('h2', { id: 'logs-title' }, 'Logs'), logs),
    dispose: off,
  };
}
