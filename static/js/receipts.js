// @ts-check
// receipts.js — read receipts: tell others what we have read, show "Seen by …" under our messages.
import { signal } from './events.js';
import { el } from './dom.js';

export class Receipts {
  /**
   * @param {import('./types.js').RoomState} state
   * @param {import('./chat.js').Chat} chat
   */
  constructor(state, chat) {
    this.state = state;
    this.chat = chat;
    /** @type {Map<string, string>} */
    this.readBy = new Map(); // userId -> messageId they last read
    /** @type {string | null} */
    this.lastSentId = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /** Something new may be visible: report the newest message from others once we can see it. */
  maybeSend() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (document.visibilityState !== 'visible' || !this.chat.nearBottom()) return;
      const msgs = this.chat.messages();
      for (let i = msgs.length - 1; i >= 0; i -= 1) {
        const m = msgs[i];
        if (m.type === 'system' || m.senderUserId === this.state.me.userId || typeof m.seq !== 'number') continue;
        if (m.messageId !== this.lastSentId) {
          this.lastSentId = m.messageId;
          signal('read-receipt', { messageId: m.messageId }).catch(() => {});
        }
        return;
      }
    }, 400);
  }

  /**
   * A `read-receipt` event: `userId` has read up to `messageId`.
   * @param {string | undefined} userId
   * @param {string | undefined} messageId
   */
  receive(userId, messageId) {
    if (!userId || userId === this.state.me.userId || !messageId) return;
    this.readBy.set(userId, messageId);
    this.paint();
  }

  /** @param {string} userId */
  forget(userId) {
    if (this.readBy.delete(userId)) this.paint();
  }

  paint() {
    this.chat.list.querySelectorAll('.receipt').forEach((n) => n.remove());
    const mine = this.chat.messages().filter((m) => m.senderUserId === this.state.me.userId && typeof m.seq === 'number');
    /** @type {Map<string, string[]>} */
    const readers = new Map(); // messageId -> [names]
    for (const [userId, messageId] of this.readBy) {
      const seq = this.chat.seqOf(messageId);
      if (seq === null) continue;
      let target = null;
      for (const m of mine) if (/** @type {number} */ (m.seq) <= seq) target = m;
      if (!target) continue;
      const names = readers.get(target.messageId) || [];
      readers.set(target.messageId, names);
      names.push(this.state.names.get(userId) || 'someone');
    }
    for (const [messageId, names] of readers) {
      const node = this.chat.byId.get(messageId)?.node;
      node?.append(el('div', { class: 'receipt', text: `Seen by ${names.join(', ')}` }));
    }
  }
}
