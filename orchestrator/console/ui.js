// SPDX-License-Identifier: Apache-2.0
// What every page shares: the live feed, the confirmation dialog, throttling.
import { Live } from './api.js';

const $ = (id) => document.getElementById(id);
const liveBadge = (on) => { const b = $('live'); b.textContent = on ? 'live' : 'reconnecting'; b.classList.toggle('on', on); };
export const live = new Live(liveBadge);

// Asks before an action; resolves true when confirmed.
export function confirmAction(text, okLabel = 'Confirm') {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

// Runs `fn` at most once per `ms` however often it is asked (live updates come every second).
export function throttle(fn, ms = 1000) {
  let timer = null, pending = false;
  return () => {
    if (timer) { pending = true; return; }
    fn();
    timer = setTimeout(() => { timer = null; if (pending) { pending = false; fn(); } }, ms);
  };
}

