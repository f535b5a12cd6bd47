//! Headless publishers (synthetic VP8 and Opus) and subscribers that record
//! what they receive.

use super::*;

pub struct Publisher {
    pub pc: Arc<RTCPeerConnection>,
    pub fb: Arc<Feedback>,
    /// The audio level (−dBov, 127 = silence) its audio packets carry.
    pub level: Arc<AtomicU8>,
}

pub fn vp8_payload(key: bool, fill: u8) -> Bytes {
    vp8_sized(key, fill, 320, 240)
}

pub fn vp8_sized(key: bool, fill: u8, width: u16, height: u16) -> Bytes {
    // Payload descriptor: S=1 (start of partition), PID 0, no extensions.
    let mut v = vec![0x10];
    // Frame tag: first partition size 10, show_frame, version 0, P = !key.
    let tag: u32 = (10 << 5) | (1 << 4) | u32::from(!key);
    v.extend_from_slice(&[tag as u8, (tag >> 8) as u8, (tag >> 16) as u8]);
    if key {
        // Start code, then the frame size.
        v.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&width.to_le_bytes());
        v.extend_from_slice(&height.to_le_bytes());
    }
    v.extend(std::iter::repeat_n(fill, 300));
    v.into()
}

/// What a publisher hears back from the relay.
#[derive(Default)]
pub struct Feedback {
    pub plis: AtomicU64,
    /// A keyframe is wanted (set by a PLI; the sending loop clears it).
    pub want_key: AtomicU64,
    /// Transport-wide congestion-control feedback packets.
    pub twcc: AtomicU64,
}

/// Reads a sender's RTCP into `fb` until the sender closes.
pub fn watch_feedback(sender: Arc<RTCRtpSender>, fb: Arc<Feedback>) {
    tokio::spawn(async move {
        while let Ok((pkts, _)) = sender.read_rtcp().await {
            for pkt in pkts {
                if pkt.as_any().is::<PictureLossIndication>() {
                    fb.plis.fetch_add(1, Ordering::SeqCst);
                    fb.want_key.store(1, Ordering::SeqCst);
                } else if pkt.as_any().is::<TransportLayerCc>() {
                    fb.twcc.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
}

/// Joins `id` to the relay with a complete (non-trickle) offer.
pub async fn join_without_trickle(relay: &Relay, pc: &RTCPeerConnection, id: &str) {
    relay.join(ROOM, id).await.unwrap();
    let sdp = complete_offer(pc).await.unwrap();
    relay
        .handle_signal(ROOM, id, Signal::Offer(sdp))
        .await
        .unwrap();
}

/// A VP8 track `id` of stream `stream` (a participant's id).
pub fn vp8_track(id: &str, stream: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90_000,
            ..Default::default()
        },
        id.into(),
        stream.into(),
    ))
}

/// Joins a publisher that trickles its candidates and sends VP8 (keyframe
/// every 30 frames and on PLI) and Opus.
pub async fn publisher(api: &API, relay: &Relay, clients: &Clients, id: &str) -> Publisher {
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    let ready = clients.insert(id, &pc);
    let video = vp8_track("video", id);
    let audio = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.into(),
            clock_rate: 48_000,
            channels: 2,
            ..Default::default()
        },
        "audio".into(),
        id.into(),
    ));
    let vsender = pc.add_track(Arc::clone(&video) as _).await.unwrap();
    let asender = pc.add_track(Arc::clone(&audio) as _).await.unwrap();
    let level = Arc::new(AtomicU8::new(127));
    let fb = Arc::new(Feedback::default());
    watch_feedback(vsender, Arc::clone(&fb));
    watch_feedback(asender, Arc::clone(&fb));
    // Trickle ICE through the relay (candidates may arrive before the offer).
    let (ctx, mut crx) = mpsc::unbounded_channel::<IceCandidate>();
    pc.on_ice_candidate(Box::new(move |c| {
        if let Some(c) = c {
            let init = c.to_json().unwrap();
            let _ = ctx.send(IceCandidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
                username_fragment: init.username_fragment,
            });
        }
        Box::pin(async {})
    }));
    relay.join(ROOM, id).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    let sdp = offer.sdp.clone();
    pc.set_local_description(offer).await.unwrap();
    {
        let (relay, id) = (relay.clone(), id.to_owned());
        tokio::spawn(async move {
            while let Some(c) = crx.recv().await {
                relay
                    .handle_signal(ROOM, &id, Signal::Candidate(c))
                    .await
                    .unwrap();
            }
        });
    }
    relay
        .handle_signal(ROOM, id, Signal::Offer(sdp))
        .await
        .unwrap();
    // Media: ~30 fps one-packet VP8 frames, 50 pps Opus, once the relay is ready.
    let weak = Arc::downgrade(&pc);
    let (level2, fb2) = (Arc::clone(&level), Arc::clone(&fb));
    tokio::spawn(async move {
        if !wait_ready(ready).await {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let (mut vseq, mut aseq, mut frame) = (0u16, 0u16, 0u32);
        loop {
            tick.tick().await;
            if weak.strong_count() == 0 {
                break;
            }
            frame += 1;
            let key = frame % 30 == 1 || fb2.want_key.swap(0, Ordering::SeqCst) == 1;
            let v = Packet {
                header: Header {
                    version: 2,
                    marker: true,
                    sequence_number: vseq,
                    timestamp: frame * 3000,
                    ..Default::default()
                },
                payload: vp8_payload(key, frame as u8),
            };
            let a = Packet {
                header: Header {
                    version: 2,
                    sequence_number: aseq,
                    timestamp: frame * 960,
                    ..Default::default()
                },
                payload: Bytes::from(vec![0xfc; 80]),
            };
            vseq = vseq.wrapping_add(1);
            aseq = aseq.wrapping_add(1);
            let ext = [HeaderExtension::AudioLevel(AudioLevelExtension {
                level: level2.load(Ordering::SeqCst),
                voice: true,
            })];
            if video.write_rtp(&v).await.is_err()
                || audio.write_rtp_with_extensions(&a, &ext).await.is_err()
            {
                break;
            }
        }
    });
    Publisher { pc, fb, level }
}

