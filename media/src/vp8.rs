//! What the relay reads from VP8 RTP payloads (RFC 7741, RFC 6386): whether
//! a packet starts a keyframe, and a keyframe's size. Pure.

/// The offset of the VP8 payload header (the frame tag) when the packet
/// starts partition 0 of a frame, past the payload descriptor.
fn frame_start(payload: &[u8]) -> Option<usize> {
    let &b0 = payload.first()?;
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return None; // not the start of partition 0
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let &x = payload.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M flag).
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    (i < payload.len()).then_some(i)
}

/// Whether the packet starts a keyframe: the start of partition 0 with the
/// frame tag's inverse-key-frame bit clear.
pub fn keyframe_start(payload: &[u8]) -> bool {
    frame_start(payload).is_some_and(|i| payload[i] & 0x01 == 0)
}

/// A keyframe's width and height in pixels, from the packet that starts it.
pub fn keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let i = frame_start(payload)?;
    let h = payload.get(i..i + 10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let ht = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    Some((w, ht))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_are_recognised_with_and_without_extensions() {
        // S=1, PID=0, then a key frame tag (bit 0 clear).
        assert!(keyframe_start(&[0x10, 0x40, 0x01, 0x00]));
        assert!(!keyframe_start(&[0x10, 0x41, 0x01, 0x00]), "inter frame");
        assert!(!keyframe_start(&[0x00, 0x40]), "not a partition start");
        // X=1 with I (15-bit PictureID), L, T: four extension bytes.
        assert!(keyframe_start(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x50]));
        assert!(!keyframe_start(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x51]));
        assert!(!keyframe_start(&[0x90, 0x80]), "truncated");
        assert!(!keyframe_start(&[]));
    }

    #[test]
    fn keyframe_size_is_read_from_the_frame_header() {
        // Frame tag (key), start code, 640 x 360 (scaling bits set, ignored).
        let p = [
            0x10, 0x40, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0x68, 0x41,
        ];
        assert_eq!(keyframe_size(&p), Some((640, 360)));
        let mut bad = p;
        bad[5] = 0;
        assert_eq!(keyframe_size(&bad), None, "no start code");
        assert_eq!(keyframe_size(&p[..8]), None, "truncated");
        let mut inter = p;
        inter[1] |= 1;
        assert_eq!(keyframe_size(&inter), None);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// A VP8 payload descriptor with any combination of its optional fields.
        fn descriptor() -> impl Strategy<Value = Vec<u8>> {
            (any::<bool>(), any::<u8>(), any::<bool>(), any::<[u8; 4]>()).prop_map(
                |(extended, x, long_picture_id, bytes)| {
                    let x = x & 0xf0;
                    if !extended {
                        return vec![0x10];
                    }
                    let mut d = vec![0x90, x];
                    if x & 0x80 != 0 {
                        if long_picture_id {
                            d.extend([0x80 | bytes[0], bytes[1]]);
                        } else {
                            d.push(bytes[0] & 0x7f);
                        }
                    }
                    if x & 0x40 != 0 {
                        d.push(bytes[2]);
                    }
                    if x & 0x30 != 0 {
                        d.push(bytes[3]);
                    }
                    d
                },
            )
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_payload_is_read_without_panicking(p in prop::collection::vec(any::<u8>(), 0..32)) {
                let start = keyframe_start(&p);
                if keyframe_size(&p).is_some() {
                    prop_assert!(start, "a size is read only from a keyframe start");
                }
            }

            #[test]
            fn a_keyframe_header_behind_any_descriptor_is_read_back(
                d in descriptor(),
                tag in any::<[u8; 3]>(),
                width in 0u16..0x4000,
                height in 0u16..0x4000,
                scale in 0u16..4,
                rest in prop::collection::vec(any::<u8>(), 0..8),
            ) {
                let mut p = d;
                let at = p.len();
                p.extend([tag[0] & !1, tag[1], tag[2], 0x9d, 0x01, 0x2a]);
                p.extend((width | scale << 14).to_le_bytes());
                p.extend((height | scale << 14).to_le_bytes());
                p.extend(rest);
                prop_assert!(keyframe_start(&p));
                prop_assert_eq!(keyframe_size(&p), Some((width, height)));
                // An inter frame (tag bit 0 set) is neither.
                p[at] |= 1;
                prop_assert!(!keyframe_start(&p));
                prop_assert_eq!(keyframe_size(&p), None);
            }
        }
    }
}
