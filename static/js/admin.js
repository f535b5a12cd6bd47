// admin.js — create, inspect and close conversations with the admin password.
import { api } from './api.js';
import { $, copyText, formatTime } from './dom.js';

const form = $('admin-form');
const password = $('admin-password');
const idInput = $('admin-conversation-id');
const error = $('admin-error');
const result = $('result');
const copyStatus = $('copy-status');
let current = null;

function fail(err) {
  error.textContent = err.status === 401 || err.status === 403 ? `${err.message || 'Wrong admin password.'}` : err.message;
  error.hidden = false;
}

function show(conv) {
  current = { ...(current && current.conversationId === conv.conversationId ? current : {}), ...conv };
  error.hidden = true;
  const link = `${location.origin}/join?c=${encodeURIComponent(current.conversationId)}`;
  $('r-id').textContent = current.conversationId;
  $('r-status').textContent = current.status || 'active';
  $('r-status').dataset.status = current.status || 'active';
  $('r-code').textContent = current.joinCode || '—';
  $('r-link').textContent = link;
  $('r-link').href = link;
  $('r-created').textContent = current.createdAt ? formatTime(current.createdAt) : '—';
  const closed = current.status === 'closed';
  $('r-closed-label').hidden = !current.closedAt;
  $('r-closed').hidden = !current.closedAt;
  $('r-closed').textContent = current.closedAt ? formatTime(current.closedAt) : '';
  $('close-btn').disabled = closed;
  $('close-btn').textContent = closed ? 'Conversation closed' : 'Close conversation';
  copyStatus.textContent = '';
  result.hidden = false;
  idInput.value = current.conversationId;
}

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
    fail(err);
  } finally {
    button.disabled = false;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  run($('create-btn'), async () => {
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
  run($('lookup-btn'), async () => {
    current = null;
    show((await api('POST', `/api/v1/admin/conversations/${encodeURIComponent(id)}`, { adminPassword: password.value })).details);
  });
});

$('close-btn').addEventListener('click', () => {
  if (!current) return;
  if (!confirm(`Close conversation ${current.conversationId}? Nobody will be able to join or post.`)) return;
  run($('close-btn'), async () => {
    const path = `/api/v1/admin/conversations/${encodeURIComponent(current.conversationId)}/close`;
    show((await api('POST', path, { adminPassword: password.value })).details);
  });
});

async function copy(text, what) {
  copyStatus.textContent = (await copyText(text)) ? `${what} copied.` : `Copy failed — select the ${what.toLowerCase()} and copy it.`;
}
$('copy-code').addEventListener('click', () => current && copy(current.joinCode, 'Join code'));
$('copy-link').addEventListener('click', () => current && copy($('r-link').href, 'Join link'));
