// Shared helpers for the e2e suite: start/stop/restart the real chats3 binary, launch Chromium
// with fake media devices, create conversations, join through the UI, save screenshots.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '../..');
export const ARTIFACTS = join(here, 'artifacts');
export const ADMIN_PASSWORD = 'e2e-admin-pw';
/** The servers' log filter unless RUST_LOG is set: the binary's own default (webrtc-rs at warn). */
export const DEFAULT_RUST_LOG = 'info,tower_http=warn,webrtc=warn,webrtc_ice=error,webrtc_mdns=warn,webrtc_dtls=warn,webrtc_srtp=warn,webrtc_sctp=warn';
mkdirSync(ARTIFACTS, { recursive: true });

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** A chats3 server owned by the test: same port and data dir across restarts. */
export class Server {
  constructor({ port, dataDir, name }) {
    this.port = port;
    this.dataDir = dataDir;
    this.name = name;
    this.url = `http://127.0.0.1:${port}`;
    this.proc = null;
    this.starts = 0;
  }

  /** `env`: extra environment for the binary (e.g. INTEGRATORS for the embed tests). */
  static async start(name = 'server', { env = {} } = {}) {
    const s = new Server({ port: await freePort(), dataDir: mkdtempSync(join(tmpdir(), 'chats3-e2e-')), name });
    s.env = env;
    await s.start();
    return s;
  }

