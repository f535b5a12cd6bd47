// @ts-check
// embed-bridge.js — the room page's side of embedding: the one-time handoff that turns `?h=CODE`
// into a session kept in this tab's sessionStorage (never in a URL), and the postMessage bridge
// to the host page. The full bridge is active only when the page is framed and the host's origin
// is known (it comes from the signed ticket); it posts to that exact origin and accepts commands
// (the SDK's, and the original's `{type: 'leave'}`) only from the parent window at that origin.
// A frame that does not know its host (a used or expired handoff code in a fresh frame, or storage
// blocked) gets an errors-only bridge: it still tells the host *that* something failed, since the
// user sees it and the host has to mount again, but it sends nothing but `error` and `resize`, to
// the parent's origin as the browser reports it or else '*', and it obeys no command.
import { api, saveSession } from './api.js';

const HOST_PREFIX = 'chats3.host.';
const THEMES = new Set(['light', 'dark', 'auto']);
/** What an errors-only bridge may post: no secret, no user data, nothing about the conversation. */
const ERRORS_ONLY_TYPES = new Set(['error', 'resize']);

/** @typedef {import('./chat.js').Message} Message */

/**
 * What the host page may ask of the room (`setTheme` the bridge does itself).
 * @typedef {object} BridgeCommands
 * @property {() => void} [focus]
 * @property {() => void} [leave]
 */

/**
 * Does `value` look like a bare origin (`scheme://host[:port]`)?
 * @param {unknown} value
 * @returns {value is string}
 */
function isOrigin(value) {
  try {
    return typeof value === 'string' && new URL(value).origin === value;
  } catch {
    return false;
  }
}

/** @type {string | null} */
let memoryHost = null; // used when sessionStorage is unavailable (blocked third-party storage)

/**
 * @param {string} conversationId
 * @param {string} origin
 */
function storeHost(conversationId, origin) {
  memoryHost = origin;
  try {
    sessionStorage.setItem(HOST_PREFIX + conversationId, origin);
  } catch {
    /* storage blocked: memoryHost keeps it for this page load */
  }
}

/**
 * @param {string} conversationId
 * @returns {string | null}
 */
