// @ts-check
// relay-peer.js — relay-mode calls: the one RTCPeerConnection between this page and the
// server's media relay. We publish our audio and video once; the relay forwards every other
// participant's tracks to us on the same connection, each in a MediaStream whose id is the
// publisher's user id. Signals go out on POST /api/v1/relay/signal (one at a time, in order) and
// come back as `relay-signal` events. The relay rolls back its own offer when ours collides with
// it, so this side is the "impolite" one of perfect negotiation: it ignores a colliding relay
// offer and applies the relay's fresh offer that follows.
//
// A track is sent only once the relay has said `ready` after negotiating it: the relay's
// WebRTC stack starts its receivers after DTLS, and a packet that arrives before them makes it
// lose that track for the whole connection. Until then the sender has no track (its SSRC is in
// the offer all the same) and the track waits in `held`.
import { api } from './api.js';

/** @typedef {import('./peer.js').InboundStats} InboundStats */
/** @typedef {import('./types.js').RelaySignal} RelaySignal */
/** @typedef {{ publisher: string, width: number, height: number }} RenderedSize  device pixels, 0 when not shown */

/** Our video layers, smallest first; the relay forwards each subscriber the one that fits the size
 * it shows us at (Chrome drops the top ones when the source is too small for them). */
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_200_000 },
];

/** How long the connection may take to come up before it is replaced (the relay's own limit,
 * `relay_connect_secs`, is 30 s by default). */
const CONNECT_WAIT_MS = 20000;

/**
 * Whether an answer has already agreed that this transceiver sends.
 * @param {RTCRtpTransceiver} t
 */
const sendsNegotiated = (t) => /send/.test(t.currentDirection || '');

