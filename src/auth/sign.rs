//! HMAC-SHA256 signing and constant-time verification, base64url encoded as the
//! original service does (`digest('base64url')`, no padding).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Raw HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// base64url (no padding) HMAC-SHA256 signature.
pub fn sign_b64url(key: &[u8], msg: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256(key, msg))
}

/// Verifies a base64url signature in constant time. Trailing `=` padding and
/// standard-alphabet characters (`+`, `/`) are tolerated for compatibility.
pub fn verify_b64url(key: &[u8], msg: &[u8], signature: &str) -> bool {
    let normalized: String = signature
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let Ok(given) = URL_SAFE_NO_PAD.decode(normalized.as_bytes()) else {
        return false;
    };
    let expected = hmac_sha256(key, msg);
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
}

/// Constant-time string equality (length is not secret).
pub fn ct_eq_str(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_round_trip_and_tamper() {
        let s = sign_b64url(b"k", b"payload");
        assert!(verify_b64url(b"k", b"payload", &s));
        assert!(verify_b64url(b"k", b"payload", &format!("{s}=")));
        assert!(!verify_b64url(b"k", b"payload!", &s));
        assert!(!verify_b64url(b"other", b"payload", &s));
        assert!(!verify_b64url(b"k", b"payload", "not base64 !!"));
        assert!(!verify_b64url(b"k", b"payload", ""));
    }
}
