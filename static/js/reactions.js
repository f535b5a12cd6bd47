// reactions.js — emoji reactions on messages: chips with counts, a small picker, optimistic toggles.
import { api } from './api.js';
import { el, icon } from './dom.js';

const SMILEY = [['circle', { cx: '12', cy: '12', r: '9' }], ['path', { d: 'M8.5 14.5a4.5 4.5 0 007 0' }], ['path', { d: 'M9 9.5h.01M15 9.5h.01' }]];

export const EMOJIS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

export class Reactions {
  constructor(state, chat) {
    this.state = state;
    this.chat = chat;
    this.data = new Map(); // messageId -> Map(emoji -> Set(userId))
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.closePicker();
    });
    document.addEventListener('click', (e) => {
      if (this.openPicker && !this.openPicker.contains(e.target) && !e.target.closest('.react-btn')) this.closePicker();
    });
  }

  async load() {
    try {
      const { details } = await api('GET', '/api/v1/reactions');
      this.data.clear();
      for (const [messageId, byEmoji] of Object.entries(details || {})) {
        const m = new Map();
        for (const [emoji, users] of Object.entries(byEmoji || {})) if (users && users.length) m.set(emoji, new Set(users));
        this.data.set(messageId, m);
      }
      for (const messageId of this.data.keys()) this.paint(messageId);
    } catch {
      /* reactions are decoration; the chat works without them */
    }
  }

  /** Called for every rendered message node: adds the action row. */
  decorate(node, msg) {
    if (msg.type === 'system' || msg.senderUserId === 'system') return;
    const btn = el('button', {
      type: 'button', class: 'btn btn-ghost react-btn', 'aria-label': 'Add reaction', 'aria-haspopup': 'true', 'aria-expanded': 'false',
    });
    btn.append(icon(SMILEY));
    btn.addEventListener('click', () => this.togglePicker(node, btn));
    node.querySelector('.msg-line').append(btn);
    node.append(el('div', { class: 'msg-actions', hidden: true }));
    this.paint(msg.messageId);
  }

  togglePicker(node, btn) {
    const wasOpen = this.openPicker && this.openPicker.parentElement === node;
    this.closePicker();
    if (wasOpen) return;
    const picker = el('div', { class: 'picker', role: 'group', 'aria-label': 'Pick a reaction' });
    for (const emoji of EMOJIS) {
      const b = el('button', { type: 'button', class: 'btn', 'aria-label': `React with ${emoji}`, text: emoji });
      b.addEventListener('click', () => {
        this.closePicker();
        this.toggle(node.dataset.messageId, emoji);
        btn.focus();
      });
      picker.append(b);
    }
    btn.setAttribute('aria-expanded', 'true');
    node.querySelector('.msg-line').after(picker);
    this.openPicker = picker;
    this.openButton = btn;
    picker.querySelector('button').focus();
  }

  closePicker() {
    if (!this.openPicker) return;
    this.openPicker.remove();
    this.openButton?.setAttribute('aria-expanded', 'false');
    this.openPicker = null;
  }

  mine(messageId, emoji) {
    return Boolean(this.data.get(messageId)?.get(emoji)?.has(this.state.me.userId));
  }

  async toggle(messageId, emoji) {
    const added = !this.mine(messageId, emoji);
    this.apply(messageId, emoji, this.state.me.userId, added);
    try {
      await api('POST', '/api/v1/reactions', { messageId, emoji, added });
    } catch (err) {
      this.apply(messageId, emoji, this.state.me.userId, !added);
      if (err.isClosed) this.chat.hooks.onClosed?.();
    }
  }

  /** Applies a reaction change (ours or a `reaction` event from someone else). */
  apply(messageId, emoji, userId, added) {
    if (!messageId || !emoji || !userId) return;
    if (!this.data.has(messageId)) this.data.set(messageId, new Map());
    const byEmoji = this.data.get(messageId);
    if (!byEmoji.has(emoji)) byEmoji.set(emoji, new Set());
    if (added) byEmoji.get(emoji).add(userId);
    else byEmoji.get(emoji).delete(userId);
    if (!byEmoji.get(emoji).size) byEmoji.delete(emoji);
    this.paint(messageId);
  }

  paint(messageId) {
    const entry = this.chat.byId.get(messageId);
    const row = entry?.node.querySelector('.msg-actions');
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
