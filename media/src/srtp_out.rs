//! SRTP protection of the RTP the relay sends (RFC 3711), with the keys a
//! connection's DTLS handshake exported. For AEAD_AES_128_GCM (RFC 7714,
//! the profile the relay prefers and browsers pick) it derives the session
//! key and salt itself and seals each packet in place with one AEAD call
//! (aws-lc-rs) into the datagram's own buffer; other profiles go through
//! webrtc-srtp's context, which allocates per packet and builds a replay
//! window it does not need on the sending side.
//!
//! The sender's rollover counter per SSRC follows the sequence numbers it
//! is given (a retransmission of a packet from before a wrap uses the
//! count it went out with).

use std::collections::HashMap;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use bytes::{Bytes, BytesMut};
use webrtc::rtp::header::Header;
use webrtc::srtp::config::Config;
use webrtc::srtp::context::Context;
use webrtc::srtp::protection_profile::ProtectionProfile;
use webrtc::util::marshal::{Marshal, MarshalSize};

/// The plain RTP packet `header` + `payload`, with the padding the header
/// announces written as webrtc-rs's `Packet::marshal` writes it (to a
/// multiple of 4, at least 4 bytes), and room for `tail` more bytes. Also
/// returns the header's length.
fn plain(header: &Header, payload: &[u8], tail: usize) -> Result<(BytesMut, usize), SrtpError> {
    let header_len = header.marshal_size();
    let padding = match (header.padding, payload.len() % 4) {
        (false, _) => 0,
        (true, 0) => 4,
        (true, r) => 4 - r,
    };
    let mut buf = BytesMut::with_capacity(header_len + payload.len() + padding + tail);
    // Zeroed only where the header is written.
    buf.resize(header_len, 0);
    header.marshal_to(&mut buf)?;
    buf.extend_from_slice(payload);
    if padding > 0 {
        buf.resize(buf.len() + padding - 1, 0);
        buf.extend_from_slice(&[padding as u8]);
    }
    Ok((buf, header_len))
}

/// Why a packet or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SrtpError {
    #[error("srtp: {0}")]
    Srtp(#[from] webrtc::srtp::Error),
    #[error("rtp: {0}")]
    Rtp(#[from] webrtc::util::Error),
    #[error("master key or salt of the wrong length")]
    KeyLength,
    #[error("AES-GCM sealing failed")]
    Seal,
}

/// RFC 3711 §4.3.1 key derivation labels.
const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_SALT: u8 = 0x02;
const TAG_LEN: usize = 16;

/// Protects one connection's outgoing RTP.
pub(crate) enum Protector {
    Gcm(Gcm),
    /// Any other profile: webrtc-srtp's context.
    Other(Box<Context>),
}

impl Protector {
    /// From the connection's local master key and salt.
    pub(crate) fn new(keys: &Config) -> Result<Self, SrtpError> {
        let (key, salt) = (&keys.keys.local_master_key, &keys.keys.local_master_salt);
        Ok(match keys.profile {
            ProtectionProfile::AeadAes128Gcm => Self::Gcm(Gcm::new(key, salt)?),
            profile => Self::Other(Box::new(Context::new(key, salt, profile, None, None)?)),
        })
    }

    /// The packet `header` + `payload` marshalled and protected: the
    /// datagram to send.
    pub(crate) fn protect(&mut self, header: &Header, payload: &[u8]) -> Result<Bytes, SrtpError> {
        match self {
            Self::Gcm(gcm) => gcm.protect(header, payload),
            Self::Other(context) => {
                let (plain, _) = plain(header, payload, 0)?;
                Ok(context.encrypt_rtp_with_header(&plain, header)?)
            }
        }
    }
}

/// AEAD_AES_128_GCM: the session key and salt, and each SSRC's rollover count.
pub(crate) struct Gcm {
    key: LessSafeKey,
    salt: [u8; NONCE_LEN],
    rollover: HashMap<u32, Rollover>,
}

impl Gcm {
    fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        if master_key.len() != 16 || master_salt.len() != NONCE_LEN {
            return Err(SrtpError::KeyLength);
        }
        let session_key = derive(LABEL_SRTP_ENCRYPTION, master_key, master_salt)?;
        let session_salt = derive(LABEL_SRTP_SALT, master_key, master_salt)?;
        let key = UnboundKey::new(&AES_128_GCM, &session_key).map_err(|_| SrtpError::KeyLength)?;
        let mut salt = [0u8; NONCE_LEN];
        salt.copy_from_slice(&session_salt[..NONCE_LEN]);
        Ok(Self {
            key: LessSafeKey::new(key),
            salt,
            rollover: HashMap::new(),
        })
    }

    fn protect(&mut self, header: &Header, payload: &[u8]) -> Result<Bytes, SrtpError> {
        let roc = self
            .rollover
            .entry(header.ssrc)
            .or_insert_with(|| Rollover::new(header.sequence_number))
            .count(header.sequence_number);
        // RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, XORed with the session salt.
        let mut iv = [0u8; NONCE_LEN];
        iv[2..6].copy_from_slice(&header.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&header.sequence_number.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        // One buffer: sealed in place, the tag appended.
        let (mut buf, header_len) = plain(header, payload, TAG_LEN)?;
        let (aad, body) = buf.split_at_mut(header_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&*aad), body)
            .map_err(|_| SrtpError::Seal)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(buf.freeze())
    }
}

