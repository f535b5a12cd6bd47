//! The relay's network and keyframe settings.

use std::net::SocketAddr;
use std::time::Duration;

use crate::speaker::SpeakerPolicy;

/// Network and keyframe settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Serve every peer connection from this one UDP socket (ICE demultiplexes
    /// by username fragment). The IP must be a specific local address (not
    /// 0.0.0.0): webrtc-rs's mux mis-attributes replies when several host
    /// candidates share one socket, so the relay announces only this address
    /// (or `public_ips` in its place). `None`: each connection binds its own
    /// ephemeral port on every interface.
    pub udp_bind: Option<SocketAddr>,
    /// Addresses to announce instead of the local interface addresses (for a
    /// VM behind 1:1 NAT): `SettingEngine::set_nat_1to1_ips` with host
    /// candidates.
    pub public_ips: Vec<String>,
    /// Also gather loopback candidates (tests, single-host setups).
    pub include_loopback: bool,
    /// Minimum interval between two keyframe requests for one track.
    pub pli_min_interval: Duration,
    /// Active-speaker switching and last-N.
    pub speakers: SpeakerPolicy,
    /// Writer tasks that share the fan-out of every forwarded packet
    /// ([`crate::fanout`]); default: one per core.
    pub fanout_lanes: usize,
    /// A connection not connected this long after joining is closed and its
    /// participant removed (so is one whose ICE fails at any time).
    pub connect_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            udp_bind: None,
            public_ips: Vec::new(),
            include_loopback: false,
            pli_min_interval: Duration::from_millis(500),
            speakers: SpeakerPolicy::default(),
            fanout_lanes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            connect_timeout: Duration::from_secs(30),
        }
    }
}
