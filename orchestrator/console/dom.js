// SPDX-License-Identifier: Apache-2.0
// DOM helpers: elements are built, never parsed from strings, so data from the fleet (device ids,
// error messages, log lines) cannot inject markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
    else node.setAttribute(k, v === true ? '' : v);
  }
  append(node, children);
  return node;
}
// Replaces a node's children, skipping absent ones (null, false) as el() does.
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}
function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}
export const svg = (tag, attrs = {}, ...children) => {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};
export const badge = (text) => el('span', { class: `badge ${text}` }, text || '—');
export function table(headers, rows, caption) {
  return el('div', { class: 'table-wrap' },
    el('table', {}, caption ? el('caption', { class: 'muted' }, caption) : null,
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.length ? rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c))))
        : el('tr', {}, el('td', { colspan: headers.length, class: 'muted' }, 'Nothing here.')))));
}
// A progress bar of succeeded / failed / active out of total, with a text equivalent.
export function bar(total, succeeded, failed, active, label) {
  const pct = (n) => (total ? (100 * n) / total : 0);
  return el('div', { class: 'bar', role: 'img', 'aria-label': `${label}: ${succeeded} of ${total} succeeded, ${failed} failed, ${active} in progress` },
    el('span', { class: 's', style: `width:${pct(succeeded)}%` }),
    el('span', { class: 'f', style: `width:${pct(failed)}%` }),
    el('span', { class: 'a', style: `width:${pct(active)}%` }));
}
export const bytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
export function duration(seconds) {
  if (seconds === undefined || seconds === null) return '—';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
}
export const time = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
