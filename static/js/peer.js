// @ts-check
// peer.js — one RTCPeerConnection to one remote participant, using the "perfect negotiation"
// pattern: both sides may offer at any time; on a collision the polite side rolls back and the
// impolite side ignores the other's offer, so glare can never wedge the connection.
import { signal } from './events.js';

/** How long a connection may take to come up before it is rebuilt. */
const HEAL_INTERVAL_MS = 12000;

/**
 * Receive figures for one remote participant (speaker detection, chats3Debug.getStats); a mesh
 * peer adds its connection states and what it sends, the relay marks its own with `relay`.
 * @typedef {object} InboundStats
 * @property {string} userId
 * @property {RTCPeerConnectionState} conn
 * @property {RTCIceConnectionState} [ice]
 * @property {RTCSignalingState} [signaling]
 * @property {boolean} [relay]
 * @property {number} framesDecoded
 * @property {number} videoBytes
 * @property {number} audioBytes
 * @property {number} audioLevel  0..1, the loudest inbound audio
 * @property {number} frameWidth
 * @property {number} [framesSent]
 * @property {string | null} [sendingVideoLabel]
 * @property {string | null} [sendingVideoId]
 */

export class Peer {
  /**
   * @param {object} o
   * @param {string} o.userId    remote user
   * @param {boolean} o.polite
   * @param {RTCIceServer[]} o.iceServers
   * @param {(track: MediaStreamTrack, stream: MediaStream) => void} o.onTrack
   * @param {(state: RTCPeerConnectionState) => void} o.onState
   * @param {() => void} o.onStuck  not connected after HEAL_INTERVAL_MS: start over
   */
  constructor({ userId, polite, iceServers, onTrack, onState, onStuck }) {
    this.onStuck = onStuck;
    this.userId = userId;
    this.polite = polite;
    this.makingOffer = false;
    this.ignoreOffer = false;
    /** @type {RTCIceCandidateInit[]} */
    this.pendingCandidates = [];
    this.closed = false;
    this.connectedOnce = false;
    /** @type {string[]} */
    this.history = []; // negotiation steps, for bug reports (chats3Debug)
    this.pc = new RTCPeerConnection({ iceServers });
    this.pc.onnegotiationneeded = () => this.negotiate();
    this.pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return;
      const c = candidate.toJSON();
      signal('ice-candidate', { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex }, userId).catch(() => {});
    };
    this.pc.ontrack = ({ track, streams }) => onTrack(track, streams[0] || new MediaStream([track]));
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === 'connected') this.connectedOnce = true; // later trouble: ICE restart
      onState(this.pc.connectionState);
      if (this.pc.connectionState === 'failed' && !this.closed) this.pc.restartIce();
    };
    this.pc.oniceconnectionstatechange = () => {
      if (this.pc.iceConnectionState === 'failed' && !this.closed) this.pc.restartIce();
    };
    this.watchdog = setInterval(() => this.heal(), HEAL_INTERVAL_MS);
  }

  /**
   * Last resort for a connection that never came up (a signal lost on the way, or a browser that
   * wedged its ICE agent in a rollback): the impolite side asks for a fresh connection on both
   * ends (`onStuck`); the polite side waits for that.
   */
  heal() {
    if (this.closed || this.connectedOnce || this.pc.connectionState === 'connected') return;
    this.note(`not connected (${this.pc.connectionState}, ICE ${this.pc.iceGatheringState})`);
    if (!this.polite) this.onStuck();
  }

  /**
   * Sends our tracks; kinds we have no track for are still received (recvonly).
   * @param {MediaStream | null} stream
   */
  attach(stream) {
    const kinds = new Set();
    for (const track of stream ? stream.getTracks() : []) {
      this.pc.addTrack(track, /** @type {MediaStream} */ (stream));
      kinds.add(track.kind);
    }
    for (const kind of ['audio', 'video']) if (!kinds.has(kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
  }

  async negotiate() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      const d = /** @type {RTCSessionDescription} */ (this.pc.localDescription);
      this.note(`sent ${d.type}`);
      const sent = signal('offer', { type: d.type, sdp: d.sdp }, this.userId);
      // The offer is out: an offer from the peer that arrives while the POST is still in flight
      // is a renegotiation to apply (the answer to ours comes first), not a collision to ignore.
      this.makingOffer = false;
      await sent;
    } catch (err) {
      console.warn('negotiation failed', this.userId, err);
    } finally {
      this.makingOffer = false;
    }
  }

  /** @param {string} line */
  note(line) {
    this.history.push(line);
    if (this.history.length > 40) this.history.shift();
  }

  /** @param {RTCSessionDescriptionInit | null | undefined} description  the other side's offer or answer */
  async onDescription(description) {
    if (this.closed || !description || !description.type) return;
    const collision = description.type === 'offer' && (this.makingOffer || this.pc.signalingState !== 'stable');
    this.ignoreOffer = !this.polite && collision;
    this.note(`${description.type} in ${this.pc.signalingState}${this.makingOffer ? ' (making offer)' : ''}${this.ignoreOffer ? ' ignored' : ''}`);
    if (this.ignoreOffer) return;
    if (description.type === 'answer' && this.pc.signalingState !== 'have-local-offer') return; // stale answer
    await this.pc.setRemoteDescription(description); // rolls back our own offer if needed
    if (description.type === 'offer') {
      await this.pc.setLocalDescription();
      const d = /** @type {RTCSessionDescription} */ (this.pc.localDescription);
      await signal('answer', { type: d.type, sdp: d.sdp }, this.userId);
    }
    const queued = this.pendingCandidates.splice(0);
    for (const c of queued) await this.addCandidate(c);
  }

  /** @param {RTCIceCandidateInit | null | undefined} candidate */
  async onCandidate(candidate) {
    if (this.closed || !candidate) return;
    if (!this.pc.remoteDescription) {
      this.pendingCandidates.push(candidate);
      return;
    }
    await this.addCandidate(candidate);
  }

  /** @param {RTCIceCandidateInit} candidate */
  async addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      if (!this.ignoreOffer) console.warn('addIceCandidate failed', err);
    }
  }

  /**
   * Replaces the outgoing track of one kind on every sender of that kind.
   * @param {'audio' | 'video'} kind
   * @param {MediaStreamTrack | null} track
   */
  async replace(kind, track) {
    const sender = this.pc.getSenders().find((s) => (s.track ? s.track.kind === kind : false))
      || this.pc.getTransceivers().find((t) => t.receiver.track.kind === kind && t.sender && t.direction !== 'inactive')?.sender;
    if (sender) {
      await sender.replaceTrack(track);
      const t = this.pc.getTransceivers().find((x) => x.sender === sender);
      if (t && track && t.direction === 'recvonly') t.direction = 'sendrecv';
    } else if (track) {
      this.pc.addTrack(track);
    }
  }

  /** @returns {Promise<InboundStats>} */
  async stats() {
    /** @type {InboundStats} */
    const out = { userId: this.userId, conn: this.pc.connectionState, ice: this.pc.iceConnectionState, signaling: this.pc.signalingState,
      framesDecoded: 0, videoBytes: 0, audioBytes: 0, audioLevel: 0, frameWidth: 0, framesSent: 0, sendingVideoLabel: null };
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.framesDecoded += s.framesDecoded || 0;
        out.videoBytes += s.bytesReceived || 0;
        out.frameWidth = Math.max(out.frameWidth, s.frameWidth || 0);
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioBytes += s.bytesReceived || 0;
        out.audioLevel = Math.max(out.audioLevel, s.audioLevel || 0);
      } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.framesSent += s.framesSent || 0;
      }
    });
    const v = this.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    out.sendingVideoLabel = v && v.track ? v.track.label : null;
    out.sendingVideoId = v && v.track ? v.track.id : null;
    return out;
  }

  close() {
    this.closed = true;
    clearInterval(this.watchdog);
    this.pc.close();
  }
}
