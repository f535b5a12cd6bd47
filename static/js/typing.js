// @ts-check
// typing.js — "X is typing…": sends throttled typing events and shows other people's.
import { signal } from './events.js';
import { $ } from './dom.js';

const SEND_EVERY_MS = 2500;
const IDLE_MS = 4000;
const SHOW_MS = 6000;

export class Typing {
  /** @param {import('./types.js').RoomState} state */
  constructor(state) {
    this.state = state;
    /** @type {Map<string, ReturnType<typeof setTimeout>>} */
    this.others = new Map(); // userId -> timeout
    this.lastSent = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.idle = undefined;
    this.node = $('typing');
  }

  /**
   * Call on every keystroke in the composer.
   * @param {boolean} hasText
   */
  input(hasText) {
    clearTimeout(this.idle);
    if (!hasText) return this.stop();
    const now = Date.now();
    if (now - this.lastSent > SEND_EVERY_MS) {
      this.lastSent = now;
      signal('typing', { isTyping: true }).catch(() => {});
    }
    this.idle = setTimeout(() => this.stop(), IDLE_MS);
  }

  stop() {
    clearTimeout(this.idle);
    if (!this.lastSent) return;
    this.lastSent = 0;
    signal('typing', { isTyping: false }).catch(() => {});
  }

  /**
   * A `typing` event from someone else.
   * @param {string | undefined} userId
   * @param {boolean} isTyping
   */
  receive(userId, isTyping) {
    if (!userId || userId === this.state.me.userId) return;
    clearTimeout(this.others.get(userId));
    if (isTyping) this.others.set(userId, setTimeout(() => this.receive(userId, false), SHOW_MS));
    else this.others.delete(userId);
    this.paint();
  }

  paint() {
    const names = [...this.others.keys()].map((u) => this.state.names.get(u) || 'Someone');
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    this.node.textContent = text;
  }
}
