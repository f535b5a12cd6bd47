// @ts-check
// devices.js — our camera and microphone in a call: getting them (falling back to one, or to
// none), muting each, the Mute and Camera buttons, and the devices panel that switches to another
// microphone or camera while the call goes on.
import { el, $ } from './dom.js';

/** @typedef {import('./types.js').LocalMediaState} LocalMediaState */

/**
 * What local media needs from the call.
 * @typedef {object} MediaHooks
 * @property {(kind: 'audio' | 'video', track: MediaStreamTrack | null) => Promise<unknown>} send  put a track on every connection
 * @property {() => void} changed  our media changed: repaint and tell the others
 * @property {(text: string, kind: string) => void} banner
 */

/**
 * @typedef {object} DeviceHooks
 * @property {() => boolean} sharing  the screen is being shared (it replaces the camera)
 * @property {(stream: MediaStream | null) => void} showCamera  our tile shows the camera (again)
 */

export class Devices {
  /** @param {MediaHooks & DeviceHooks} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    /** @type {MediaStream | null} */
    this.stream = null; // camera + mic, while in a call
    /** @type {LocalMediaState} */
    this.media = { audio: false, video: false, screen: false };
    $('mic-btn').addEventListener('click', () => this.setAudio(!this.media.audio));
    $('cam-btn').addEventListener('click', () => this.setVideo(!this.media.video));
    $('devices-btn').addEventListener('click', () => {
      const panel = $('devices');
      panel.hidden = !panel.hidden;
      $('devices-btn').setAttribute('aria-expanded', String(!panel.hidden));
      if (!panel.hidden) this.fill();
    });
    $('mic-select').addEventListener('change', (e) => this.switchTo('audio', /** @type {HTMLSelectElement} */ (e.target).value));
    $('cam-select').addEventListener('change', (e) => this.switchTo('video', /** @type {HTMLSelectElement} */ (e.target).value));
  }

  get hasAudio() {
    return Boolean(this.stream && this.stream.getAudioTracks().length);
  }

  get hasVideo() {
    return Boolean(this.stream && this.stream.getVideoTracks().length);
  }

  /**
   * Camera + mic; falls back to mic only, then to receive-only, and says so.
   * @returns {Promise<MediaStream>}
   */
  async open() {
    this.stream = await this.getMedia();
    return this.stream;
  }

  /** @returns {Promise<MediaStream>} */
  async getMedia() {
    const video = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
    const attempts = [{ audio: true, video }, { audio: true, video: false }, { audio: false, video }];
    /** @type {unknown} */
    let lastErr = null;
    for (const constraints of attempts) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        this.media.audio = stream.getAudioTracks().length > 0;
        this.media.video = stream.getVideoTracks().length > 0;
        if (!this.media.video || !this.media.audio) {
          this.hooks.banner(`${this.media.video ? 'Microphone' : 'Camera'} unavailable (${describe(lastErr)}). You joined without it.`, 'warn');
        }
        return stream;
      } catch (err) {
        lastErr = err;
      }
    }
    this.media.audio = false;
    this.media.video = false;
    this.hooks.banner(`Camera and microphone are unavailable (${describe(lastErr)}). You can still see and hear others. Allow access in the browser's site settings and rejoin the call.`, 'error');
    return new MediaStream();
  }

  /** Stops the camera and microphone (we left the call). */
  close() {
    for (const t of this.stream ? this.stream.getTracks() : []) t.stop();
    this.stream = null;
    this.media = { audio: false, video: false, screen: false };
  }

  /** @param {boolean} on */
  setAudio(on) {
    for (const t of this.stream ? this.stream.getAudioTracks() : []) t.enabled = on;
    this.media.audio = on && this.hasAudio;
    this.hooks.changed();
  }

  /** @param {boolean} on */
  setVideo(on) {
    for (const t of this.stream ? this.stream.getVideoTracks() : []) t.enabled = on;
    this.media.video = on && this.hasVideo;
    this.hooks.changed();
  }

  /** The Mute and Camera buttons. */
  paint() {
    const { hasAudio, hasVideo } = this;
    const mic = /** @type {HTMLButtonElement} */ ($('mic-btn'));
    mic.disabled = !hasAudio;
    mic.setAttribute('aria-pressed', String(hasAudio && !this.media.audio));
    mic.textContent = hasAudio && !this.media.audio ? 'Unmute' : 'Mute';
    const cam = /** @type {HTMLButtonElement} */ ($('cam-btn'));
    cam.disabled = !hasVideo;
    cam.setAttribute('aria-pressed', String(hasVideo && !this.media.video));
    cam.textContent = hasVideo && !this.media.video ? 'Camera on' : 'Camera off';
  }

  /** Lists the microphones and cameras in the devices panel, the ones in use selected. */
  async fill() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const current = {
      audio: this.stream?.getAudioTracks()[0]?.getSettings().deviceId,
      video: this.stream?.getVideoTracks()[0]?.getSettings().deviceId,
    };
    for (const [kind, id] of [['audioinput', 'mic-select'], ['videoinput', 'cam-select']]) {
      const select = /** @type {HTMLSelectElement} */ ($(id));
      select.replaceChildren();
      const list = devices.filter((d) => d.kind === kind);
      list.forEach((d, i) => {
        const opt = el('option', { value: d.deviceId, text: d.label || `${kind === 'audioinput' ? 'Microphone' : 'Camera'} ${i + 1}` });
        if (d.deviceId === current[kind === 'audioinput' ? 'audio' : 'video']) opt.selected = true;
        select.append(opt);
      });
      select.disabled = list.length === 0;
    }
  }

  /**
   * Switches to another microphone or camera; the new track keeps the old one's mute state.
   * @param {'audio' | 'video'} kind
   * @param {string} deviceId
   */
  async switchTo(kind, deviceId) {
    const local = this.stream;
    if (!local) return;
    /** @type {MediaStreamTrack} */
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
      track = stream.getTracks()[0];
    } catch (err) {
      this.hooks.banner(`Could not switch ${kind === 'audio' ? 'microphone' : 'camera'} (${describe(err)}).`, 'warn');
      return;
    }
    if (this.stream !== local) {
      track.stop(); // the call was left while the browser asked for the device
      return;
    }
    const old = kind === 'audio' ? local.getAudioTracks()[0] : local.getVideoTracks()[0];
    track.enabled = old ? old.enabled : true;
    if (old) {
      local.removeTrack(old);
      old.stop();
    }
    local.addTrack(track);
    if (!(kind === 'video' && this.hooks.sharing())) await this.hooks.send(kind, track);
    this.media[kind] = track.enabled;
    if (kind === 'video' && !this.hooks.sharing()) this.hooks.showCamera(local);
    this.hooks.changed();
  }
}

/**
 * A media error as a person would put it.
 * @param {unknown} err
 * @returns {string}
 */
export function describe(err) {
  if (!err) return 'unknown error';
  const e = /** @type {{ name?: string, message?: string }} */ (err);
  if (e.name === 'NotAllowedError') return 'permission denied';
  if (e.name === 'NotFoundError') return 'no device found';
  if (e.name === 'NotReadableError') return 'device is busy';
  return e.message || e.name || String(err);
}
