// @ts-check
// chat.js — the message list: history paging (infinite scroll upward), live messages,
// sending with retry, file messages and client-side search. No HTML from users: text nodes only.
import { api, uuid, ApiError } from './api.js';
import { el, $, avatar, formatTime, plainText } from './dom.js';

const GROUP_MS = 5 * 60 * 1000;
const PAGE = 50;

/**
 * A chat message as the API and the stream give it (kept with names and bodies unescaped).
 * @typedef {object} Message
 * @property {string} messageId
 * @property {number} [seq]  the server's order; absent while one of ours is pending
 * @property {string} [type]  text, file or system
 * @property {string} [systemKind]  a system line's kind: join, leave, integrator …
 * @property {string} [body]
 * @property {string} [senderUserId]
 * @property {string} [senderDisplayName]
 * @property {string} [senderAvatarUrl]
 * @property {string} [clientTimestamp]
 * @property {string} [serverReceivedAt]
 * @property {string} [attachmentId]
 * @property {string} [filename]
 * @property {string} [mimetype]
 */

/**
 * @typedef {object} ChatHooks
 * @property {(node: HTMLLIElement, msg: Message) => void} [onRendered]  every message node, once made
 * @property {(msg: Message) => void} [onIncoming]  a live message from someone else
 * @property {(msg: Message) => void} [onSent]  the server stored one of ours
 * @property {() => void} [onClosed]  the conversation turned out to be closed
 * @property {() => void} [onUnauthorized]
 * @property {(err: Error) => void} [onError]
 */

/** @typedef {{ msg: Message, node: HTMLLIElement }} Entry */

/** @param {Element} node */
const data = (node) => /** @type {HTMLElement} */ (node).dataset;

/**
 * When a message was sent (ms; NaN when it does not say).
 * @param {Message} m
 */
const sentAt = (m) => new Date(/** @type {string} */ (m.serverReceivedAt || m.clientTimestamp)).getTime();

