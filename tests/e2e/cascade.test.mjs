// One call on two cluster nodes: three pages joined through node A and three through node B (a
// plain TCP proxy in front of B that falls over to A, as a load balancer would) end in relay mode,
// the two nodes' relays joined by a QUIC trunk, and every page decodes video and audio from the
// five others. Then node B is killed: its pages come back through node A and everyone decodes
// everyone again. Real Chromium, a real nats-server with JetStream, two chats3 processes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import {
  Server, ROOT, ARTIFACTS, freePort, sleep, launch, newUser, joinViaUi, everyoneJoinsCall, shot,
  trackPeerConnections, waitCall, poll,
} from './lib.mjs';

const names = ['Ada', 'Bo', 'Cy', 'Dee', 'Eve', 'Fay'];
const bin = process.env.CHATS3_BIN || join(ROOT, 'target/release/chats3');
let dir;
let nats;
let nodes = [];
let proxy;
let browser;
let pages = [];

/** nats-server with JetStream on a free port, storing under `dir`. */
async function startNats(dir) {
  const port = await freePort();
  const exe = ['/usr/sbin/nats-server', '/usr/bin/nats-server'].find((p) => {
    try { execFileSync(p, ['--version']); return true; } catch { return false; }
  }) || 'nats-server';
  const log = createWriteStream(join(ARTIFACTS, 'cascade-nats.log'));
  const proc = spawn(exe, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'nats'), '-n', 'e2e'], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.pipe(log);
  proc.stderr.pipe(log);
  for (let i = 0; i < 100; i += 1) {
    const up = await new Promise((res) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); res(true); });
      s.on('error', () => res(false));
    });
    if (up) return { proc, url: `nats://127.0.0.1:${port}` };
    await sleep(100);
  }
  throw new Error('nats-server did not listen');
}

/** A TCP proxy that sends each connection to the first of `ports` that accepts it. */
async function failoverProxy(ports) {
  const server = net.createServer((client) => {
    client.pause();
    const attempt = (i) => {
      if (i >= ports.length) return client.destroy();
      const up = net.connect(ports[i], '127.0.0.1');
      up.once('error', () => attempt(i + 1));
      up.once('connect', () => {
        up.removeAllListeners('error');
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
        client.pipe(up).pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  const port = await freePort();
  await new Promise((res) => server.listen(port, '127.0.0.1', res));
  return { server, url: `http://127.0.0.1:${port}` };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'chats3-cascade-'));
  execFileSync(bin, ['cluster-cert', join(dir, 'certs')]);
  nats = await startNats(dir);
  const env = (node) => ({
    NATS_URL: nats.url,
    NODE_ID: node,
    COOKIE_SECRET: 'cascade-e2e-shared-secret-0123456789abcdef',
    MESH_MAX: '4',
    METRICS_TOKEN: 'cascade-metrics',
    TRUNK_BIND: '127.0.0.1:0',
    CLUSTER_CERT: join(dir, 'certs', 'node.pem'),
    CLUSTER_KEY: join(dir, 'certs', 'node.key'),
    CLUSTER_CA: join(dir, 'certs', 'ca.pem'),
  });
  nodes = [await Server.start('cascade-a', { env: env('e2e-a') }), await Server.start('cascade-b', { env: env('e2e-b') })];
  proxy = await failoverProxy([nodes[1].port, nodes[0].port]);
  browser = await launch();
  const conv = await nodes[0].createConversation();
  for (const [i, name] of names.entries()) {
    const page = await newUser(browser, name, { viewport: { width: 900, height: 640 } });
    await page.context().addInitScript(trackPeerConnections);
    await joinViaUi(page, i < 3 ? nodes[0] : { url: proxy.url }, conv, name);
    pages.push(page);
  }
});

after(async () => {
  for (const p of pages) if (p.errors.length) console.log(p.errors.join('\n'));
  await browser?.close();
  proxy?.server.close();
  for (const n of nodes) await n.dispose();
  nats?.proc.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `chats3_trunks` on a node's /metrics. */
async function trunks(node) {
  const res = await fetch(`${node.url}/metrics`, { headers: { authorization: 'Bearer cascade-metrics' } });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith('chats3_trunks '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

test('a relay call spanning two nodes: every page decodes the five others over the trunk', async () => {
  await everyoneJoinsCall(pages);
  try {
    for (const page of pages) await waitCall(page, { mode: 'relay', pcs: 1, n: 5 });
  } catch (err) {
    for (const node of nodes) {
      const res = await fetch(`${node.url}/metrics`, { headers: { authorization: 'Bearer cascade-metrics' } });
      console.log(node.name, (await res.text()).split('\n').filter((l) => l.startsWith('chats3_trunk') || l.startsWith('chats3_relay_')).join('\n'));
    }
    throw err;
  }
  assert.equal(await trunks(nodes[0]), 1, 'node A holds one trunk');
  assert.equal(await trunks(nodes[1]), 1, 'node B holds one trunk');
  await shot(pages[3], 'cascade-6-relay');
});

/** How many others' video the page is decoding right now (frames decoded within 1.5 s). */
function decodingNow(page, { atLeast, timeout, what }) {
  return poll(page, async (n) => {
    const decoded = async () => Object.fromEntries(Object.values(await window.chats3Debug.getStats()).map((s) => [s.userId, s.framesDecoded]));
    const a = await decoded();
    await new Promise((r) => setTimeout(r, 1500));
    const b = await decoded();
    // A stream that came back through another node counts from zero again.
    const moving = Object.keys(b).filter((id) => b[id] > (a[id] || 0) || (b[id] > 0 && b[id] < a[id]));
    return { ok: moving.length >= n, moving: moving.length, mode: window.chats3Debug.call().mode, stream: window.chats3Debug.state.streamState };
  }, atLeast, { timeout, what });
}

test('node B dies: its pages come back through node A and everyone decodes everyone again', async () => {
  await nodes[1].stop();
  // A's pages keep decoding each other meanwhile.
  for (const page of pages.slice(0, 3)) {
    await decodingNow(page, { atLeast: 2, timeout: 20000, what: 'video from the other pages of node A' });
  }
  // A notices (the trunk is closed when B has been silent for 10 s).
  const deadline = Date.now() + 40000;
  while ((await trunks(nodes[0])) !== 0) {
    assert.ok(Date.now() < deadline, 'node A still holds a trunk to the dead node');
    await sleep(500);
  }
  for (const page of pages) {
    await decodingNow(page, { atLeast: 5, timeout: 120000, what: 'video from all five others again, through node A' });
  }
  await shot(pages[3], 'cascade-after-failover');
});