function loadHost(conversationId) {
  if (memoryHost) return memoryHost;
  try {
    const v = sessionStorage.getItem(HOST_PREFIX + conversationId);
    return isOrigin(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Trades a `?h=` handoff code (from `GET /embed`) for the session, once. The code is removed from
 * the address bar before the request, so a reload never replays it (it is single-use anyway).
 * Resolves to `{hostOrigin, error}`; hostOrigin may come from an earlier handoff in this tab.
 * @param {string} conversationId
 * @returns {Promise<{ hostOrigin: string | null, error: Error | null }>}
 */
export async function takeHandoff(conversationId) {
  const url = new URL(location.href);
  const code = url.searchParams.get('h');
  /** @type {Error | null} */
  let error = null;
  if (code) {
    url.searchParams.delete('h');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    try {
      const { details } = await api('POST', '/api/v1/embed/handoff', { code });
      if (details.conversationId && details.conversationId !== conversationId) {
        error = new Error('The handoff code belongs to another conversation');
      } else {
        saveSession(conversationId, details.sessionId);
        if (isOrigin(details.hostOrigin)) storeHost(conversationId, details.hostOrigin);
      }
    } catch (err) {
      error = /** @type {Error} */ (err);
    }
  }
  return { hostOrigin: loadHost(conversationId), error };
}

/**
 * What a message is, in the SDK's words: `text` and `file` (a person's), `join` and `leave` (the
 * server's lines about people), `integrator` (the integrator's signed system message) or `system`
 * (any other line of the server's, e.g. "The conversation was closed").
 * @param {Message} msg
 * @returns {string}
 */
export function messageKind(msg) {
  if (msg.type === 'text' || msg.type === 'file') return msg.type;
  if (msg.type === 'system' && msg.systemKind && ['join', 'leave', 'integrator'].includes(msg.systemKind)) return msg.systemKind;
  return msg.type === 'system' ? 'system' : 'text';
}

/**
 * What a person would call unread: someone else's text or file, or the integrator's own notice;
 * never a join or leave line, nor one's own message from another tab.
 * @param {Message | null | undefined} msg
 * @param {string} myUserId
 * @returns {boolean}
 */
export function countsAsUnread(msg, myUserId) {
  if (!msg || msg.senderUserId === myUserId) return false;
  return ['text', 'file', 'integrator'].includes(messageKind(msg));
}

/**
 * The room's preferred height (px): what the page would need to show the message list without
 * scrolling. The page is exactly as tall as the frame and only the list (and the people column
 * beside it) scrolls, so the document's own height would only repeat the frame's; instead the
 * list's box is replaced by the height of what it holds.
 * @returns {number}
 */
export function preferredHeight() {
  const root = document.documentElement;
  const list = document.getElementById('messages');
  const column = list?.parentElement;
  if (!list || !column) return Math.ceil(root.scrollHeight);
  /** @param {Element} box */
  const natural = (box) => {
    const cs = getComputedStyle(box);
    let h = parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom);
    for (const child of box.children) h += /** @type {HTMLElement} */ (child).offsetHeight;
    return h;
  };
  let row = column.clientHeight - list.clientHeight + natural(list);
  const people = document.getElementById('people');
  if (people && getComputedStyle(people).position === 'static') row = Math.max(row, natural(people));
  return Math.ceil(root.clientHeight - column.clientHeight + row);
}

/**
 * The parent's origin for an errors-only bridge: `location.ancestorOrigins` where the browser has it
 * (Chromium, Safari), else '*' (Firefox). It only narrows who receives the error; it is never
 * trusted for commands, which need the origin the ticket named.
 * @returns {string}
 */
function parentOrigin() {
  try {
    const origin = location.ancestorOrigins?.[0];
    return isOrigin(origin) ? origin : '*';
  } catch {
    return '*';
  }
}

/**
 * True when this page runs inside a frame.
 * @returns {boolean}
 */
export function isFramed() {
  try {
    return window.parent !== window;
  } catch {
    return true;
  }
}

/**
 * The postMessage bridge. `commands` = {setTheme(theme), focus(), leave()}.
 * Every outgoing message is `{source: 'chats3', type, ...}`.
 */
export class EmbedBridge {
  /**
   * @param {string} hostOrigin  the ticket's origin; for an errors-only bridge, parentOrigin()
   * @param {BridgeCommands} commands
   * @param {boolean} [errorsOnly]  the host's origin is unknown: post only ERRORS_ONLY_TYPES, obey nothing
   */
  constructor(hostOrigin, commands, errorsOnly = false) {
    this.hostOrigin = hostOrigin;
    this.commands = commands;
    this.errorsOnly = errorsOnly;
    /** @type {number | null} */
    this.lastUnread = null;
    this.lastHeight = 0;
    this.callCount = 0;
    /** @type {ResizeObserver | null} */
    this.resizeObserver = null;
    /** @param {MessageEvent} e */
    this.onMessage = (e) => this.receive(e);
    if (errorsOnly) return; // no command listener; sizes are reported only once there is an error
    window.addEventListener('message', this.onMessage);
    this.observeSize();
  }

  /**
   * A full bridge when framed and the host origin is known; an errors-only one when framed by a host
   * whose origin is unknown; otherwise null.
   * @param {string | null} hostOrigin
   * @param {BridgeCommands} commands
   * @returns {EmbedBridge | null}
   */
  static create(hostOrigin, commands) {
    if (!isFramed()) return null;
    if (isOrigin(hostOrigin)) return new EmbedBridge(hostOrigin, commands);
    return new EmbedBridge(parentOrigin(), {}, true);
  }

  /** Report the preferred height whenever it may have changed. */
  observeSize() {
    if (this.resizeObserver) return;
    if ('ResizeObserver' in window) {
      // The frame, the list's box and what the list holds, and the parts around it that come and go.
      this.resizeObserver = new ResizeObserver(() => this.resize());
      this.resizeObserver.observe(document.documentElement);
      for (const id of ['messages', 'message-list', 'history-top', 'call', 'banner', 'composer', 'uploads', 'people-list']) {
        const node = document.getElementById(id);
        if (node) this.resizeObserver.observe(node);
      }
    }
  }

  /**
   * @param {string} type
   * @param {object} [data]
   */
  post(type, data = {}) {
    if (this.errorsOnly && !ERRORS_ONLY_TYPES.has(type)) return; // the one gate for an unknown host
    try {
      window.parent.postMessage({ ...data, source: 'chats3', type }, this.hostOrigin);
    } catch {
      /* parent gone */
    }
  }

  /** @param {MessageEvent} event  a message to this window: a command if it is the host's */
  receive(event) {
    if (this.errorsOnly) return; // parentOrigin() is what the browser says, not what the ticket named
    if (event.origin !== this.hostOrigin || event.source !== window.parent) return;
    const msg = event.data;
    // The original service's host command, still obeyed (same origin and window checks as the rest).
    if (msg && typeof msg === 'object' && msg.type === 'leave' && msg.command === undefined) {
      this.commands.leave?.();
      return;
    }
    if (!msg || typeof msg !== 'object' || msg.target !== 'chats3' || typeof msg.command !== 'string') return;
    switch (msg.command) {
      case 'setTheme':
        if (THEMES.has(msg.theme)) applyTheme(msg.theme);
        else this.error('bad-command', `Unknown theme ${String(msg.theme)}`);
        return;
      case 'focus':
        this.commands.focus?.();
        return;
      case 'leave':
        this.commands.leave?.();
        return;
      default:
        this.error('bad-command', `Unknown command ${msg.command}`);
    }
  }

  /** @param {{ conversationId: string, userId: string, displayName: string }} info */
  ready(info) {
    if (this.errorsOnly) return;
    this.post('ready', info);
    this.resize(true);
  }

  /** @param {number} count */
  unread(count) {
    if (count === this.lastUnread) return;
    this.lastUnread = count;
    this.post('unread', { count });
  }

  /**
   * Metadata only: the body never leaves the frame.
   * @param {Message | null | undefined} msg
   * @param {boolean} [mine]
   */
  message(msg, mine = false) {
    if (!msg || !msg.messageId) return;
    /** @type {Record<string, unknown>} */
    const out = {
      messageId: msg.messageId,
      kind: messageKind(msg),
      messageType: msg.type || 'text',
      senderUserId: msg.senderUserId || null,
      serverReceivedAt: msg.serverReceivedAt || null,
      mine,
    };
    if (msg.senderDisplayName) out.senderDisplayName = msg.senderDisplayName;
    this.post('message', out);
  }

  /**
   * `members`: the user ids in the call (including me when I am in it).
   * @param {Set<string>} members
   * @param {boolean} inCall
   */
  call(members, inCall) {
    const n = members.size;
    const before = this.callCount;
    this.callCount = n;
    let event = null;
    if (before === 0 && n > 0) event = 'started';
    else if (before > 0 && n === 0) event = 'ended';
    else if (before !== n) event = 'participants';
    if (event) this.post('call', { event, participants: n, joined: Boolean(inCall) });
  }

  /**
   * `height`: the room's preferred height (see preferredHeight), not the frame's.
   * @param {boolean} [force]  send it even when unchanged
   */
  resize(force = false) {
    const height = preferredHeight();
    if (!force && height === this.lastHeight) return;
    this.lastHeight = height;
    this.post('resize', { height });
  }

  /**
   * @param {string} code
   * @param {string} [message]
   */
  error(code, message) {
    this.post('error', { code, message: String(message || code) });
    // An auto-sized frame should show what went wrong (the full bridge observes from the start).
    if (this.errorsOnly) this.observeSize();
  }

  left() {
    this.post('left');
  }
}

/**
 * 'light' | 'dark' force a scheme; 'auto' follows the OS.
 * @param {string} theme
 */
export function applyTheme(theme) {
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