export class Chat {
  /**
   * @param {import('./types.js').RoomState} state  shared room state
   * @param {ChatHooks} hooks
   */
  constructor(state, hooks) {
    this.state = state;
    this.hooks = hooks;
    /** @type {Map<string, Entry>} */
    this.byId = new Map(); // messageId -> {msg, node}
    this.list = $('message-list');
    this.scroller = $('messages');
    this.olderBtn = $('older-btn');
    this.hasMore = false;
    /** @type {string | number | null} */
    this.before = null;
    this.loadingOlder = false;
    this.query = '';
    /** @type {Map<string, Promise<string | null>>} */
    this.urlCache = new Map();
    this.olderBtn.addEventListener('click', () => this.loadOlder());
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadOlder();
      },
      { root: this.scroller, rootMargin: '200px 0px 0px 0px' },
    );
    this.observer.observe($('history-top'));
    $('search-input').addEventListener('input', (e) => this.search(/** @type {HTMLInputElement} */ (e.target).value));
  }

  /**
   * Loads the newest page; returns the highest seq seen (the stream cursor).
   * @returns {Promise<number | null>}
   */
  async loadInitial() {
    const { details, meta } = await api('GET', `/api/v1/messages?limit=${PAGE}`);
    this.setPage(meta);
    for (const msg of details || []) this.upsert(msg, { live: false });
    this.scrollToBottom();
    return this.maxSeq();
  }

  /** @param {{ page?: { hasMore?: boolean, before?: string | number | null } } | undefined} meta */
  setPage(meta) {
    const page = (meta && meta.page) || {};
    this.hasMore = Boolean(page.hasMore);
    this.before = page.before ?? null;
    this.olderBtn.hidden = !this.hasMore;
  }

  async loadOlder() {
    if (!this.hasMore || this.loadingOlder || this.before === null) return;
    this.loadingOlder = true;
    this.olderBtn.textContent = 'Loading…';
    const oldHeight = this.scroller.scrollHeight;
    const oldTop = this.scroller.scrollTop;
    try {
      const { details, meta } = await api('GET', `/api/v1/messages?limit=${PAGE}&before=${encodeURIComponent(this.before)}`);
      this.setPage(meta);
      for (const msg of details || []) this.upsert(msg, { live: false });
      this.scroller.scrollTop = oldTop + (this.scroller.scrollHeight - oldHeight);
    } catch (err) {
      this.hooks.onError?.(/** @type {Error} */ (err));
    } finally {
      this.loadingOlder = false;
      this.olderBtn.textContent = 'Load older messages';
    }
  }

  /** @returns {number | null} */
  maxSeq() {
    /** @type {number | null} */
    let max = null;
    for (const { msg } of this.byId.values()) if (typeof msg.seq === 'number' && (max === null || msg.seq > max)) max = msg.seq;
    return max;
  }

  /**
   * @param {string} messageId
   * @returns {number | null}
   */
  seqOf(messageId) {
    const entry = this.byId.get(messageId);
    return entry && typeof entry.msg.seq === 'number' ? entry.msg.seq : null;
  }

  /** @returns {Message[]} the messages in the order shown */
  messages() {
    return /** @type {Message[]} */ ([...this.list.children].map((n) => this.byId.get(/** @type {string} */ (data(n).messageId))?.msg).filter(Boolean));
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /**
   * Inserts or updates a message (dedup by messageId). Returns true if it was new.
   * @param {Message | null | undefined} msg
   * @param {{ live: boolean }} options  live: it just arrived (scroll, notify)
   * @returns {boolean}
   */
  upsert(msg, { live }) {
    if (!msg || !msg.messageId) return false;
    msg = { ...msg, body: plainText(msg.body), senderDisplayName: plainText(msg.senderDisplayName), filename: plainText(msg.filename) };
    const existing = this.byId.get(msg.messageId);
    if (msg.senderUserId && msg.senderDisplayName && msg.senderUserId !== 'system') this.state.names.set(msg.senderUserId, msg.senderDisplayName);
    if (msg.senderUserId && msg.senderAvatarUrl && msg.senderUserId !== 'system') this.state.avatars.set(msg.senderUserId, msg.senderAvatarUrl);
    if (existing) {
      const hadSeq = typeof existing.msg.seq === 'number';
      existing.msg = { ...existing.msg, ...msg };
      existing.node.classList.remove('pending', 'failed');
      existing.node.querySelector('.msg-status')?.remove();
      const bubble = existing.node.querySelector('.msg-bubble');
      if (existing.msg.type !== 'file' && bubble && typeof msg.body === 'string' && bubble.textContent !== msg.body) bubble.textContent = msg.body;
      if (!hadSeq && typeof msg.seq === 'number') {
        existing.node.dataset.seq = String(msg.seq);
        this.place(existing.node, msg.seq);
      }
      return false;
    }
    const stick = this.nearBottom();
    const node = this.render(msg);
    this.byId.set(msg.messageId, { msg, node });
    this.place(node, msg.seq);
    this.applySearch(node);
    this.hooks.onRendered?.(node, msg);
    if (live) {
      if (stick || msg.senderUserId === this.state.me.userId) this.scrollToBottom();
      if (msg.senderUserId !== this.state.me.userId) this.hooks.onIncoming?.(msg);
    }
    return true;
  }

  /**
   * Keeps the list ordered by seq; messages without a seq yet (pending) stay at the end.
   * @param {HTMLLIElement} node
   * @param {number | undefined} seq
   */
  place(node, seq) {
    if (typeof seq === 'number') {
      let after = null;
      for (let n = this.list.lastElementChild; n; n = n.previousElementSibling) {
        if (n === node) continue;
        const s = data(n).seq === undefined ? Infinity : Number(data(n).seq);
        if (s < seq) {
          after = n;
          break;
        }
      }
      if (after) after.after(node);
      else this.list.prepend(node);
    } else {
      this.list.append(node);
    }
    this.regroup(node);
    if (node.nextElementSibling) this.regroup(node.nextElementSibling);
  }

  /**
   * Marks a message that follows one from the same sender within GROUP_MS as a continuation.
   * @param {Element} node
   */
  regroup(node) {
    const prev = node.previousElementSibling;
    const a = prev && this.byId.get(/** @type {string} */ (data(prev).messageId))?.msg;
    const b = this.byId.get(/** @type {string} */ (data(node).messageId))?.msg;
    const same =
      a && b && a.type !== 'system' && b.type !== 'system' && a.senderUserId === b.senderUserId &&
      Math.abs(sentAt(b) - sentAt(a)) < GROUP_MS;
    node.classList.toggle('continued', Boolean(same));
  }

  /**
   * @param {Message} msg
   * @returns {HTMLLIElement}
   */
  render(msg) {
    const mine = msg.senderUserId === this.state.me.userId;
    const system = msg.type === 'system' || msg.senderUserId === 'system';
    const li = el('li', {
      class: `msg${mine ? ' mine' : ''}${system ? ' system' : ''}`,
      dataset: { messageId: msg.messageId, sender: msg.senderUserId || '', type: msg.type || 'text' },
    });
    if (typeof msg.seq === 'number') li.dataset.seq = String(msg.seq);
    const when = msg.serverReceivedAt || msg.clientTimestamp;
    if (!system) {
      li.append(
        el('div', { class: 'msg-meta' },
          avatar(msg.senderUserId || '', msg.senderDisplayName, msg.senderAvatarUrl || this.state.avatars.get(/** @type {string} */ (msg.senderUserId))),
          el('span', { class: 'msg-author', text: mine ? 'You' : msg.senderDisplayName || 'Unknown' }),
          el('time', { datetime: when, text: formatTime(when) })),
      );
    }
    const bubble = el('div', { class: 'msg-bubble' });
    if (msg.type === 'file') bubble.append(this.renderFile(msg));
    else bubble.textContent = msg.body ?? '';
    if (system) bubble.title = formatTime(when);
    li.append(el('div', { class: 'msg-line' }, bubble));
    return li;
  }

  /**
   * @param {Message} msg  a file message
   * @returns {HTMLDivElement}
   */
  renderFile(msg) {
    const name = msg.filename || msg.body || 'file';
    const isImage = /^image\//.test(msg.mimetype || '');
    const wrap = el('div', { class: 'file' });
    const link = el('a', { class: 'file-link', href: '#', download: name, rel: 'noopener' },
      el('span', { 'aria-hidden': 'true', text: isImage ? '🖼️' : '📄' }), el('span', { text: name }));
    link.addEventListener('click', async (e) => {
      if (link.dataset.ready === '1' && Date.now() - Number(link.dataset.at) < 10 * 60 * 1000) return;
      e.preventDefault();
      const url = await this.attachmentUrl(msg.attachmentId, true);
      if (url) {
        link.href = url;
        link.dataset.ready = '1';
        link.dataset.at = String(Date.now());
        link.click();
      }
    });
    wrap.append(link);
    if (isImage && msg.attachmentId) {
      const img = el('img', { class: 'preview', alt: name, loading: 'lazy', decoding: 'async' });
      img.addEventListener('load', () => {
        if (this.nearBottom()) this.scrollToBottom();
      });
      wrap.append(img);
      this.attachmentUrl(msg.attachmentId).then((url) => {
        if (url) {
          img.src = url;
          link.href = url;
          link.dataset.ready = '1';
          link.dataset.at = String(Date.now());
        }
      });
    }
    return wrap;
  }

  /**
   * A signed download URL for an attachment (cached unless `fresh`); null when it cannot be had.
   * @param {string | undefined} attachmentId
   * @param {boolean} [fresh]
   * @returns {Promise<string | null>}
   */
  async attachmentUrl(attachmentId, fresh = false) {
    if (!attachmentId) return null;
    const cached = this.urlCache.get(attachmentId);
    if (!fresh && cached) return cached;
    const p = api('GET', `/api/v1/attachments/${encodeURIComponent(attachmentId)}`)
      .then(({ details }) => details.signedUrl)
      .catch(() => null);
    this.urlCache.set(attachmentId, p);
    return p;
  }

  /**
   * Sends a message; the node shows pending/failed state and retries keep the same messageId.
   * @param {Partial<Message>} fields
   * @returns {Promise<Message>} as the server stored it
   */
  async send(fields) {
    /** @type {Message} */
    const msg = {
      messageId: uuid(),
      type: 'text',
      clientTimestamp: new Date().toISOString(),
      senderUserId: this.state.me.userId,
      senderDisplayName: this.state.me.displayName,
      ...fields,
    };
    this.upsert(msg, { live: true });
    /** @type {Entry} */ (this.byId.get(msg.messageId)).node.classList.add('pending');
    return this.post(msg);
  }

  /**
   * @param {Message} msg
   * @returns {Promise<Message>}
   */
  async post(msg) {
    const entry = /** @type {Entry} */ (this.byId.get(msg.messageId));
    /** @type {Record<string, unknown>} */
    const body = { messageId: msg.messageId, type: msg.type, body: msg.body, clientTimestamp: msg.clientTimestamp };
    for (const k of /** @type {const} */ (['attachmentId', 'filename', 'mimetype'])) if (msg[k]) body[k] = msg[k];
    try {
      const { details } = await api('POST', '/api/v1/messages', body);
      this.upsert(details, { live: true });
      this.hooks.onSent?.(details);
      return details;
    } catch (err) {
      if (err instanceof ApiError && err.isClosed) this.hooks.onClosed?.();
      if (err instanceof ApiError && err.status === 401) this.hooks.onUnauthorized?.();
      entry.node.classList.remove('pending');
      entry.node.classList.add('failed');
      entry.node.querySelector('.msg-status')?.remove();
      const retry = el('button', { type: 'button', class: 'btn btn-ghost btn-small', text: 'Retry' });
      retry.addEventListener('click', () => {
        entry.node.classList.remove('failed');
        entry.node.classList.add('pending');
        status.remove();
        this.post(msg);
      });
      const status = el('div', { class: 'msg-status', role: 'status' }, `Not sent: ${/** @type {Error} */ (err).message} `, retry);
      entry.node.append(status);
      throw err;
    }
  }

  /** Re-sends every failed message (same messageId, so the server stores each only once). */
  retryFailed() {
    for (const { msg, node } of this.byId.values()) {
      if (!node.classList.contains('failed')) continue;
      node.classList.remove('failed');
      node.classList.add('pending');
      node.querySelector('.msg-status')?.remove();
      this.post(msg).catch(() => {});
    }
  }

  /** @param {string} query */
  search(query) {
    this.query = query.trim().toLowerCase();
    let hits = 0;
    for (const node of this.list.children) if (this.applySearch(node)) hits += 1;
    $('search-count').textContent = this.query ? `${hits} match${hits === 1 ? '' : 'es'}` : '';
    if (this.query) this.list.querySelector('.search-hit')?.scrollIntoView({ block: 'nearest' });
    else this.scrollToBottom();
  }

  /**
   * Shows whether one message matches the search; true for a match.
   * @param {Element} node
   * @returns {boolean}
   */
  applySearch(node) {
    if (!this.query) {
      node.classList.remove('search-hit', 'search-miss');
      return false;
    }
    const msg = this.byId.get(/** @type {string} */ (data(node).messageId))?.msg;
    const hay = `${msg?.body || ''} ${msg?.filename || ''} ${msg?.senderDisplayName || ''}`.toLowerCase();
    const hit = hay.includes(this.query);
    node.classList.toggle('search-hit', hit);
    node.classList.toggle('search-miss', !hit);
    return hit;
  }

  disable() {
    /** @type {HTMLTextAreaElement} */ ($('composer-input')).disabled = true;
    /** @type {HTMLButtonElement} */ ($('send-btn')).disabled = true;
    /** @type {HTMLButtonElement} */ ($('attach-btn')).disabled = true;
    /** @type {HTMLElement} */ (document.querySelector('.chat')).classList.add('closed');
  }
}

