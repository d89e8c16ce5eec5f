// SPDX-License-Identifier: Apache-2.0
// Artifacts: upload a signed bundle (with progress), what was verified about each, the rollouts
// that use it, and deletion (refused by the server while a rollout needs it).
import { api, may, session, upload } from './api.js';
import { bytes, el, table, time } from './dom.js';
import { confirmAction } from './ui.js';

export async function artifactsPage() {
  await session.known;
  const listBox = el('div');
  const status = el('p', { role: 'status', 'aria-live': 'polite', id: 'artifact-status' });

  async function load() {
    const [artifacts, rollouts] = await Promise.all([api('/api/v1/artifacts?limit=1000'), api('/api/v1/rollouts?limit=1000')]);
    listBox.replaceChildren(...artifacts.map((a) => {
      const users = rollouts.filter((r) => r.artifact === a.artifact_id);
      return el('article', { class: 'card', 'aria-labelledby': `a-${a.artifact_id}` },
        el('h2', { id: `a-${a.artifact_id}` }, `${a.name || 'firmware'} ${a.version}`),
        el('dl', { class: 'kv' },
          el('dt', {}, 'Artifact id'), el('dd', { class: 'mono' }, a.artifact_id),
          el('dt', {}, 'Signature'), el('dd', { class: 'ok' }, 'Ed25519 signature verified against the trusted keys at upload (unsigned or untrusted bundles are refused)'),
          el('dt', {}, 'Image SHA-256'), el('dd', { class: 'mono' }, a.image_sha256),
          el('dt', {}, 'Security counter'), el('dd', {}, `${a.security_counter}`),
          el('dt', {}, 'Hardware'), el('dd', {}, a.compatible_hardware.join(', ')),
          el('dt', {}, 'Size'), el('dd', {}, `${bytes(a.image_size)} in ${a.chunks} chunks of ${bytes(a.chunk_size)}`),
          el('dt', {}, 'Encrypted for'), el('dd', {}, a.encrypted_for.length ? a.encrypted_for.join(', ') : 'not encrypted'),
          el('dt', {}, 'Created'), el('dd', {}, time(a.created_at)),
          el('dt', {}, 'Used by'), el('dd', {}, users.length ? users.map((r, i) => [i ? ', ' : '', el('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, `${r.name} (${r.state})`)]) : 'no rollout')),
        may('admin') ? el('div', { class: 'actions' }, el('button', { type: 'button', class: 'danger', onclick: () => remove(a) }, `Delete ${a.version}`)) : null);
    }));
    if (!artifacts.length) listBox.replaceChildren(el('p', { class: 'muted' }, 'No artifacts yet.'));
  }

  async function remove(a) {
    if (!(await confirmAction(`Delete artifact ${a.version} (${a.artifact_id})? Devices can no longer be sent it.`, 'Delete'))) return;
    try {
      await api(`/api/v1/artifacts/${encodeURIComponent(a.artifact_id)}`, { method: 'DELETE' });
      status.textContent = `Deleted ${a.version}.`;
      await load();
    } catch (e) { status.textContent = `Not deleted: ${e.message}`; }
  }

  const file = el('input', { type: 'file', id: 'bundle', accept: '.fota', required: true });
  const bar = el('progress', { max: 1, value: 0, 'aria-label': 'upload progress', hidden: true });
  const form = el('form', { class: 'card', 'aria-label': 'Upload an artifact' },
    el('label', { for: 'bundle' }, 'Signed bundle (made by fotactl artifact create)'), file,
    el('div', { class: 'actions' }, el('button', { type: 'submit' }, 'Upload')), bar);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file.files[0]) return;
    bar.hidden = false;
    status.textContent = 'Uploading…';
    try {
      const m = await upload('/api/v1/artifacts', file.files[0], (f) => { bar.value = f; });
      status.textContent = `Uploaded ${m.version} (${m.artifact_id}); its signature was verified.`;
      form.reset();
      await load();
    } catch (err) { status.textContent = `Upload refused: ${err.message}`; }
    bar.hidden = true;
  });
  await load();
  return { node: el('section', {}, el('h1', {}, 'Artifacts'), may('admin') ? form : null, status, listBox) };
}
