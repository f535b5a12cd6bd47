//! chats3-media: call topology and (in future) the SFU-style relay.
//!
//! Today this crate owns one decision: whether a call runs as a peer-to-peer
//! mesh or through a server relay, with hysteresis so a call hovering at the
//! threshold does not flap. It is pure (time is passed in) and knows nothing
//! of HTTP, sessions or S3. The relay itself (webrtc-rs forwarding, QUIC
//! trunks) is not built yet; see the README's status table.

pub mod topology;

pub use topology::{CallTopology, Topology, TopologyPolicy};
