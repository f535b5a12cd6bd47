// @ts-check
// api.js — the only module that talks HTTP to /api/v1. Unwraps the JSON envelope,
// carries the per-tab session id (x-session-id) and turns failures into ApiError.

const SESSION_PREFIX = 'chats3.session.';

/**
 * What `api()` resolves to: the envelope's parts. `details` is whatever the endpoint returns
 * (callers that rely on its shape annotate it).
 * @typedef {object} ApiResult
 * @property {any} details
 * @property {Record<string, any>} meta
 * @property {string} [message]
 */

export class ApiError extends Error {
  /**
   * @param {number} status  HTTP status, 0 when the server could not be reached
   * @param {string | null | undefined} [message]
   * @param {any} [details]
   */
  constructor(status, message, details) {
    super(message || `Request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.details = details;
  }
  get isClosed() {
    return this.status === 403 && /closed/i.test(this.message);
  }
}

/** @type {string | null} */
let sessionId = null;
/** @type {string | null} */
let sessionConversation = null; // the conversation `sessionId` belongs to
/** @type {(() => void) | null} */
let unauthorized = null;

/**
 * Called when any request answers 401 (the session expired or was removed).
 * @param {() => void} handler
 */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/**
 * The session of this tab for that conversation (from sessionStorage, or kept in memory).
 * @param {string} conversationId
 * @returns {string | null}
 */
export function useSession(conversationId) {
  let stored = null;
  try {
    stored = sessionStorage.getItem(SESSION_PREFIX + conversationId);
  } catch {
    /* third-party storage blocked (embedded, strict browsers): keep what saveSession put in memory */
  }
  if (stored) sessionId = stored;
  else if (sessionConversation !== conversationId) sessionId = null;
  sessionConversation = conversationId;
  return sessionId;
}

/**
 * @param {string} conversationId
 * @param {string} id  the session id
 */
export function saveSession(conversationId, id) {
  sessionId = id;
  sessionConversation = conversationId;
  try {
    sessionStorage.setItem(SESSION_PREFIX + conversationId, id);
  } catch {
    /* storage disabled: the cookie still carries the session */
  }
}

/** @param {string} conversationId */
export function forgetSession(conversationId) {
  sessionId = null;
  try {
    sessionStorage.removeItem(SESSION_PREFIX + conversationId);
  } catch {
    /* ignore */
  }
}

/** @returns {Record<string, string>} */
export function authHeaders() {
  return sessionId ? { 'x-session-id': sessionId } : {};
}

/**
 * Calls the API; resolves to `{details, meta, message}` or throws ApiError.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]  sent as JSON
 * @param {{ keepalive?: boolean, signal?: AbortSignal }} [options]
 * @returns {Promise<ApiResult>}
 */
export async function api(method, path, body, { keepalive = false, signal } = {}) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json', ...authHeaders() };
  /** @type {RequestInit} */
  const init = { method, headers, credentials: 'same-origin', keepalive, signal };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (/** @type {Error | null | undefined} */ (err)?.name === 'AbortError') throw err;
    throw new ApiError(0, 'Network error: the server cannot be reached');
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    /* non-JSON answer */
  }
  if (!res.ok || !json || json.success === false) {
    if (res.status === 401 && unauthorized) unauthorized();
    throw new ApiError(res.status, json && json.message, json && json.details);
  }
  return { details: json.details, meta: json.meta || {}, message: json.message };
}

/**
 * Multipart upload with progress (fetch has no upload progress).
 * @param {string} path
 * @param {File} file
 * @param {(fraction: number) => void} [onProgress]
 * @returns {Promise<any>} the envelope's `details`
 */
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.withCredentials = true;
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError(0, 'Network error during upload'));
    xhr.onload = () => {
      let json = null;
      try {
        json = JSON.parse(xhr.responseText);
      } catch {
        /* non-JSON */
      }
      if (xhr.status >= 200 && xhr.status < 300 && json && json.success !== false) {
        resolve(json.details);
      } else {
        reject(new ApiError(xhr.status, json && json.message, json && json.details));
      }
    };
    const form = new FormData();
    form.append('file', file, file.name || 'pasted-image.png');
    xhr.send(form);
  });
}

/** @returns {string} a random (v4) UUID */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