export class RelayPeer {
  /**
   * @param {object} o
   * @param {RTCIceServer[]} o.iceServers
   * @param {(userId: string, stream: MediaStream) => void} o.onStream  a publisher's tracks arrived
   * @param {(state: RTCPeerConnectionState) => void} o.onState
   * @param {() => void} o.onStuck  failed, or not connected after CONNECT_WAIT_MS: start over
   *   with a new connection (an ICE restart cannot move it to another node, whose relay would not
   *   know our simulcast streams)
   */
  constructor({ iceServers, onStream, onState, onStuck }) {
    this.closed = false;
    this.makingOffer = false;
    /** @type {Promise<unknown>} */
    this.chain = Promise.resolve(); // outgoing signals, one POST at a time
    /** @type {Promise<void>} */
    this.incoming = Promise.resolve(); // incoming signals, applied one at a time
    this.offered = false; // our first offer reached the relay: candidates may follow
    /** @type {RTCIceCandidateInit[]} */
    this.early = [];
    /** @type {Map<string, string>} */
    this.trackUser = new Map(); // remote track id -> publisher user id
    /** @type {Partial<Record<string, RTCRtpSender>>} */
    this.senders = {}; // kind -> our RTCRtpSender for that kind
    /** @type {Map<string, MediaStreamTrack | null>} */
    this.held = new Map(); // kind -> track to send once the relay is ready for it
    this.rendered = ''; // the last size report sent (JSON)
    /** @type {string[]} */
    this.history = []; // what happened to signals, for bug reports (chats3Debug)
    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc.onnegotiationneeded = () => this.negotiate();
    this.pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return;
      const c = candidate.toJSON();
      const data = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex, usernameFragment: c.usernameFragment };
      if (this.offered) this.send('candidate', data);
      else this.early.push(data);
    };
    this.pc.ontrack = ({ track, streams }) => {
      const stream = streams[0];
      if (!stream) return;
      this.trackUser.set(track.id, stream.id);
      onStream(stream.id, stream);
    };
    this.pc.onconnectionstatechange = () => {
      onState(this.pc.connectionState);
      if (this.pc.connectionState === 'failed' && !this.closed) onStuck();
    };
    // An offer that never got through (its node went away mid-request) leaves the connection new.
    this.watchdog = setTimeout(() => {
      if (!this.closed && this.pc.connectionState !== 'connected') onStuck();
    }, CONNECT_WAIT_MS);
  }

  /** Publishes our tracks, video as three simulcast layers; with none of a kind we still receive
   * that kind.
   * @param {MediaStream | null} stream
   */
  attach(stream) {
    for (const track of stream ? stream.getTracks() : []) {
      if (this.senders[track.kind]) continue;
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: 'sendrecv', streams: [/** @type {MediaStream} */ (stream)] };
      if (track.kind === 'video') init.sendEncodings = SIMULCAST;
      this.senders[track.kind] = this.pc.addTransceiver(track.kind, init).sender;
      this.held.set(track.kind, track);
    }
    // Something to offer even with no camera and microphone: receive-only audio and video.
    for (const kind of ['audio', 'video']) {
      if (!this.senders[kind]) this.senders[kind] = this.pc.addTransceiver(kind, { direction: 'recvonly' }).sender;
    }
  }

  /** @param {string} line */
  note(line) {
    this.history.push(line);
    if (this.history.length > 50) this.history.shift();
  }

  /**
   * @param {string} type  offer, answer, candidate or render
   * @param {unknown} data
   * @returns {Promise<unknown>}
   */
  send(type, data) {
    if (type !== 'candidate') this.note(`send ${type}`);
    const p = this.chain.then(() => (this.closed ? null : api('POST', '/api/v1/relay/signal', { type, data })));
    // A signal still in flight when the call went back to mesh is refused (409): expected then.
    this.chain = p.catch((err) => this.closed || console.warn('relay signal failed', type, err));
    return p;
  }

  async negotiate() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      const sent = this.send('offer', /** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp);
      // The offer is out: from here the relay's answer and any fresh offer of its own (which may
      // arrive before this POST completes) must be applied, not ignored as a collision.
      this.makingOffer = false;
      await sent;
      if (!this.offered) {
        this.offered = true;
        for (const c of this.early.splice(0)) this.send('candidate', c);
      }
    } catch (err) {
      console.warn('relay negotiation failed', err);
    } finally {
      this.makingOffer = false;
    }
  }

  /**
   * A `relay-signal` event: `{type: 'offer'|'answer', data: sdp}` or `{type: 'ready'}`; applied in arrival order.
   * @param {RelaySignal} signal
   */
  onSignal(signal) {
    this.incoming = this.incoming.then(() => this.apply(signal));
    return this.incoming;
  }

  /** @param {RelaySignal | null | undefined} signal */
  async apply(signal) {
    if (this.closed || !signal) return;
    if (signal.type === 'ready') {
      this.note('ready');
      await this.release();
      return;
    }
    if (typeof signal.data !== 'string') return;
    this.note(`${signal.type} in ${this.pc.signalingState}${this.makingOffer ? ' (making offer)' : ''}`);
    try {
      if (signal.type === 'answer') {
        if (this.pc.signalingState !== 'have-local-offer') return; // stale answer
        await this.pc.setRemoteDescription({ type: 'answer', sdp: signal.data });
      } else if (signal.type === 'offer') {
        // Impolite: our own offer wins; the relay rolls back and offers again after answering it.
        if (this.makingOffer || this.pc.signalingState !== 'stable') return;
        await this.pc.setRemoteDescription({ type: 'offer', sdp: signal.data });
        await this.pc.setLocalDescription();
        await this.send('answer', /** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp);
      }
    } catch (err) {
      console.warn('relay signal handling failed', signal.type, err);
    }
  }

  /** The relay receives what it said `ready` for: send the held tracks it has negotiated
   * (those still waiting for an answer go at the next `ready`). */
  async release() {
    for (const [kind, track] of [...this.held]) {
      const t = this.transceiver(kind);
      if (!t || !sendsNegotiated(t)) continue;
      this.held.delete(kind);
      try {
        await t.sender.replaceTrack(track);
      } catch (err) {
        console.warn('relay track release failed', kind, err);
      }
    }
  }

  /**
   * @param {string} kind
   * @returns {RTCRtpTransceiver | undefined}
   */
  transceiver(kind) {
    const sender = this.senders[kind];
    return sender && this.pc.getTransceivers().find((x) => x.sender === sender);
  }

  /**
   * Replaces the outgoing track of one kind (camera ↔ screen share, device switch).
   * @param {'audio' | 'video'} kind
   * @param {MediaStreamTrack | null} track
   */
  async replace(kind, track) {
    const t = this.transceiver(kind); // attach() made one of each kind
    if (!t) return;
    if (track && t.direction === 'recvonly') t.direction = 'sendrecv'; // renegotiates
    if (this.held.has(kind) || !sendsNegotiated(t)) this.held.set(kind, track);
    else await t.sender.replaceTrack(track);
  }

  /** Tells the relay how large we show each publisher (`[{publisher, width, height}]`, device
   * pixels), so it picks the simulcast layer of those who publish several; sent only on change.
   * @param {RenderedSize[]} sizes
   */
  reportRendered(sizes) {
    const json = JSON.stringify(sizes);
    if (json === this.rendered || !this.offered) return;
    this.rendered = json;
    this.send('render', sizes);
  }

  /**
   * Inbound figures per publisher, in the shape Peer.stats() gives per mesh peer.
   * @returns {Promise<Record<string, InboundStats>>}
   */
  async stats() {
    /** @type {Record<string, InboundStats>} */
    const out = {};
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const user = this.trackUser.get(s.trackIdentifier);
      if (!user) return;
      const o = out[user] || (out[user] = { userId: user, conn: this.pc.connectionState, relay: true, framesDecoded: 0, videoBytes: 0, audioBytes: 0, frameWidth: 0, audioLevel: 0 });
      if (s.kind === 'video') {
        o.framesDecoded += s.framesDecoded || 0;
        o.videoBytes += s.bytesReceived || 0;
        o.frameWidth = Math.max(o.frameWidth, s.frameWidth || 0);
      } else if (s.kind === 'audio') {
        o.audioBytes += s.bytesReceived || 0;
        o.audioLevel = Math.max(o.audioLevel, s.audioLevel || 0);
      }
    });
    return out;
  }

  close() {
    this.closed = true;
    clearTimeout(this.watchdog);
    this.pc.close();
  }
}
