// @ts-check
// room.js — the room page: loads the session, wires chat, live events, presence and the call.
import { api, useSession, forgetSession, onUnauthorized } from './api.js';
import { EventStream, signal } from './events.js';
import { $, el, avatar, copyText, plainText } from './dom.js';
import { Chat } from './chat.js';
import { Reactions } from './reactions.js';
import { Typing } from './typing.js';
import { Receipts } from './receipts.js';
import { Files } from './files.js';
import { Call } from './call.js';
import { takeHandoff, isFramed, EmbedBridge, countsAsUnread } from './embed-bridge.js';

/** @typedef {import('./types.js').ServerEvent} ServerEvent */
/** @typedef {import('./api.js').ApiError} ApiError */

const conversationId = /** @type {string} */ (document.body.dataset.conversationId); // templates/room.stpl
const joinUrl = `/join?c=${encodeURIComponent(conversationId)}`;
/** @type {import('./types.js').RoomState} */
const state = {
  conversationId,
  me: /** @type {import('./types.js').Me} */ (/** @type {unknown} */ (null)), // from the session, in main(), before anything reads it
  names: new Map(), avatars: new Map(), online: new Map(), closed: false, streamState: 'connecting', ready: false,
};
const baseTitle = `${conversationId} · chats3`;
let unread = 0;
// Made in main() once the session is known; what may run before that reaches them with `?.`.
/** @type {Chat} */ let chat;
/** @type {Reactions} */ let reactions;
/** @type {Typing} */ let typing;
/** @type {Receipts} */ let receipts;
/** @type {Files} */ let files;
/** @type {Call} */ let call;
/** @type {EventStream} */ let stream;
/** @type {EmbedBridge | null} */
let bridge = null; // EmbedBridge when framed; errors only when the host's origin is unknown (embed-bridge.js)
const framed = isFramed();
const features = frameFeatures();

/**
 * The controls shown: all of them standalone; inside a frame only those the host asked for with
 * the SDK's `features` option (`GET /embed?features=…` → `?f=call,record,leave`), as the original
 * hid Call, Record and Leave when framed.
 */
function frameFeatures() {
  if (!framed) return { call: true, record: true, leave: true };
  const asked = new Set((new URLSearchParams(location.search).get('f') || '').split(','));
  return { call: asked.has('call'), record: asked.has('record'), leave: asked.has('leave') };
}

// ---- small UI helpers ----

/**
 * @param {string} text
 * @param {string} [kind]  warn, error, info, or reconnect (cleared when the stream is back)
 */
function banner(text, kind = 'warn') {
  if (kind === 'error') bridge?.error('room', text);
  const b = $('banner');
  b.textContent = text;
  b.dataset.kind = kind;
  b.hidden = false;
}
/** @param {string} [kind]  only a banner of this kind */
function clearBanner(kind) {
  const b = $('banner');
  if (!kind || b.dataset.kind === kind) b.hidden = true;
}

function setTitle() {
  document.title = unread ? `(${unread}) ${baseTitle}` : baseTitle;
  bridge?.unread(unread);
}

function away() {
  return document.visibilityState !== 'visible' || !document.hasFocus();
}

/**
 * @param {import('./events.js').StreamState} s
 * @param {{ attempt: number, delay?: number }} [info]
 */
function onStreamState(s, info) {
  state.streamState = s;
  const node = $('conn-status');
  node.dataset.state = state.closed ? 'closed' : s;
  if (state.closed) return;
  if (s === 'open') {
    node.textContent = 'Live';
    clearBanner('reconnect');
    chat?.retryFailed();
  } else if (s === 'reconnecting') {
    node.textContent = 'Reconnecting…';
    const secs = info && info.delay ? ` Retrying in ${Math.ceil(info.delay / 1000)} s.` : '';
    banner(`Connection lost — reconnecting.${secs} Messages that could not be sent are retried once the connection is back.`, 'reconnect');
  } else if (s === 'connecting') {
    node.textContent = 'Connecting…';
  }
}

