//! chats3-media: call topology and the SFU-style relay.
//!
//! - [`topology`]: whether a call runs as a peer-to-peer mesh or through the
//!   relay, with hysteresis so a call hovering at the threshold does not flap.
//!   Pure (time is passed in).
//! - [`relay`]: the relay itself, on the async webrtc-rs stack: one server-side
//!   peer connection per participant, every published track forwarded to the
//!   other participants of the room, keyframe requests relayed and throttled,
//!   per-room and per-participant counters; `fanout` spreads the writes of
//!   each forwarded packet over one writer task per core.
//! - [`speaker`]: active speaker and last-N from audio levels. Pure.
//! - [`gate`]: pausing/resuming a forwarded video track at keyframes with
//!   contiguous sequence numbers. Pure.
//! - [`vp8`]: keyframe start and size from VP8 payloads. Pure.
//! - [`simulcast`]: layer choice per subscriber and seamless layer switching
//!   (rewritten sequence numbers and timestamps). Pure.
//! - [`rtx`]: RTX packets (RFC 4588) and the send history NACKs are answered
//!   from. Pure; [`retransmit`] applies them to each connection as two
//!   webrtc-rs interceptors (answering NACKs, restoring received RTX).
//! - [`bwe`]: downlink bandwidth estimation from TWCC feedback (delay trend
//!   and loss). Pure; `downlink` feeds it from each participant's connection.
//! - [`trunk`]: QUIC trunks (quinn, mutual TLS) that carry tracks between
//!   the relays of a cluster's nodes; the relay's `cascade` uses them.
//! - `testkit` (feature `testkit`): a headless webrtc-rs client for tests
//!   and benchmarks.
//!
//! The crate knows nothing of HTTP, sessions or S3: the app feeds it joins,
//! leaves and [`Signal`]s and delivers the [`RelayEvent`]s it emits (signals
//! for one participant, speaker changes for a room).
//! Not built: bandwidth probing (see the README's status table).

pub mod bwe;
mod downlink;
mod egress;
mod fanout;
#[cfg(test)]
mod fuzzing;
pub mod gate;
pub mod relay;
pub mod retransmit;
pub mod rtx;
pub mod signal;
pub mod simulcast;
pub mod speaker;
mod srtp_out;
pub mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod topology;
pub mod trunk;
mod udp_batch;
mod udp_recv;
pub mod vp8;
mod when_receiving;

pub use relay::{Relay, RelayConfig, RelayError};
pub use signal::{IceCandidate, Outgoing, RelayEvent, RenderedSize, Signal};
pub use speaker::{SpeakerChange, SpeakerPolicy};
pub use stats::{ParticipantStats, RelayStats, RoomStats};
pub use topology::{CallTopology, Topology, TopologyPolicy};

/// Locks a std mutex, recovering from poisoning: every critical section in
/// this crate leaves its data consistent before anything can panic.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The id a stream's negotiated header extensions give `uri`, if any.
pub(crate) fn stream_extension_id(
    info: &webrtc::interceptor::stream_info::StreamInfo,
    uri: &str,
) -> Option<u8> {
    info.rtp_header_extensions
        .iter()
        .find(|e| e.uri == uri)
        .and_then(|e| u8::try_from(e.id).ok())
}
