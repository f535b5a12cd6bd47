// @ts-check
// files.js — file messages: upload button, drag-and-drop and pasted images, with progress.
import { upload } from './api.js';
import { el, $, formatBytes } from './dom.js';

/** Uploads one page runs at once: the server takes two per session (429 beyond). */
const UPLOADS_AT_ONCE = 2;

export class Files {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {{ maxBytes?: number }} [options]
   */
  constructor(chat, { maxBytes = 10 * 1024 * 1024 } = {}) {
    this.chat = chat;
    this.maxBytes = maxBytes;
    this.uploads = $('uploads');
    /** Uploads under way, and those waiting for one to end (the server takes two per session). */
    this.active = 0;
    /** @type {Array<() => void>} */
    this.waiting = [];
    const input = /** @type {HTMLInputElement} */ ($('file-input'));
    $('attach-btn').addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      for (const f of input.files || []) this.send(f);
      input.value = '';
    });
    const area = /** @type {HTMLElement} */ (document.querySelector('.chat'));
    const hint = $('drop-hint');
    let depth = 0;
    /** @param {DragEvent} e */
    const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
    area.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      depth += 1;
      hint.hidden = false;
    });
    area.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) hint.hidden = true;
    });
    area.addEventListener('dragover', (e) => {
      if (hasFiles(e)) e.preventDefault();
    });
    area.addEventListener('drop', (e) => {
      depth = 0;
      hint.hidden = true;
      if (!hasFiles(e)) return;
      e.preventDefault();
      for (const f of /** @type {DataTransfer} */ (e.dataTransfer).files) this.send(f);
    });
    $('composer-input').addEventListener('paste', (e) => {
      const files = /** @type {File[]} */ ([...(e.clipboardData?.items || [])].filter((i) => i.kind === 'file').map((i) => i.getAsFile()).filter(Boolean));
      if (!files.length) return;
      e.preventDefault();
      for (const f of files) this.send(f);
    });
  }

  /** @param {number | undefined} n  the server's limit (client-config maxUploadBytes) */
  setMaxBytes(n) {
    if (typeof n === 'number' && Number.isFinite(n) && n > 0) this.maxBytes = n;
  }

  /** Waits for an upload slot: at most UPLOADS_AT_ONCE under way, the rest in order. */
  acquire() {
    if (this.active < UPLOADS_AT_ONCE) {
      this.active += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(() => resolve(undefined)));
  }

  /** Hands the slot to the next upload waiting, or gives it back. */
  release() {
    const next = this.waiting.shift();
    if (next) next();
    else this.active -= 1;
  }

  /** Uploads one file, then posts a `file` message pointing at it.
   * @param {File} file
   */
  async send(file) {
    if (!file.name || file.name === 'image.png') {
      const ext = (file.type.split('/')[1] || 'bin').replace('jpeg', 'jpg');
      file = new File([file], `pasted-${new Date().toISOString().replace(/[:.]/g, '-')}.${ext}`, { type: file.type });
    }
    const bar = el('progress', { max: '100', value: '0', 'aria-label': `Uploading ${file.name}` });
    const label = el('span', { text: `${file.name} (${formatBytes(file.size)})` });
    const row = el('div', { class: 'upload', role: 'status', dataset: { state: 'uploading' } }, label, bar);
    this.uploads.append(row);
    /** @param {string} message */
    const fail = (message) => {
      row.dataset.state = 'error';
      bar.remove();
      label.textContent = `${file.name}: ${message}`;
      const dismiss = el('button', { type: 'button', class: 'btn btn-ghost btn-small', text: 'Dismiss' });
      dismiss.addEventListener('click', () => row.remove());
      row.append(dismiss);
    };
    if (file.size > this.maxBytes) return fail(`too large (max ${formatBytes(this.maxBytes)})`);
    try {
      await this.acquire();
      let meta;
      try {
        meta = await upload('/api/v1/attachments', file, (p) => {
          bar.value = Math.round(p * 100);
        });
      } finally {
        this.release();
      }
      bar.value = 100;
      row.remove();
      await this.chat.send({
        type: 'file',
        body: meta.originalFilename || file.name,
        attachmentId: meta.attachmentId,
        filename: meta.originalFilename || file.name,
        mimetype: meta.mimeType || file.type,
      });
    } catch (e) {
      const err = /** @type {import('./api.js').ApiError} */ (e);
      if (err.status === 404) fail('file sharing is not available on this server');
      else if (err.status === 413 && err.details?.reason === 'conversation_quota') {
        fail('this conversation has no room for more files');
      } else if (err.status === 413) fail('too large');
      else fail(err.message || 'upload failed');
    }
  }
}
