// events.js — the live event stream. Opens EventSource with a single-use token, resumes
// with `cursor` = last persisted event id, and reconnects itself with backoff + jitter
// (tokens are single-use, so EventSource's own retry cannot be used).
import { api } from './api.js';

export class EventStream {
  /**
   * @param {object} opts
   * @param {(event: object, id: string) => void} opts.onEvent
   * @param {(state: 'connecting'|'open'|'reconnecting'|'closed', info?: object) => void} opts.onState
   * @param {(err: Error) => void} opts.onFatal  401/403 while getting a token
   */
  constructor({ onEvent, onState, onFatal }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onFatal = onFatal;
    this.cursor = null;
    this.source = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.openedOnce = false;
  }

  /** Start streaming; events with an id greater than `cursor` are replayed by the server. */
  start(cursor) {
    if (cursor !== null && cursor !== undefined) this.cursor = String(cursor);
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
    this.onState('closed');
  }

  /** Remember a persisted event id seen outside the stream (never moves backwards). */
  advance(id) {
    if (id === null || id === undefined) return;
    if (this.cursor === null || Number(id) > Number(this.cursor)) this.cursor = String(id);
  }

  async connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.onState(this.openedOnce ? 'reconnecting' : 'connecting', { attempt: this.attempt });
    let token;
    try {
      token = (await api('POST', '/api/v1/signaling/token')).details.token;
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        this.stopped = true;
        this.onFatal(err);
        return;
      }
      this.schedule();
      return;
    }
    if (this.stopped) return;
    const params = new URLSearchParams({ token });
    if (this.cursor !== null) params.set('cursor', this.cursor);
    const source = new EventSource(`/api/v1/signaling?${params}`);
    this.source = source;
    source.onopen = () => {
      this.attempt = 0;
      this.openedOnce = true;
      this.onState('open');
    };
    source.onmessage = (msg) => {
      if (msg.lastEventId && /^\d+$/.test(msg.lastEventId)) this.advance(msg.lastEventId);
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      try {
        this.onEvent(event, msg.lastEventId);
      } catch (err) {
        console.error('event handler failed', event.type, err);
      }
    };
    source.onerror = () => {
      if (this.source !== source) return;
      source.close();
      this.source = null;
      this.schedule();
    };
  }

  schedule() {
    if (this.stopped) return;
    this.attempt += 1;
    const base = Math.min(10000, 1000 * 2 ** Math.min(this.attempt - 1, 4));
    const delay = base / 2 + Math.random() * (base / 2);
    this.onState(this.openedOnce ? 'reconnecting' : 'connecting', { attempt: this.attempt, delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect now (e.g. the browser came back online). */
  kick() {
    if (this.stopped || this.source) return;
    this.attempt = 0;
    this.connect();
  }
}

// Ordered relay of client events: one POST at a time so offer/answer/ICE keep their order.
let chain = Promise.resolve();
export function signal(type, data = {}, toUserId) {
  const body = { type, data };
  if (toUserId) body.toUserId = toUserId;
  const p = chain.then(() => api('POST', '/api/v1/signaling', body));
  chain = p.catch(() => {});
  return p;
}
