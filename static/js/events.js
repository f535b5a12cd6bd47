// @ts-check
// events.js — the live event stream. Opens EventSource with a single-use token, resumes
// with `cursor` = last persisted event id, and reconnects itself with backoff + jitter
// (tokens are single-use, so EventSource's own retry cannot be used).
import { api } from './api.js';

/** @typedef {import('./types.js').ServerEvent} ServerEvent */
/** @typedef {'connecting'|'open'|'reconnecting'|'closed'} StreamState */

export class EventStream {
  /**
   * @param {object} opts
   * @param {(event: ServerEvent, id: string) => void} opts.onEvent
   * @param {(state: StreamState, info?: { attempt: number, delay?: number }) => void} opts.onState
   * @param {(err: import('./api.js').ApiError) => void} opts.onFatal  401/403 while getting a token
   */
  constructor({ onEvent, onState, onFatal }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onFatal = onFatal;
    /** @type {string | null} */
    this.cursor = null;
    /** @type {EventSource | null} */
    this.source = null;
    this.attempt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.stopped = false;
    this.openedOnce = false;
  }

  /**
   * Start streaming; events with an id greater than `cursor` are replayed by the server.
   * @param {string | number | null} [cursor]
   */
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

  /**
   * Remember a persisted event id seen outside the stream (never moves backwards).
   * @param {string | number | null | undefined} id
   */
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
      const e = /** @type {import('./api.js').ApiError} */ (err);
      if (e.status === 401 || e.status === 403) {
        this.stopped = true;
        this.onFatal(e);
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
      /** @type {ServerEvent} */
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
/** @type {Promise<unknown>} */
let chain = Promise.resolve();
/**
 * Sends a client event to everyone in the conversation, or to one user.
 * @param {string} type
 * @param {object} [data]
 * @param {string} [toUserId]
 * @returns {Promise<import('./api.js').ApiResult>}
 */
export function signal(type, data = {}, toUserId) {
  /** @type {{ type: string, data: object, toUserId?: string }} */
  const body = { type, data };
  if (toUserId) body.toUserId = toUserId;
  const p = chain.then(() => api('POST', '/api/v1/signaling', body));
  chain = p.catch(() => {});
  return p;
}
