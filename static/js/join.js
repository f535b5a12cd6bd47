// @ts-check
// join.js — the join form: POST /api/v1/join, keep the session for this tab, go to the room.
import { api, saveSession } from './api.js';
import { $ } from './dom.js';

const form = $('join-form');
const cid = /** @type {HTMLInputElement} */ ($('conversation-id'));
const code = /** @type {HTMLInputElement} */ ($('join-code'));
const name = /** @type {HTMLInputElement} */ ($('display-name'));
const error = $('join-error');
const submit = /** @type {HTMLButtonElement} */ ($('join-submit'));

try {
  const remembered = localStorage.getItem('chats3.displayName');
  if (remembered && !name.value) name.value = remembered;
} catch {
  /* storage disabled */
}
// A join link may fill in the id and the code (`?conversationId=…&joinCode=…`): start at the first empty field.
([cid, code, name].find((input) => !input.value) || name).focus();

/**
 * @param {string} message
 * @param {HTMLInputElement | null} [field]  the input to mark invalid and focus
 */
function showError(message, field) {
  error.textContent = message;
  error.hidden = false;
  for (const input of [cid, code, name]) input.removeAttribute('aria-invalid');
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  }
}

/**
 * The input a refusal's details name, if any.
 * @param {unknown} details
 */
const fieldFor = (details) => {
  const d = JSON.stringify(details || '').toLowerCase();
  if (d.includes('displayname')) return name;
  if (d.includes('joincode')) return code;
  if (d.includes('conversationid')) return cid;
  return null;
};

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = {
    conversationId: cid.value.trim(),
    joinCode: code.value.trim().toUpperCase(),
    displayName: name.value.trim(),
  };
  if (!body.conversationId) return showError('Enter the conversation ID.', cid);
  if (!body.joinCode) return showError('Enter the join code.', code);
  if (!body.displayName) return showError('Enter your name.', name);
  error.hidden = true;
  submit.disabled = true;
  submit.textContent = 'Joining…';
  try {
    const { details } = await api('POST', '/api/v1/join', body);
    const conversationId = details.conversationId || body.conversationId;
    saveSession(conversationId, details.sessionId);
    try {
      localStorage.setItem('chats3.displayName', body.displayName);
    } catch {
      /* ignore */
    }
    location.assign(`/room/${encodeURIComponent(conversationId)}`);
  } catch (e) {
    const err = /** @type {import('./api.js').ApiError} */ (e);
    submit.disabled = false;
    submit.textContent = 'Join';
    if (err.details && err.details.reason === 'closed') showError('This conversation has been closed.', cid);
    else if (err.status === 409) showError('That name is already in use in this conversation. Pick another one.', name);
    else if (err.status === 429) showError('Too many attempts. Wait a minute and try again.');
    else if (err.status === 0) showError(err.message);
    else showError(err.message || 'Could not join.', fieldFor(err.details) || (err.status === 403 ? code : null));
  }
});
