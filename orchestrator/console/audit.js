// SPDX-License-Identifier: Apache-2.0
// The audit log and its verification: the whole hash chain is read (GET /api/v1/audit, paged) and
// checked here exactly as `fotactl audit verify` does (orchestrator/src/audit.cpp): every entry's
// SHA-256 over its length-prefixed fields, each linked to the one before.
import { api, query } from './api.js';
import { el, table, time } from './dom.js';

const GENESIS = '0'.repeat(64);
const encoder = new TextEncoder();

async function entryHash(e) {
  const parts = [String(e.seq), String(e.time_ms), e.actor, e.action, e.detail, e.prev_hash];
  const chunks = parts.map((v) => { const b = encoder.encode(v); return [encoder.encode(`${b.length}:`), b, encoder.encode(';')]; }).flat();
  const data = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) { data.set(c, o); o += c.length; }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export async function verifyChain(entries) {
  if (!globalThis.crypto?.subtle) return { ok: false, message: 'this browser offers no SHA-256 here (open the console over HTTPS or on localhost), or run fotactl audit verify' };
  let prev = GENESIS;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.seq !== i + 1) return { ok: false, message: `audit entry ${i + 1} is missing (the next entry has sequence ${e.seq}): entries were deleted` };
    if (e.prev_hash !== prev) return { ok: false, message: `audit entry ${e.seq} does not link to the entry before it: entries were deleted or replaced` };
    if ((await entryHash(e)) !== e.hash) return { ok: false, message: `audit entry ${e.seq} (${e.action}) was modified: its content does not match its hash` };
    prev = e.hash;
  }
  return { ok: true, message: `The chain of ${entries.length} entries is intact; head hash ${prev}` };
}

export async function auditPage() {
  const entries = [];
  let cursor = '';
  do {
    const page = await api(`/api/v1/audit${query({ limit: 10000, cursor })}`, { page: true });
    entries.push(...page.items);
    cursor = page.next;
  } while (cursor);
  const result = await verifyChain(entries);
  const shown = entries.slice(-500).reverse();
  return {
    node: el('section', {}, el('h1', {}, 'Audit log'),
      el('p', { class: `card ${result.ok ? 'ok' : 'error'}`, role: 'status', 'data-testid': 'audit-verification' },
        result.ok ? '✔ Verified. ' : '✘ Verification failed: ', result.message),
      table(['#', 'Time', 'Actor', 'Action', 'Detail'], shown.map((e) => [`${e.seq}`, time(e.time), e.actor, e.action, el('span', { class: 'mono' }, e.detail)]),
        entries.length > shown.length ? `The newest ${shown.length} of ${entries.length} entries` : null)),
  };
}
