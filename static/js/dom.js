// @ts-check
// dom.js — tiny helpers to build elements. Text always goes through textContent.

/** @typedef {Node | string | number | null | undefined | false} Child  what `el` takes as a child (null, undefined and false are skipped) */

/**
 * An element with attributes and children. `class`, `text` (textContent), `dataset` (an object) and
 * `on<event>` (a function) are special; `true` sets an empty attribute; null, undefined and false are skipped.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = String(value);
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * The page's element with this id. The templates fix the ids, so it is there; a caller that needs a
 * more precise type (an input, a button) casts the result with a JSDoc `@type`.
 * @param {string} id
 * @returns {HTMLElement}
 */
export const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * The server strips HTML from bodies and names but keeps them HTML-escaped (as the original service
 * did), e.g. "a &amp; b". This turns such a string back into the plain text to show with textContent.
 * DOMParser builds an inert document: nothing in it runs or loads. Anything but a string comes back as it was.
 * @template T
 * @param {T} s
 * @returns {T}
 */
export function plainText(s) {
  if (typeof s !== 'string' || !s.includes('&')) return s;
  return /** @type {T} */ (new DOMParser().parseFromString(s, 'text/html').documentElement.textContent);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** @typedef {Array<[string, Record<string, string>]>} Shapes  [tag, attributes] pairs of SVG elements */

/**
 * A decorative stroke icon built from [tag, attributes] pairs (no markup strings).
 * @param {Shapes} shapes
 * @returns {SVGSVGElement}
 */
export function icon(shapes) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const [tag, attrs] of shapes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
  }
  return svg;
}

/**
 * @param {string | null | undefined} name
 * @returns {string}
 */
export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}

/**
 * Stable hue per user id, used to colour avatars.
 * @param {string} id
 * @returns {number}
 */
export function hueOf(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}

/**
 * An avatar URL we show: https only (no mixed content, no `javascript:`); anything else → null.
 * @param {unknown} url
 * @returns {string | null}
 */
export function avatarSrc(url) {
  try {
    return typeof url === 'string' && new URL(url).protocol === 'https:' ? url : null;
  } catch {
    return null;
  }
}

/**
 * Initials on the user's colour; with an https `avatarUrl` (from a ticket or a join) the picture is
 * laid over them, fetched without a referrer, and removed again if it fails to load.
 * @param {string} userId
 * @param {string | null | undefined} name
 * @param {string | null | undefined} [avatarUrl]
 * @returns {HTMLSpanElement}
 */
export function avatar(userId, name, avatarUrl) {
  const node = el('span', { class: 'avatar', 'aria-hidden': 'true', text: initials(name) });
  node.style.background = `hsl(${hueOf(userId)} 50% 30%)`;
  const src = avatarSrc(avatarUrl);
  if (src) {
    const img = el('img', { class: 'avatar-img', src, alt: '', referrerpolicy: 'no-referrer', loading: 'lazy', decoding: 'async' });
    img.addEventListener('error', () => img.remove(), { once: true });
    node.append(img);
  }
  return node;
}

/**
 * A timestamp as people read it: the time today, the date and time before; '' when it is not a date.
 * @param {string | undefined} iso
 * @returns {string}
 */
export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === new Date().toDateString();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return sameDay ? time : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

/**
 * @param {number} n  bytes
 * @returns {string}
 */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * Puts text on the clipboard (with the old `execCommand` way as a fallback).
 * @param {string} text
 * @returns {Promise<boolean>} whether it worked
 */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}
