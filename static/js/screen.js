// @ts-check
// screen.js — screen sharing in a call: the shared screen replaces the camera on every connection
// and in our own tile until we stop (or the browser's own "Stop sharing" ends the track), then the
// camera comes back.
import { $ } from './dom.js';
import { describe } from './devices.js';

export class ScreenShare {
  /**
   * @param {import('./devices.js').Devices} devices  our camera and microphone
   * @param {import('./tiles.js').Tiles} tiles
   * @param {import('./devices.js').MediaHooks} hooks
   */
  constructor(devices, tiles, hooks) {
    this.devices = devices;
    this.tiles = tiles;
    this.hooks = hooks;
    /** @type {MediaStreamTrack | null} */
    this.track = null; // the screen, while sharing
    $('screen-btn').addEventListener('click', () => (this.track ? this.stop() : this.start()));
  }

  async start() {
    const local = this.devices.stream;
    /** @type {MediaStreamTrack | undefined} */
    let track;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      track = stream.getVideoTracks()[0];
    } catch (err) {
      if (err && /** @type {Error} */ (err).name !== 'NotAllowedError') this.hooks.banner(`Screen sharing failed (${describe(err)}).`, 'warn');
      return;
    }
    if (!track) return;
    if (!local || this.devices.stream !== local) {
      track.stop(); // the call was left while the browser asked what to share
      return;
    }
    track.contentHint = 'detail';
    this.track = track;
    track.addEventListener('ended', () => this.stop());
    await this.hooks.send('video', track);
    this.devices.media.screen = true;
    this.tiles.showScreen(track);
    this.hooks.changed();
  }

  async stop() {
    if (!this.track) return;
    const track = this.track;
    this.track = null;
    track.stop();
    const local = this.devices.stream;
    const cam = local ? local.getVideoTracks()[0] || null : null;
    await this.hooks.send('video', cam);
    this.devices.media.screen = false;
    this.tiles.showCamera(this.devices.stream);
    this.hooks.changed();
  }

  /** Stops sharing without a word to anyone (we are leaving the call). */
  release() {
    if (this.track) this.track.stop();
    this.track = null;
  }

  /** The Share screen button. */
  paint() {
    const scr = /** @type {HTMLButtonElement} */ ($('screen-btn'));
    scr.disabled = !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia;
    scr.setAttribute('aria-pressed', String(Boolean(this.track)));
    scr.textContent = this.track ? 'Stop sharing' : 'Share screen';
  }
}
