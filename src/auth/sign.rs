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

/// Constant-time string equality, the length of neither told by the time
/// taken: the SHA-256 digests are compared (passwords and tokens are secrets
/// of any length).
pub fn ct_eq_str(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (da, db) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
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

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn sign_then_verify_round_trips(key in any::<Vec<u8>>(), msg in any::<Vec<u8>>()) {
                let s = sign_b64url(&key, &msg);
                prop_assert!(verify_b64url(&key, &msg, &s));
                let padded = format!(" {s}== ");
                prop_assert!(verify_b64url(&key, &msg, &padded));
                let standard = s.replace('-', "+").replace('_', "/");
                prop_assert!(verify_b64url(&key, &msg, &standard));
            }

            #[test]
            fn only_the_signature_itself_verifies(
                key in any::<Vec<u8>>(),
                msg in any::<Vec<u8>>(),
                sig in prop_oneof![any::<String>(), "[A-Za-z0-9_+/=-]{0,48}"],
            ) {
                let ok = verify_b64url(&key, &msg, &sig);
                let normalized = sig.trim().trim_end_matches('=').replace('+', "-").replace('/', "_");
                prop_assert_eq!(ok, normalized == sign_b64url(&key, &msg));
            }

            #[test]
            fn a_changed_signature_character_is_refused(
                key in any::<Vec<u8>>(),
                msg in any::<Vec<u8>>(),
                at in any::<prop::sample::Index>(),
                to in any::<char>(),
            ) {
                let mut s: Vec<char> = sign_b64url(&key, &msg).chars().collect();
                let i = at.index(s.len());
                prop_assume!(s[i] != to && !(s[i] == '-' && to == '+') && !(s[i] == '_' && to == '/'));
                s[i] = to;
                let s: String = s.into_iter().collect();
                prop_assert!(!verify_b64url(&key, &msg, &s));
            }

            #[test]
            fn ct_eq_str_is_string_equality(a in any::<String>(), b in any::<String>()) {
                prop_assert_eq!(ct_eq_str(&a, &b), a == b);
                prop_assert!(ct_eq_str(&a, &a));
            }
        }
    }
}