  async start() {
    const bin = process.env.CHATS3_BIN || join(ROOT, 'target/release/chats3');
    this.starts += 1;
    const log = createWriteStream(join(ARTIFACTS, `${this.name}-server-${this.starts}.log`));
    this.proc = spawn(bin, [], {
      cwd: ROOT,
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(this.port),
        CHATS3_DATA_DIR: this.dataDir,
        ADMIN_PASSWORD,
        RATE_LIMIT_PER_MIN: '0',
        ADMIN_RATE_LIMIT_PER_MIN: '0',
        RUST_LOG: process.env.RUST_LOG || DEFAULT_RUST_LOG,
        ...(this.env || {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout.pipe(log);
    this.proc.stderr.pipe(log);
    const exited = new Promise((res) => this.proc.once('exit', (code) => res(code)));
    this.exited = exited;
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      const early = await Promise.race([exited, sleep(100).then(() => 'running')]);
      if (early !== 'running') throw new Error(`chats3 exited with ${early} before /health answered; see artifacts/${this.name}-server-${this.starts}.log`);
      try {
        const res = await fetch(`${this.url}/health`);
        if (res.ok) return;
      } catch {
        /* not listening yet */
      }
    }
    throw new Error('chats3 did not answer /health within 30 s');
  }

  /** Kills the process by PID and waits for it to exit. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
    this.proc = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async dispose() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async api(method, path, body, sessionId) {
    const headers = { 'content-type': 'application/json' };
    if (sessionId) headers['x-session-id'] = sessionId;
    const res = await fetch(this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await res.json().catch(() => null);
    if (!res.ok || !json || json.success === false) {
      const err = new Error(`${method} ${path} -> ${res.status} ${json && json.message}`);
      err.status = res.status;
      throw err;
    }
    return json.details;
  }

  createConversation() {
    return this.api('POST', '/api/v1/admin/conversations', { adminPassword: ADMIN_PASSWORD });
  }
}

export const CHROMIUM_ARGS = [
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--auto-select-desktop-capture-source=Entire screen',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** Opens a fresh context (a separate user) and collects console errors for diagnostics. */
export async function newUser(browser, name, { viewport = { width: 1100, height: 760 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`${name} console: ${m.text()}`);
  });
  page.userName = name;
  return page;
}

/** Joins through the real join page (deep link pre-fills the id) and waits for the room. */
export async function joinViaUi(page, server, conv, displayName) {
  await page.goto(`${server.url}/join?c=${encodeURIComponent(conv.conversationId)}`);
  await page.getByLabel('Join code').fill(conv.joinCode);
  await page.getByLabel('Your name').fill(displayName);
  await page.getByRole('button', { name: 'Join' }).click();
  await page.waitForURL(`**/room/${conv.conversationId}`);
  await waitReady(page);
}

/**
 * A server, a browser and one conversation that every name has joined through the UI, one page
 * each. `init` runs in every page before it loads (an addInitScript function). `close()` prints
 * the pages' console errors and shuts everything down.
 */
export async function joinedRoom(name, names, { env = {}, viewport, init } = {}) {
  const room = { server: await Server.start(name, { env }), browser: await launch(), pages: [] };
  room.conv = await room.server.createConversation();
  for (const n of names) {
    const page = await newUser(room.browser, n, { viewport });
    if (init) await page.context().addInitScript(init);
    await joinViaUi(page, room.server, room.conv, n);
    room.pages.push(page);
  }
  room.close = async () => {
    for (const p of room.pages) if (p.errors.length) console.log(p.errors.join('\n'));
    await room.browser?.close();
    await room.server?.dispose();
  };
  return room;
}

/** The first page starts a call and every other page joins it through the UI. */
export async function everyoneJoinsCall(pages) {
  await pages[0].getByRole('button', { name: 'Start call' }).click();
  await pages[0].locator('#video-grid .tile.local').waitFor();
  for (const page of pages.slice(1)) {
    await page.getByRole('button', { name: /Join call/ }).waitFor({ timeout: 15000 });
    await page.getByRole('button', { name: /Join call/ }).click();
    await page.locator('#video-grid .tile.local').waitFor();
  }
}

/** The chats3 room iframe inside an embedding host page, once it is there and its event stream is open. */
export async function waitRoom(page, server) {
  for (let i = 0; i < 200; i += 1) {
    const f = page.frames().find((fr) => fr.url().startsWith(`${server.url}/room/`));
    if (f) {
      await f.waitForFunction(() => window.chats3Debug && window.chats3Debug.ready && window.chats3Debug.state.streamState === 'open', null, { timeout: 20000 });
      return f;
    }
    await sleep(100);
  }
  throw new Error('the room never loaded in the frame');
}

export async function waitReady(page) {
  await page.waitForFunction(() => window.chats3Debug && window.chats3Debug.ready && window.chats3Debug.state.streamState === 'open', null, { timeout: 20000 });
}

/**
 * Polls `fn(arg)` in the page from node until it returns `{ok: true}` (an async waitForFunction
 * predicate is not reliably awaited); the last answer goes into the timeout error.
 */
export async function poll(page, fn, arg, { timeout = 40000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(fn, arg);
    if (last && last.ok) return last;
    await sleep(400);
  }
  throw new Error(`${page.userName}: timed out waiting for ${what}: ${JSON.stringify(last)}`);
}

export async function send(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

/** Waits until a message with this exact body is rendered. */
export function waitForMessage(page, text, timeout = 15000) {
  return page.waitForFunction((t) => [...document.querySelectorAll('#message-list .msg-bubble')].some((b) => b.textContent === t), text, { timeout });
}

export function bodies(page) {
  return page.$$eval('#message-list .msg:not(.system) .msg-bubble', (nodes) => nodes.map((n) => n.textContent));
}

export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** A small valid PNG (gradient), for upload and paste tests. */
export function makePng(width = 96, height = 64) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y += 1) {
    raw[y * (width * 3 + 1)] = 0;
    for (let x = 0; x < width; x += 1) {
      const o = y * (width * 3 + 1) + 1 + x * 3;
      raw[o] = (x * 255) / width;
      raw[o + 1] = (y * 255) / height;
      raw[o + 2] = 180;
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Counts the page's RTCPeerConnections, so "exactly one connection" is measured, not assumed. */
export function trackPeerConnections() {
  const Native = window.RTCPeerConnection;
  const all = [];
  window.__livePeerConnections = () => all.filter((pc) => pc.signalingState !== 'closed').length;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      all.push(this);
    }
  };
}

/** Waits until the page is in `mode`, holds `pcs` live connections and decodes video+audio from `n` others. */
export function waitCall(page, { mode, pcs, n }) {
  return poll(page, async ([m, want, count]) => {
    const call = window.chats3Debug.call();
    const stats = Object.values(await window.chats3Debug.getStats());
    const live = window.__livePeerConnections();
    const decoding = stats.filter((s) => s.framesDecoded > 0 && s.audioBytes > 0).length;
    return { ok: call.mode === m && live === want && stats.length === count && decoding === count, mode: call.mode, live, relay: call.relay && [call.relay.pc.signalingState, call.relay.pc.connectionState, call.relay.pc.getTransceivers().length, ...call.relay.history], mesh: [...call.peers.values()].map((p) => [p.userId.slice(0, 6), p.polite, p.pc.signalingState, p.pc.connectionState, p.pc.iceConnectionState, ...p.history]), decoding, stats: stats.map((s) => [s.userId.slice(0, 6), s.framesDecoded, s.audioBytes]) };
  }, [mode, pcs, n], { timeout: 90000, what: `${mode} call with ${pcs} connection(s) decoding ${n} others` });
}

/**
 * Starts a Node script as a child process (e.g. examples/host-page/server.mjs) and waits until
 * `url` answers. Returns {proc, url, stop()}; stop() kills that PID only.
 */
export async function startNodeServer(script, { env = {}, url, name }) {
  const log = createWriteStream(join(ARTIFACTS, `${name}.log`));
  const proc = spawn(process.execPath, [script], { cwd: dirname(script), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.pipe(log);
  proc.stderr.pipe(log);
  const exited = new Promise((res) => proc.once('exit', (code) => res(code)));
  const deadline = Date.now() + 15000;
  for (;;) {
    const early = await Promise.race([exited, sleep(100).then(() => 'running')]);
    if (early !== 'running') throw new Error(`${name} exited with ${early}; see artifacts/${name}.log`);
    try {
      if ((await fetch(url)).status < 500) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`${name} did not answer ${url} within 15 s`);
  }
  return {
    proc,
    url,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}