function paintPeople() {
  const list = $('people-list');
  list.replaceChildren();
  const inCall = call ? call.memberList() : new Set();
  const people = [...state.online.entries()].sort((a, b) => (a[0] === state.me.userId ? -1 : b[0] === state.me.userId ? 1 : a[1].localeCompare(b[1])));
  for (const [userId, name] of people) {
    list.append(el('li', { class: 'person', dataset: { userId } },
      avatar(userId, name, state.avatars.get(userId)),
      el('span', { class: 'person-name', text: userId === state.me.userId ? `${name} (you)` : name }),
      el('span', { class: 'dot', role: 'img', 'aria-label': 'online' }),
      inCall.has(userId) ? el('span', { class: 'tag tag-call', text: 'in call' }) : null));
  }
  $('people-count').textContent = String(state.online.size);
  const others = [...inCall].filter((u) => u !== state.me.userId).length;
  const btn = /** @type {HTMLButtonElement} */ ($('call-btn'));
  btn.hidden = !features.call || Boolean(call && call.inCall); // the call toolbar has "Leave call"
  btn.disabled = state.closed;
  btn.textContent = others ? `Join call (${others})` : 'Start call';
  btn.classList.toggle('btn-live', others > 0);
}

function closed() {
  if (state.closed) return;
  state.closed = true;
  banner('This conversation has been closed. You can still read it, but nobody can post or call.', 'error');
  $('conn-status').textContent = 'Closed';
  $('conn-status').dataset.state = 'closed';
  chat?.disable();
  call?.leave();
  stream?.stop();
  /** @type {HTMLButtonElement} */ ($('call-btn')).disabled = true;
}

function toJoin() {
  forgetSession(conversationId);
  if (framed) {
    // The join page cannot be framed (frame-ancestors 'none'); the host has to mint a new ticket.
    stream?.stop();
    chat?.disable();
    bridge?.error('session', 'The chat session is no longer valid');
    banner('This chat session has ended. Reload the page to join again.', 'error');
    return;
  }
  location.replace(joinUrl);
}

/** Leave the conversation (Leave button, or the host's `leave` command when embedded). */
async function leave() {
  call?.leave();
  stream?.stop();
  try {
    await api('POST', '/api/v1/leave?keepSession=false');
  } catch {
    /* leaving anyway */
  }
  if (!framed) return toJoin();
  forgetSession(conversationId);
  chat?.disable();
  /** @type {HTMLButtonElement} */ ($('call-btn')).disabled = true;
  $('conn-status').textContent = 'Left';
  $('conn-status').dataset.state = 'closed';
  banner('You left the conversation.', 'info');
  bridge?.left();
}

// ---- live events ----

/** @type {string[]} */
const eventLog = []; // last events, for tests and bug reports (window.chats3Debug.events)

