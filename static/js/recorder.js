// @ts-check
// recorder.js — client-side recording of the call: draws the video grid onto a canvas, mixes
// every audio track with WebAudio, records both with MediaRecorder and downloads a .webm.
export class Recorder {
  /**
   * @param {HTMLElement} grid  the video grid: its `.tile`s are drawn
   * @param {() => MediaStream[]} audioStreams  every stream whose audio goes into the recording
   * @param {import('./types.js').RoomState} state
   */
  constructor(grid, audioStreams, state) {
    this.grid = grid;
    this.audioStreams = audioStreams;
    this.state = state;
    this.active = false;
    this.lastSize = 0;
    /** @type {string | null} */
    this.lastName = null;
    // Set by start(), for the recording under way (and, for `audio`, until it is saved).
    /** @type {AudioContext | undefined} */
    this.audio = undefined;
    /** @type {MediaStreamAudioDestinationNode | undefined} */
    this.dest = undefined;
    /** @type {Set<string>} */
    this.mixed = new Set(); // ids of the audio tracks mixed in
    /** @type {Blob[]} */
    this.chunks = [];
    /** @type {MediaRecorder | undefined} */
    this.rec = undefined;
    /** @type {(() => void) | undefined} */
    this.draw = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.interval = undefined;
  }

  start() {
    if (typeof MediaRecorder === 'undefined') throw new Error('MediaRecorder is not supported');
    const canvas = document.createElement('canvas');
    canvas.width = 1280;
    canvas.height = 720;
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    this.audio = new AudioContext();
    const dest = this.audio.createMediaStreamDestination();
    this.dest = dest;
    this.mixed = new Set();
    this.mixAudio();
    const stream = new MediaStream([...canvas.captureStream(15).getVideoTracks(), ...dest.stream.getAudioTracks()]);
    const type = ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
    this.chunks = [];
    const rec = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    this.rec = rec;
    rec.ondataavailable = (e) => {
      if (e.data && e.data.size) this.chunks.push(e.data);
    };
    rec.onstop = () => this.save();
    this.draw = () => {
      this.paint(ctx, canvas);
      this.mixAudio();
    };
    this.interval = setInterval(this.draw, 1000 / 15);
    rec.start(1000);
    this.active = true;
  }

  /** Adds the audio tracks not mixed in yet (people who joined since). */
  mixAudio() {
    const { audio, dest } = this;
    if (!audio || !dest) return;
    for (const stream of this.audioStreams()) {
      for (const track of stream.getAudioTracks()) {
        if (this.mixed.has(track.id)) continue;
        this.mixed.add(track.id);
        audio.createMediaStreamSource(new MediaStream([track])).connect(dest);
      }
    }
  }

  /**
   * Draws the grid's tiles side by side, each with its name.
   * @param {CanvasRenderingContext2D} ctx
   * @param {HTMLCanvasElement} canvas
   */
  paint(ctx, canvas) {
    const videos = /** @type {HTMLElement[]} */ ([...this.grid.querySelectorAll('.tile')]);
    ctx.fillStyle = '#0d0f16';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!videos.length) return;
    const cols = Math.ceil(Math.sqrt(videos.length));
    const rows = Math.ceil(videos.length / cols);
    const w = canvas.width / cols;
    const h = canvas.height / rows;
    videos.forEach((tile, i) => {
      const x = (i % cols) * w;
      const y = Math.floor(i / cols) * h;
      const video = /** @type {HTMLVideoElement} */ (tile.querySelector('video'));
      if (tile.dataset.video !== 'off' && video.videoWidth) {
        const scale = Math.min(w / video.videoWidth, h / video.videoHeight);
        const vw = video.videoWidth * scale;
        const vh = video.videoHeight * scale;
        ctx.drawImage(video, x + (w - vw) / 2, y + (h - vh) / 2, vw, vh);
      }
      const name = tile.querySelector('.name')?.textContent || '';
      ctx.font = '20px system-ui, sans-serif';
      ctx.fillStyle = 'rgba(0,0,0,.6)';
      ctx.fillRect(x + 8, y + h - 36, ctx.measureText(name).width + 16, 28);
      ctx.fillStyle = '#fff';
      ctx.fillText(name, x + 16, y + h - 15);
    });
  }

  stop() {
    if (!this.active) return;
    this.active = false;
    clearInterval(this.interval);
    if (this.rec && this.rec.state !== 'inactive') this.rec.stop();
  }

  save() {
    const blob = new Blob(this.chunks, { type: 'video/webm' });
    this.chunks = [];
    this.audio?.close().catch(() => {});
    this.lastSize = blob.size;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
    this.lastName = `chats3-${this.state.conversationId}-${stamp}.webm`;
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = this.lastName;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }
}