#[derive(Default)]
pub struct Received {
    pub video: Vec<u16>,
    pub audio: Vec<u16>,
    pub keyframes: usize,
    pub bad_descriptors: usize,
    pub tracks: usize,
    /// Errors `read_rtp` returned on an open track (the reader carries on).
    pub read_errors: Vec<String>,
    /// Video per publisher (the stream id).
    pub video_from: HashMap<String, Vec<Video>>,
    /// The transport-wide sequence number of every packet, audio and video
    /// (`None`: the packet had none).
    pub transport_seqs: Vec<Option<u16>>,
    /// Packets that carried a RID (or repaired-RID) header extension.
    pub rid_tagged: usize,
    /// Sender reports on a received stream's SSRC that count what came.
    pub sender_reports: usize,
}

/// One received video packet.
pub struct Video {
    pub seq: u16,
    pub ts: u32,
    /// Starts a keyframe.
    pub key: bool,
    /// The keyframe's frame height (0 for other packets).
    pub height: u16,
    pub at: std::time::Instant,
}

pub struct Subscriber {
    pub pc: Arc<RTCPeerConnection>,
    pub rx: Arc<Mutex<Received>>,
}

impl Subscriber {
    pub fn counts(&self) -> (usize, usize) {
        let r = self.rx.lock().unwrap();
        (r.video.len(), r.audio.len())
    }

    /// What it received and how its connection stands, for failure messages.
    pub fn state(&self) -> String {
        let r = self.rx.lock().unwrap();
        format!(
            "{} video and {} audio packets on {} tracks, read errors {:?}; pc {:?}, ice {:?}, signaling {:?}",
            r.video.len(),
            r.audio.len(),
            r.tracks,
            r.read_errors,
            self.pc.connection_state(),
            self.pc.ice_connection_state(),
            self.pc.signaling_state(),
        )
    }
}