/** @param {ServerEvent} event */
function onEvent(event) {
  const speaker = event.type === 'call-speaker' && event.data ? ` ${event.data.speaker}` : '';
  eventLog.push(`${event.type}${event.fromUserId ? ` from ${event.fromUserId.slice(0, 8)}` : ''}${event.data && event.data.reply ? ' (reply)' : ''}${speaker}`);
  if (eventLog.length > 300) eventLog.shift();
  const d = event.data || {};
  const from = event.fromUserId;
  switch (event.type) {
    case 'system':
      return;
    case 'room-state': {
      state.online.clear();
      for (const p of d.participants || []) {
        state.online.set(p.userId, plainText(p.displayName));
        state.names.set(p.userId, plainText(p.displayName));
      }
      state.online.set(state.me.userId, state.me.displayName);
      paintPeople();
      // A fresh page is in no call; ask who is, so the call button can say "Join call".
      if (!call.inCall) signal('call-query', {}).catch(() => {});
      if (state.ready) reactions.load(); // catch up on reactions missed while disconnected
      return;
    }
    case 'peer-join':
      if (from) {
        state.online.set(from, plainText(d.displayName) || 'Guest');
        state.names.set(from, plainText(d.displayName) || 'Guest');
        if (call.inCall && from !== state.me.userId) signal('call-join', { media: call.media, reply: true }, from).catch(() => {});
      }
      paintPeople();
      return;
    case 'peer-leave': {
      if (from && from !== state.me.userId) state.online.delete(from);
      typing.receive(from, false);
      call.handle(event);
      paintPeople();
      return;
    }
    case 'new-message':
      if (chat.upsert(d, { live: true })) {
        typing.receive(d.senderUserId, false);
        receipts.maybeSend();
        receipts.paint();
      }
      return;
    case 'typing':
      typing.receive(from, Boolean(d.isTyping));
      return;
    case 'reaction':
      reactions.apply(d.messageId, d.emoji, from, d.added !== false);
      return;
    case 'read-receipt':
      receipts.receive(from, d.messageId);
      return;
    case 'conversation-closed':
      closed();
      return;
    case 'stream-closed':
      return; // the server closed a stream that fell behind; EventSource reconnects and catches up
    case 'session-ended':
      // The server ended this session (left in another tab, replaced, expired) or the conversation.
      if (d.reason === 'conversation-closed') return closed();
      stream?.stop();
      return toJoin();
    default:
      call.handle(event);
  }
}

// ---- composer ----

