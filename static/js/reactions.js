// @ts-check
// reactions.js — emoji reactions on messages: chips with counts, a small picker, optimistic toggles.
import { api } from './api.js';
import { el, icon } from './dom.js';

/** @type {import('./dom.js').Shapes} */
const SMILEY = [['circle', { cx: '12', cy: '12', r: '9' }], ['path', { d: 'M8.5 14.5a4.5 4.5 0 007 0' }], ['path', { d: 'M9 9.5h.01M15 9.5h.01' }]];

export const EMOJIS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

export class Reactions {
  /**
   * @param {import('./types.js').RoomState} state
   * @param {import('./chat.js').Chat} chat
   */
  constructor(state, chat) {
    this.state = state;
    this.chat = chat;
    /** @type {Map<string, Map<string, Set<string>>>} */
    this.data = new Map(); // messageId -> Map(emoji -> Set(userId))
    /** @type {HTMLElement | null} */
    this.openPicker = null; // the picker shown, if any
    /** @type {HTMLButtonElement | null} */
    this.openButton = null; // the button that opened it
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.closePicker();
    });
    document.addEventListener('click', (e) => {
      const target = /** @type {Element} */ (e.target);
      if (this.openPicker && !this.openPicker.contains(target) && !target.closest('.react-btn')) this.closePicker();
    });
  }

  async load() {
    try {
      const { details } = await api('GET', '/api/v1/reactions');
      this.data.clear();
      for (const [messageId, byEmoji] of Object.entries(details || {})) {
        const m = new Map();
        for (const [emoji, users] of Object.entries(/** @type {Record<string, string[]>} */ (byEmoji || {}))) if (users && users.length) m.set(emoji, new Set(users));
        this.data.set(messageId, m);
      }
      for (const messageId of this.data.keys()) this.paint(messageId);
    } catch {
      /* reactions are decoration; the chat works without them */
    }
  }

  /**
   * Called for every rendered message node: adds the action row.
   * @param {HTMLLIElement} node
   * @param {import('./chat.js').Message} msg
   */
  decorate(node, msg) {
    if (msg.type === 'system' || msg.senderUserId === 'system') return;
    const btn = el('button', {
      type: 'button', class: 'btn btn-ghost react-btn', 'aria-label': 'Add reaction', 'aria-haspopup': 'true', 'aria-expanded': 'false',
    });
    btn.append(icon(SMILEY));
    btn.addEventListener('click', () => this.togglePicker(node, btn));
    node.querySelector('.msg-line')?.append(btn);
    node.append(el('div', { class: 'msg-actions', hidden: true }));
    this.paint(msg.messageId);
  }

  /**
   * @param {HTMLElement} node  the message
   * @param {HTMLButtonElement} btn  its reaction button
   */
  togglePicker(node, btn) {
    const wasOpen = this.openPicker && this.openPicker.parentElement === node;
    this.closePicker();
    if (wasOpen) return;
    const picker = el('div', { class: 'picker', role: 'group', 'aria-label': 'Pick a reaction' });
    for (const emoji of EMOJIS) {
      const b = el('button', { type: 'button', class: 'btn', 'aria-label': `React with ${emoji}`, text: emoji });
      b.addEventListener('click', () => {
        this.closePicker();
        this.toggle(/** @type {string} */ (node.dataset.messageId), emoji);
        btn.focus();
      });
      picker.append(b);
    }
    btn.setAttribute('aria-expanded', 'true');
    node.querySelector('.msg-line')?.after(picker);
    this.openPicker = picker;
    this.openButton = btn;
    picker.querySelector('button')?.focus();
  }

  closePicker() {
    if (!this.openPicker) return;
    this.openPicker.remove();
    this.openButton?.setAttribute('aria-expanded', 'false');
    this.openPicker = null;
  }

  /**
   * @param {string} messageId
   * @param {string} emoji
   */
  mine(messageId, emoji) {
    return Boolean(this.data.get(messageId)?.get(emoji)?.has(this.state.me.userId));
  }

  /**
   * Adds or removes our reaction, at once on screen and then on the server (undone if that fails).
   * @param {string} messageId
   * @param {string} emoji
   */
  async toggle(messageId, emoji) {
    const added = !this.mine(messageId, emoji);
    this.apply(messageId, emoji, this.state.me.userId, added);
    try {
      await api('POST', '/api/v1/reactions', { messageId, emoji, added });
    } catch (err) {
      this.apply(messageId, emoji, this.state.me.userId, !added);
      if (/** @type {import('./api.js').ApiError} */ (err).isClosed) this.chat.hooks.onClosed?.();
    }
  }

  /**
   * Applies a reaction change (ours or a `reaction` event from someone else).
   * @param {string | undefined} messageId
   * @param {string | undefined} emoji
   * @param {string | undefined} userId
   * @param {boolean} added
   */
  apply(messageId, emoji, userId, added) {
    if (!messageId || !emoji || !userId) return;
    const byEmoji = this.data.get(messageId) || new Map();
    this.data.set(messageId, byEmoji);
    const users = byEmoji.get(emoji) || new Set();
    byEmoji.set(emoji, users);
    if (added) users.add(userId);
    else users.delete(userId);
    if (!users.size) byEmoji.delete(emoji);
    this.paint(messageId);
  }

  /** @param {string} messageId */
  paint(messageId) {
    const entry = this.chat.byId.get(messageId);
    const row = /** @type {HTMLElement | null | undefined} */ (entry?.node.querySelector('.msg-actions'));
    if (!row) return;
    row.replaceChildren();
    for (const [emoji, users] of this.data.get(messageId) || []) {
      const names = [...users].map((u) => (u === this.state.me.userId ? 'you' : this.state.names.get(u) || 'someone'));
      const mine = users.has(this.state.me.userId);
      const chip = el('button', {
        type: 'button', class: 'btn reaction', 'aria-pressed': String(mine), dataset: { emoji },
        'aria-label': `${emoji} ${users.size}, from ${names.join(', ')}. ${mine ? 'Remove' : 'Add'} your reaction`,
        title: names.join(', '),
      }, `${emoji} ${users.size}`);
      chip.addEventListener('click', () => this.toggle(messageId, emoji));
      row.append(chip);
    }
    row.hidden = row.childElementCount === 0;
  }
}
