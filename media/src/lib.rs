//! chats3-media: call topology and the SFU-style relay.
//!
//! - [`topology`]: whether a call runs as a peer-to-peer mesh or through the
//!   relay, with hysteresis so a call hovering at the threshold does not flap.
//!   Pure (time is passed in).
//! - [`relay`]: the relay itself, on the async webrtc-rs stack: one server-side
//!   peer connection per participant, every published track forwarded to the
//!   other participants of the room, keyframe requests relayed and throttled,
//!   per-room and per-participant counters.
//!
//! The crate knows nothing of HTTP, sessions or S3: the app feeds it joins,
//! leaves and [`Signal`]s and delivers the [`Outgoing`] signals it emits.
//! Not built: simulcast layer selection, RTX, TWCC-driven bandwidth
//! estimation, active speaker, last-N (see the README's status table).

pub mod relay;
pub mod signal;
pub mod stats;
pub mod topology;

pub use relay::{Relay, RelayConfig, RelayError};
pub use signal::{IceCandidate, Outgoing, Signal};
pub use stats::{ParticipantStats, RelayStats, RoomStats};
pub use topology::{CallTopology, Topology, TopologyPolicy};