function bindComposer() {
  const input = /** @type {HTMLTextAreaElement} */ ($('composer-input'));
  const grow = () => {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight + 2, 152)}px`;
  };
  input.addEventListener('input', () => {
    grow();
    typing.input(input.value.trim().length > 0);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      /** @type {HTMLFormElement} */ ($('composer')).requestSubmit();
    }
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const body = input.value.trim();
    if (!body || state.closed) return;
    input.value = '';
    grow();
    typing.stop();
    chat.send({ type: 'text', body }).catch(() => {});
    input.focus();
  });
}

function bindChrome() {
  $('people-toggle').addEventListener('click', () => {
    const open = $('people').classList.toggle('open');
    $('people-toggle').setAttribute('aria-expanded', String(open));
    if (open) $('people-close').focus();
  });
  $('people-close').addEventListener('click', () => {
    $('people').classList.remove('open');
    $('people-toggle').setAttribute('aria-expanded', 'false');
    $('people-toggle').focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && $('people').classList.contains('open')) {
      $('people').classList.remove('open');
      $('people-toggle').setAttribute('aria-expanded', 'false');
      $('people-toggle').focus();
    }
  });
  $('invite-btn').addEventListener('click', async () => {
    const btn = $('invite-btn');
    let text = `${location.origin}${joinUrl}`;
    try {
      const { details } = await api('GET', '/api/v1/conversation');
      if (details.joinCode) text += `\nJoin code: ${details.joinCode}`;
    } catch {
      /* link alone is still useful */
    }
    btn.textContent = (await copyText(text)) ? 'Copied!' : 'Copy failed';
    setTimeout(() => (btn.textContent = 'Invite'), 2000);
  });
  $('leave-btn').addEventListener('click', () => leave());
  $('call-btn').addEventListener('click', async () => {
    await call.join();
    paintPeople();
  });
  const seen = () => {
    if (away()) return;
    unread = 0;
    setTitle();
    receipts.maybeSend();
  };
  document.addEventListener('visibilitychange', seen);
  window.addEventListener('focus', seen);
  $('messages').addEventListener('scroll', () => {
    if (chat.nearBottom()) receipts.maybeSend();
  }, { passive: true });
  window.addEventListener('online', () => stream?.kick());
}

// ---- start ----

async function main() {
  setTitle();
  const handoff = await takeHandoff(conversationId);
  if (framed) $('invite-btn').hidden = true; // embedded users come with tickets, not join codes
  $('leave-btn').hidden = !features.leave;
  $('record-btn').hidden = !features.record;
  bridge = EmbedBridge.create(handoff.hostOrigin, {
    focus: () => $('composer-input').focus(),
    leave: () => leave(),
  });
  if (handoff.error) bridge?.error('handoff', handoff.error.message);
  useSession(conversationId);
  onUnauthorized(() => {
    if (!state.closed) toJoin();
  });
  /** @type {{ userId: string, displayName: string, conversationId?: string, avatarUrl?: string }} */
  let session;
  try {
    session = (await api('GET', '/api/v1/session')).details;
  } catch (e) {
    const err = /** @type {ApiError} */ (e);
    if (err.status === 401 || err.status === 403) return toJoin();
    banner(`Could not load the conversation: ${err.message}. Reload the page to try again.`, 'error');
    return;
  }
  if (session.conversationId && session.conversationId !== conversationId) return toJoin();
  state.me = { userId: session.userId, displayName: plainText(session.displayName) };
  state.names.set(session.userId, state.me.displayName);
  if (session.avatarUrl) state.avatars.set(session.userId, session.avatarUrl);
  state.online.set(session.userId, state.me.displayName);

  chat = new Chat(state, {
    onRendered: (node, msg) => reactions.decorate(node, msg),
    onIncoming: (msg) => {
      bridge?.message(msg, false);
      // Others' text and files and the integrator's notices; join and leave lines are not news.
      if (away() && countsAsUnread(msg, state.me.userId)) {
        unread += 1;
        setTitle();
      }
    },
    onSent: (msg) => {
      receipts.paint();
      bridge?.message(msg, true);
    },
    onClosed: closed,
    onUnauthorized: toJoin,
    onError: (err) => banner(err.message, 'warn'),
  });
  reactions = new Reactions(state, chat);
  typing = new Typing(state);
  receipts = new Receipts(state, chat);
  files = new Files(chat);
  call = new Call(state, {
    onMembers: (members) => {
      paintPeople();
      bridge?.call(members, call.inCall);
    },
    onBanner: banner,
    clearBanner,
  });
  bindComposer();
  bindChrome();
  paintPeople();

  const [config, conv] = await Promise.all([
    api('GET', '/api/v1/client-config').then((r) => r.details).catch(() => ({})),
    api('GET', '/api/v1/conversation').then((r) => r.details).catch(() => ({})),
  ]);
  call.configure(config);
  files.setMaxBytes(config.maxUploadBytes);

  let cursor = null;
  try {
    cursor = await chat.loadInitial();
  } catch (e) {
    const err = /** @type {ApiError} */ (e);
    if (err.status === 401) return toJoin();
    banner(`Could not load the history: ${err.message}`, 'warn');
  }
  await reactions.load();
  receipts.maybeSend();
  if (conv.status === 'closed') {
    closed();
  } else {
    stream = new EventStream({ onEvent, onState: onStreamState, onFatal: (err) => (err.isClosed ? closed() : toJoin()) });
    stream.start(cursor);
  }
  state.ready = true;
  if (!framed) $('composer-input').focus(); // an embedded frame must not steal focus from the host page
  bridge?.ready({ conversationId, userId: state.me.userId, displayName: state.me.displayName });
  bridge?.unread(unread);
}

// For tests and bug reports.
/** @type {Window & { chats3Debug?: object }} */ (window).chats3Debug = {
  get state() {
    return state;
  },
  get ready() {
    return state.ready;
  },
  get embedded() {
    if (!bridge) return null;
    return bridge.errorsOnly ? { hostOrigin: bridge.hostOrigin, errorsOnly: true } : { hostOrigin: bridge.hostOrigin };
  },
  messages: () => (chat ? chat.messages() : []),
  events: () => eventLog.slice(),
  log: (/** @type {string} */ line) => eventLog.push(line),
  getStats: () => (call ? call.stats() : {}),
  peers: () => (call ? [...call.peers.keys()] : []),
  call: () => call,
  recording: () => (call ? { active: call.recorder.active, size: call.recorder.lastSize, name: call.recorder.lastName } : null),
};

main();
