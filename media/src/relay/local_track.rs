//! The track the relay adds to a subscriber's connection for a published
//! track: webrtc-rs negotiates and binds it like any local track, but its
//! packets skip webrtc-rs's write chain — each binding (one subscriber's
//! connection) hands them to that connection's sender ([`Egress`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use portable_atomic::AtomicBool;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::sdp::extmap::SDES_MID_URI;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalContext};

use crate::egress::{Egress, Handed, Label};
use crate::lock;

/// One connection the track is bound to.
struct Binding {
    /// webrtc-rs's id of the binding (its sender's).
    id: String,
    label: Label,
    /// Its connection's sender, once known (the sender may bind before the
    /// relay has told the track whose it is).
    egress: OnceLock<Weak<Egress>>,
    /// Whether the sender is paused (its direction no longer sends).
    paused: Arc<AtomicBool>,
}

/// A local track whose packets go to each bound connection's [`Egress`].
pub(crate) struct RelayTrack {
    /// Negotiates the codec (webrtc-rs's matching) and holds id, stream id
    /// and codec; never written to.
    template: TrackLocalStaticRTP,
    /// The sender of each connection the track was added to, by its SSRC.
    expected: Mutex<HashMap<u32, Weak<Egress>>>,
    bindings: Mutex<Vec<Arc<Binding>>>,
}

impl RelayTrack {
    pub(crate) fn new(codec: RTCRtpCodecCapability, id: String, stream_id: String) -> Self {
        Self {
            template: TrackLocalStaticRTP::new(codec, id, stream_id),
            expected: Mutex::new(HashMap::new()),
            bindings: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn codec(&self) -> RTCRtpCodecCapability {
        self.template.codec()
    }

    /// The sender with SSRC `ssrc` (just added to a connection) sends
    /// through `egress` once bound.
    pub(crate) fn expect(&self, ssrc: u32, egress: &Arc<Egress>) {
        lock(&self.expected).insert(ssrc, Arc::downgrade(egress));
    }

    /// Whether any connection is bound to the track.
    pub(crate) fn bound(&self) -> bool {
        !lock(&self.bindings).is_empty()
    }

    /// Sends `packet` (`size` bytes as received) as `(seq, timestamp)` to
    /// every bound connection. Returns to how many it went.
    pub(crate) async fn write(
        &self,
        packet: &Arc<Packet>,
        seq: u16,
        timestamp: u32,
        size: u64,
    ) -> usize {
        let mut sent = 0;
        // Connections whose own sending has not taken over yet: written
        // through webrtc-rs once the lock is released.
        let mut later = Vec::new();
        for b in lock(&self.bindings).iter() {
            if b.paused.load(Ordering::Relaxed) {
                continue;
            }
            let Some(egress) = self.egress_of(b) else {
                continue;
            };
            match egress.forward(&b.label, packet, seq, timestamp, size) {
                Handed::Done(went) => sent += usize::from(went),
                Handed::Chain(w) => later.push((egress, w)),
            }
        }
        for (egress, w) in later {
            sent += usize::from(egress.write_chain(w, size).await);
        }
        sent
    }

    fn egress_of(&self, b: &Binding) -> Option<Arc<Egress>> {
        if let Some(egress) = b.egress.get() {
            return egress.upgrade();
        }
        let egress = lock(&self.expected).get(&b.label.ssrc)?.clone();
        b.egress.get_or_init(|| egress).upgrade()
    }
}

#[async_trait]
impl TrackLocal for RelayTrack {
    async fn bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        // The template only matches the codec: it keeps no binding (each
        // holds a copy of the connection's codec list, ≈ 14 KB).
        let codec = self.template.bind(t).await?;
        self.template.unbind(t).await?;
        let mid = t
            .header_extensions()
            .iter()
            .find(|e| e.uri == SDES_MID_URI)
            .and_then(|e| u8::try_from(e.id).ok())
            .zip(t.mid().map(|mid| Bytes::copy_from_slice(mid.as_bytes())));
        lock(&self.bindings).push(Arc::new(Binding {
            id: t.id(),
            label: Label {
                ssrc: t.ssrc(),
                payload_type: codec.payload_type,
                mid,
            },
            egress: OnceLock::new(),
            paused: t.paused(),
        }));
        Ok(codec)
    }

    async fn unbind(&self, t: &TrackLocalContext) -> webrtc::error::Result<()> {
        let found = {
            let mut bindings = lock(&self.bindings);
            let before = bindings.len();
            bindings.retain(|b| b.id != t.id());
            bindings.len() < before
        };
        lock(&self.expected).remove(&t.ssrc());
        if found {
            Ok(())
        } else {
            Err(webrtc::Error::ErrUnbindFailed)
        }
    }

    fn id(&self) -> &str {
        self.template.id()
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        self.template.stream_id()
    }

    fn kind(&self) -> RTPCodecType {
        self.template.kind()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
