//! Subscribers' RTCP and keyframe requests: what a subscriber's feedback
//! asks of the stream it was read for, and the (throttled) PLI that goes to
//! the publisher.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;

use super::Inner;
use super::ids::ParticipantId;
use super::timing::Admit;
use super::tracks::{Origin, Published};
use crate::lock;
use crate::stats::Counters;
use crate::trunk::wire::Control;

/// What a subscriber's RTCP packet asks of the stream it was read for.
#[derive(Debug, PartialEq, Eq)]
enum Feedback {
    KeyframeRequest,
    /// Packets asked to be resent.
    Nack(u64),
}

/// The feedback `packet` carries about the stream `ssrc` (`None`: unknown,
/// any stream), if any.
fn feedback_for(packet: &dyn std::any::Any, ssrc: Option<u32>) -> Option<Feedback> {
    let about = |media: u32| ssrc.is_none_or(|s| s == media);
    if let Some(pli) = packet.downcast_ref::<PictureLossIndication>() {
        return about(pli.media_ssrc).then_some(Feedback::KeyframeRequest);
    }
    if let Some(fir) = packet.downcast_ref::<FullIntraRequest>() {
        return fir
            .fir
            .iter()
            .any(|e| about(e.ssrc))
            .then_some(Feedback::KeyframeRequest);
    }
    let nack = packet.downcast_ref::<TransportLayerNack>()?;
    let lost: usize = nack.nacks.iter().map(|n| n.packet_list().len()).sum();
    about(nack.media_ssrc).then_some(Feedback::Nack(lost as u64))
}

/// Reads the RTCP a subscriber sends about its copy of `t`: runs the
/// interceptors, counts NACKs and relays keyframe requests. Ends when the
/// sender stops (track removed, connection closed).
pub(super) async fn read_feedback(
    t: Arc<Published>,
    sender: Arc<RTCRtpSender>,
    counters: Arc<Counters>,
    subscriber: ParticipantId,
) {
    // webrtc-rs hands a compound RTCP packet to the reader of every
    // SSRC it names: act only on feedback about this sender's stream.
    let ssrc = sender
        .get_parameters()
        .await
        .encodings
        .first()
        .map(|e| e.ssrc);
    while let Ok((packets, _)) = sender.read_rtcp().await {
        for pkt in packets {
            match feedback_for(pkt.as_any(), ssrc) {
                Some(Feedback::KeyframeRequest) => {
                    counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    let sent = t.request_keyframe_throttled(Duration::ZERO).await;
                    tracing::debug!(publisher = %t.publisher, %subscriber, sent, "relay keyframe request");
                }
                Some(Feedback::Nack(lost)) => {
                    counters.nacked_packets.fetch_add(lost, Ordering::Relaxed);
                }
                None => {}
            }
        }
    }
}

impl Inner {
    /// Asks `t`'s publisher for a keyframe, at most once per `pli_min_interval`.
    pub(super) async fn request_keyframe(&self, t: &Arc<Published>) {
        t.request_keyframe_throttled(self.config.pli_min_interval)
            .await;
    }
}

impl Published {
    /// Asks this (video) track's publisher for a keyframe: now, or when
    /// `min_interval` since the last request has passed (one for all that
    /// came meanwhile). Returns whether this call sent or scheduled one.
    pub(super) async fn request_keyframe_throttled(
        self: &Arc<Self>,
        min_interval: Duration,
    ) -> bool {
        if self.kind != RTPCodecType::Video {
            return false;
        }
        let admit = lock(&self.last_pli).admit(Instant::now(), min_interval);
        match admit {
            Admit::Send => self.send_keyframe_request().await,
            Admit::Defer(wait) => {
                let t = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    lock(&t.last_pli).fired(Instant::now());
                    t.send_keyframe_request().await;
                });
                true
            }
            Admit::Covered => false,
        }
    }

    /// Sends the keyframe request: a PLI per layer to a publisher here, a
    /// control frame to the publisher's node for one behind a trunk.
    async fn send_keyframe_request(&self) -> bool {
        let pc = match &self.origin {
            Origin::Peer(pc) => pc.upgrade(),
            Origin::Trunk { link, key, .. } => {
                // The publisher's node asks it (throttled there too).
                let Some(link) = link.upgrade() else {
                    return false;
                };
                link.control(Control::Keyframe { key: *key });
                self.publisher_counters
                    .plis_sent
                    .fetch_add(1, Ordering::Relaxed);
                return true;
            }
        };
        let Some(pc) = pc else {
            return false;
        };
        // A simulcast track asks every layer: each subscriber may need another.
        let mut ssrcs: Vec<u32> = lock(&self.layers).iter().map(|l| l.ssrc).collect();
        if ssrcs.is_empty() {
            ssrcs.push(self.ssrc);
        }
        let plis: Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>> = ssrcs
            .into_iter()
            .map(|media_ssrc| {
                Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                }) as _
            })
            .collect();
        let sent = pc.write_rtcp(&plis).await.is_ok();
        if sent {
            self.publisher_counters
                .plis_sent
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use webrtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
    use webrtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    use super::*;

    #[test]
    fn feedback_counts_only_for_the_stream_it_names() {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 7,
        };
        assert_eq!(feedback_for(&pli, Some(7)), Some(Feedback::KeyframeRequest));
        assert_eq!(feedback_for(&pli, Some(8)), None);
        assert_eq!(feedback_for(&pli, None), Some(Feedback::KeyframeRequest));

        let fir = FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![FirEntry {
                ssrc: 8,
                sequence_number: 1,
            }],
        };
        assert_eq!(feedback_for(&fir, Some(8)), Some(Feedback::KeyframeRequest));
        assert_eq!(feedback_for(&fir, Some(7)), None);

        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 7,
            // 100, and 101 and 103 from the bitmask.
            nacks: vec![NackPair {
                packet_id: 100,
                lost_packets: 0b101,
            }],
        };
        assert_eq!(feedback_for(&nack, Some(7)), Some(Feedback::Nack(3)));
        assert_eq!(feedback_for(&nack, Some(8)), None);
        let rr = webrtc::rtcp::receiver_report::ReceiverReport::default();
        assert_eq!(feedback_for(&rr, Some(7)), None);
    }
}
