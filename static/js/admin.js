// @ts-check
// admin.js — create, inspect and close conversations with the admin password.
import { api } from './api.js';
import { $, copyText, formatTime } from './dom.js';

/**
 * A conversation as the admin API describes it.
 * @typedef {object} Conversation
 * @property {string} conversationId
 * @property {string} [status]  active or closed
 * @property {string} [joinCode]
 * @property {string} [createdAt]
 * @property {string | null} [closedAt]
 */

const form = $('admin-form');
const password = /** @type {HTMLInputElement} */ ($('admin-password'));
const idInput = /** @type {HTMLInputElement} */ ($('admin-conversation-id'));
const error = $('admin-error');
const result = $('result');
const copyStatus = $('copy-status');
const closeBtn = /** @type {HTMLButtonElement} */ ($('close-btn'));
const rLink = /** @type {HTMLAnchorElement} */ ($('r-link'));
/** @type {Conversation | null} */
let current = null;

/** @param {import('./api.js').ApiError} err */
function fail(err) {
  error.textContent = err.status === 401 || err.status === 403 ? `${err.message || 'Wrong admin password.'}` : err.message;
  error.hidden = false;
}

/**
 * Shows a conversation (merged into the one shown if it is the same).
 * @param {Conversation} conv
 */
function show(conv) {
  const shown = { ...(current && current.conversationId === conv.conversationId ? current : {}), ...conv };
  current = shown;
  error.hidden = true;
  const link = `${location.origin}/join?c=${encodeURIComponent(shown.conversationId)}`;
  $('r-id').textContent = shown.conversationId;
  $('r-status').textContent = shown.status || 'active';
  $('r-status').dataset.status = shown.status || 'active';
  $('r-code').textContent = shown.joinCode || '—';
  rLink.textContent = link;
  rLink.href = link;
  $('r-created').textContent = shown.createdAt ? formatTime(shown.createdAt) : '—';
  const closed = shown.status === 'closed';
  $('r-closed-label').hidden = !shown.closedAt;
  $('r-closed').hidden = !shown.closedAt;
  $('r-closed').textContent = shown.closedAt ? formatTime(shown.closedAt) : '';
  closeBtn.disabled = closed;
  closeBtn.textContent = closed ? 'Conversation closed' : 'Close conversation';
  copyStatus.textContent = '';
  result.hidden = false;
  idInput.value = shown.conversationId;
}

/**
 * Runs an admin request with the button disabled meanwhile; asks for the password first.
 * @param {HTMLButtonElement} button
 * @param {() => Promise<void>} fn
 */
async function run(button, fn) {
  if (!password.value) {
    error.textContent = 'Enter the admin password.';
    error.hidden = false;
    password.focus();
    return;
  }
  button.disabled = true;
  try {
    await fn();
  } catch (err) {
    fail(/** @type {import('./api.js').ApiError} */ (err));
  } finally {
    button.disabled = false;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  run(/** @type {HTMLButtonElement} */ ($('create-btn')), async () => {
    /** @type {{ adminPassword: string, conversationId?: string }} */
    const body = { adminPassword: password.value };
    if (idInput.value.trim()) body.conversationId = idInput.value.trim();
    current = null;
    show((await api('POST', '/api/v1/admin/conversations', body)).details);
  });
});

$('lookup-btn').addEventListener('click', () => {
  const id = idInput.value.trim();
  if (!id) {
    error.textContent = 'Enter the conversation ID to look up.';
    error.hidden = false;
    idInput.focus();
    return;
  }
  run(/** @type {HTMLButtonElement} */ ($('lookup-btn')), async () => {
    current = null;
    show((await api('POST', `/api/v1/admin/conversations/${encodeURIComponent(id)}`, { adminPassword: password.value })).details);
  });
});

closeBtn.addEventListener('click', () => {
  if (!current) return;
  const { conversationId } = current;
  if (!confirm(`Close conversation ${conversationId}? Nobody will be able to join or post.`)) return;
  run(closeBtn, async () => {
    const path = `/api/v1/admin/conversations/${encodeURIComponent(conversationId)}/close`;
    show((await api('POST', path, { adminPassword: password.value })).details);
  });
});

/**
 * @param {string} text
 * @param {string} what  what is copied, for the status line
 */
async function copy(text, what) {
  copyStatus.textContent = (await copyText(text)) ? `${what} copied.` : `Copy failed — select the ${what.toLowerCase()} and copy it.`;
}
$('copy-code').addEventListener('click', () => current && copy(current.joinCode || '', 'Join code'));
$('copy-link').addEventListener('click', () => current && copy(rLink.href, 'Join link'));