/// RFC 3711 §4.3.1 with a key derivation rate of 0 (RFC 5764): AES-CM of
/// the master salt with `label` at octet 7, one block (16 octets) out.
fn derive(label: u8, master_key: &[u8], master_salt: &[u8]) -> Result<[u8; 16], SrtpError> {
    let mut block = [0u8; 16];
    block[..master_salt.len()].copy_from_slice(master_salt);
    block[7] ^= label;
    let key = UnboundCipherKey::new(&AES_128, master_key).map_err(|_| SrtpError::KeyLength)?;
    EncryptingKey::ecb(key)
        .and_then(|k| k.less_safe_encrypt(&mut block, EncryptionContext::None))
        .map_err(|_| SrtpError::KeyLength)?;
    Ok(block)
}

/// A sender's rollover count (RFC 3711 §3.3.1) for one SSRC.
#[derive(Debug, Clone, Copy)]
struct Rollover {
    roc: u32,
    /// The highest sequence number sent so far.
    highest: u16,
}

impl Rollover {
    fn new(first: u16) -> Self {
        Self {
            roc: 0,
            highest: first,
        }
    }

    /// The count `seq` goes out with, moving past a wrap when `seq` is ahead.
    fn count(&mut self, seq: u16) -> u32 {
        let ahead = seq.wrapping_sub(self.highest);
        if ahead == 0 {
            return self.roc;
        }
        if ahead < 0x8000 {
            if seq < self.highest {
                self.roc = self.roc.wrapping_add(1);
            }
            self.highest = seq;
            self.roc
        } else if seq > self.highest {
            // Behind, from before the last wrap (a retransmission).
            self.roc.wrapping_sub(1)
        } else {
            self.roc
        }
    }
}

/// Tests: made-up master keys of the lengths `profile` needs.
#[cfg(test)]
pub(crate) fn test_keys(profile: ProtectionProfile) -> Config {
    let mut config = Config {
        profile,
        ..Default::default()
    };
    config.keys.local_master_key = (0..profile.key_len() as u8).map(|b| b * 7 + 1).collect();
    config.keys.local_master_salt = (0..profile.salt_len() as u8).map(|b| b * 13 + 5).collect();
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    use webrtc::rtp::packet::Packet;

    fn packet(ssrc: u32, seq: u16, extension: bool) -> Packet {
        let mut p = Packet::default();
        p.header.version = 2;
        p.header.ssrc = ssrc;
        p.header.payload_type = 96;
        p.header.sequence_number = seq;
        p.header.timestamp = u32::from(seq).wrapping_mul(3000);
        if extension {
            p.header
                .set_extension(3, Bytes::copy_from_slice(&seq.to_be_bytes()))
                .unwrap();
        }
        p.payload = Bytes::from(vec![seq as u8; 100 + usize::from(seq % 7)]);
        // Padded as a browser's padding-only probes are, now and then.
        p.header.padding = seq.is_multiple_of(5);
        if seq.is_multiple_of(10) {
            p.payload = Bytes::new();
        }
        p
    }

    /// The native AES-GCM path writes exactly what webrtc-srtp's context
    /// writes for the same keys, across a sequence number wrap, a
    /// retransmission from before it, and header extensions; webrtc-srtp's
    /// receiving side opens every packet.
    #[test]
    fn native_aes_gcm_matches_webrtc_srtp_byte_for_byte() {
        let k = test_keys(ProtectionProfile::AeadAes128Gcm);
        let mut ours = Protector::new(&k).unwrap();
        assert!(matches!(ours, Protector::Gcm(_)));
        let (key, salt) = (&k.keys.local_master_key, &k.keys.local_master_salt);
        let mut theirs = Context::new(key, salt, k.profile, None, None).unwrap();
        let mut opener = Context::new(key, salt, k.profile, None, None).unwrap();
        let seqs: Vec<u16> = (65_520..=65_535).chain(0..20).chain([65_530, 3]).collect();
        for (i, &seq) in seqs.iter().enumerate() {
            for ssrc in [1, 0xdead_beef] {
                let p = packet(ssrc, seq, i % 2 == 0);
                let sealed = ours.protect(&p.header, &p.payload).unwrap();
                let plain = p.marshal().unwrap();
                let expected = theirs.encrypt_rtp_with_header(&plain, &p.header).unwrap();
                assert_eq!(sealed, expected, "ssrc {ssrc} seq {seq}");
                assert_eq!(
                    opener.decrypt_rtp(&sealed).unwrap(),
                    plain,
                    "ssrc {ssrc} seq {seq}"
                );
            }
        }
    }

    #[test]
    fn other_profiles_go_through_webrtc_srtp() {
        for profile in [
            ProtectionProfile::Aes128CmHmacSha1_80,
            ProtectionProfile::AeadAes256Gcm,
        ] {
            let k = test_keys(profile);
            let mut ours = Protector::new(&k).unwrap();
            assert!(matches!(ours, Protector::Other(_)));
            let (key, salt) = (&k.keys.local_master_key, &k.keys.local_master_salt);
            let mut opener = Context::new(key, salt, profile, None, None).unwrap();
            let p = packet(9, 1, true);
            let sealed = ours.protect(&p.header, &p.payload).unwrap();
            assert_eq!(opener.decrypt_rtp(&sealed).unwrap(), p.marshal().unwrap());
        }
    }

    #[test]
    fn the_rollover_count_moves_at_a_wrap_and_a_late_packet_keeps_its_own() {
        let mut r = Rollover::new(65_534);
        assert_eq!(r.count(65_534), 0);
        assert_eq!(r.count(65_535), 0);
        assert_eq!(r.count(0), 1);
        assert_eq!(r.count(65_535), 0, "resent from before the wrap");
        assert_eq!(r.count(2), 1);
        assert_eq!(r.count(1), 1, "late, after the wrap");
        assert_eq!(r.count(30_000), 1);
        assert_eq!(r.count(62_000), 1);
        assert_eq!(r.count(10), 2);
    }
}