/// A connection with one receive-only video and one audio transceiver.
pub async fn receive_only_connection(api: &API) -> Arc<RTCPeerConnection> {
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    receive_only(&pc, &[RTPCodecType::Video, RTPCodecType::Audio])
        .await
        .unwrap();
    pc
}

/// Joins a receive-only participant (non-trickle offer).
pub async fn subscriber(api: &API, relay: &Relay, clients: &Clients, id: &str) -> Subscriber {
    let pc = receive_only_connection(api).await;
    let rx = Arc::new(Mutex::new(Received::default()));
    let weak_rx: Weak<Mutex<Received>> = Arc::downgrade(&rx);
    pc.on_track(Box::new(move |track, receiver, _| {
        let weak_rx = weak_rx.clone();
        if let Some(rx) = weak_rx.upgrade() {
            rx.lock().unwrap().tracks += 1;
        }
        let (reports_rx, ssrc) = (weak_rx.clone(), track.ssrc());
        tokio::spawn(async move {
            while let Ok((pkts, _)) = receiver.read_rtcp().await {
                let Some(rx) = reports_rx.upgrade() else {
                    break;
                };
                let reports = pkts
                    .iter()
                    .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                    .filter(|sr| sr.ssrc == ssrc && sr.packet_count > 0 && sr.ntp_time > 0)
                    .count();
                rx.lock().unwrap().sender_reports += reports;
            }
        });
        tokio::spawn(async move {
            let kind = track.kind();
            let from = track.stream_id();
            let ext_id = |uri: &str| {
                track
                    .params()
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == uri)
                    .map(|e| e.id as u8)
            };
            let transport_cc = ext_id(TRANSPORT_CC_URI);
            let rid_ids: Vec<u8> = [SDES_RTP_STREAM_ID_URI, SDES_REPAIR_RTP_STREAM_ID_URI]
                .into_iter()
                .filter_map(ext_id)
                .collect();
            loop {
                let read = track.read_rtp().await;
                let Some(rx) = weak_rx.upgrade() else { break };
                let mut r = rx.lock().unwrap();
                let pkt = match read {
                    Ok((pkt, _)) => pkt,
                    Err(
                        webrtc::Error::ErrClosedPipe
                        | webrtc::Error::ErrRTPReceiverNil
                        | webrtc::Error::ErrRTPReceiverWithSSRCTrackStreamNotFound,
                    ) => break,
                    Err(e) => {
                        eprintln!("{kind} read error: {e}");
                        r.read_errors.push(e.to_string());
                        if r.read_errors.len() > 100 {
                            break;
                        }
                        continue;
                    }
                };
                let transport_seq = transport_cc
                    .and_then(|id| pkt.header.get_extension(id))
                    .and_then(|b| Some(u16::from_be_bytes([*b.first()?, *b.get(1)?])));
                r.transport_seqs.push(transport_seq);
                if rid_ids
                    .iter()
                    .any(|&id| pkt.header.get_extension(id).is_some())
                {
                    r.rid_tagged += 1;
                }
                if kind == RTPCodecType::Video {
                    r.video.push(pkt.header.sequence_number);
                    let p = &pkt.payload;
                    if p.len() < 4 || p[0] != 0x10 {
                        r.bad_descriptors += 1;
                    } else if p[1] & 1 == 0 {
                        r.keyframes += 1;
                    }
                    let key = p.len() >= 2 && p[0] == 0x10 && p[1] & 1 == 0;
                    let height = if key && p.len() >= 11 {
                        u16::from_le_bytes([p[9], p[10]]) & 0x3fff
                    } else {
                        0
                    };
                    r.video_from.entry(from.clone()).or_default().push(Video {
                        seq: pkt.header.sequence_number,
                        ts: pkt.header.timestamp,
                        key,
                        height,
                        at: std::time::Instant::now(),
                    });
                } else {
                    r.audio.push(pkt.header.sequence_number);
                }
            }
        });
        Box::pin(async {})
    }));
    clients.insert(id, &pc);
    join_without_trickle(relay, &pc, id).await;
    Subscriber { pc, rx }
}
