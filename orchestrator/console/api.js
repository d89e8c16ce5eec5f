// SPDX-License-Identifier: Apache-2.0
// The console's only way to the orchestrator: its public HTTP API (docs/openapi.yaml) with the
// bearer token the operator signed in with (kept in sessionStorage: this tab only), and the event
// stream (server-sent events) opened with a short-lived ticket, since EventSource sends no header.
const KEY = 'fota.console.token';
// `known` settles once whoami answered: pages that show role-dependent actions await it.
export const session = { token: sessionStorage.getItem(KEY) || '', actor: '', role: '', known: Promise.resolve() };
const RANK = { viewer: 0, operator: 1, admin: 2 };
export const may = (role) => RANK[session.role] >= RANK[role];

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export function signIn(token) { session.token = token; sessionStorage.setItem(KEY, token); }
export function signOut() { session.token = ''; session.role = ''; sessionStorage.removeItem(KEY); }

// A JSON call; `page: true` also returns the next page's cursor (X-Next-Cursor).
export async function api(path, { method = 'GET', body, type, page = false } = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (type) headers['Content-Type'] = type;
  const res = await fetch(path, { method, body: body ?? (method === 'GET' ? undefined : ''), headers });
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new ApiError(res.status, data?.error?.message || `${res.status} ${res.statusText}`);
  return page ? { items: data, next: res.headers.get('X-Next-Cursor') || '' } : data;
}

export const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== undefined && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
};

// Uploads a file with progress (fetch reports none for request bodies).
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, 'the upload was interrupted: is the orchestrator reachable?'));
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data?.error?.message || `${xhr.status} ${xhr.statusText}`));
    };
    xhr.send(file);
  });
}

// The live feed: one EventSource, reopened with a fresh ticket when it drops.
export class Live {
  constructor(onStatus) { this.listeners = new Set(); this.onStatus = onStatus; this.source = null; this.stopped = true; }
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  emit(kind, data) { for (const fn of [...this.listeners]) { try { fn(kind, data); } catch (e) { console.error(e); } } }
  async start() {
    this.stopped = false;
    try {
      const { url } = await api('/api/v1/events/stream-tickets', { method: 'POST' });
      if (this.stopped) return;
      const source = new EventSource(url);
      this.source = source;
      for (const kind of ['hello', 'rollout', 'event', 'fleet', 'resync']) {
        source.addEventListener(kind, (e) => {
          if (kind === 'hello') this.onStatus(true);
          this.emit(kind, JSON.parse(e.data));
        });
      }
      // A ticket is good once: on any error, open a new stream with a new ticket.
      source.onerror = () => { source.close(); this.onStatus(false); this.retry(); };
    } catch (e) {
      this.onStatus(false);
      if (e.status !== 401) this.retry();
    }
  }
  retry() { if (!this.stopped) setTimeout(() => this.start(), 2000); }
  stop() { this.stopped = true; this.source?.close(); this.onStatus(false); }
}
