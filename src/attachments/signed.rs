//! Server-signed download URLs (used when S3 is not configured): the
//! attachment id and an expiry, signed with HMAC-SHA256. Pure.

use crate::auth::sign::{sign_b64url, verify_b64url};

fn payload(id: &str, expires_ms: i64) -> String {
    format!("attachment:{id}:{expires_ms}")
}

/// Path and query of a download URL valid until `expires_ms`.
pub fn download_url(key: &[u8], id: &str, expires_ms: i64) -> String {
    let sig = sign_b64url(key, payload(id, expires_ms).as_bytes());
    format!("/api/v1/attachments/{id}/content?expires={expires_ms}&signature={sig}")
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("Download link expired")]
    Expired,
    #[error("Invalid download link")]
    BadSignature,
}

pub fn verify(
    key: &[u8],
    id: &str,
    expires_ms: i64,
    signature: &str,
    now_ms: i64,
) -> Result<(), UrlError> {
    if !verify_b64url(key, payload(id, expires_ms).as_bytes(), signature) {
        return Err(UrlError::BadSignature);
    }
    if now_ms >= expires_ms {
        return Err(UrlError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_expire_and_resist_tampering() {
        let url = download_url(b"k", "att1", 1000);
        let sig = url.split("signature=").nth(1).unwrap();
        assert_eq!(verify(b"k", "att1", 1000, sig, 999), Ok(()));
        assert_eq!(
            verify(b"k", "att1", 1000, sig, 1000),
            Err(UrlError::Expired)
        );
        assert_eq!(
            verify(b"k", "att2", 1000, sig, 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            verify(b"k", "att1", 2000, sig, 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            verify(b"other", "att1", 1000, sig, 0),
            Err(UrlError::BadSignature)
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            /// A URL we hand out verifies from its own query, until it expires.
            #[test]
            fn download_urls_round_trip(
                key in any::<Vec<u8>>(),
                id in "[A-Za-z0-9-]{1,64}",
                expires in any::<i64>(),
                now in any::<i64>(),
            ) {
                let url = download_url(&key, &id, expires);
                let query = url.split_once('?').unwrap().1;
                let q: HashMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
                let e: i64 = q["expires"].parse().unwrap();
                let want = if now >= expires { Err(UrlError::Expired) } else { Ok(()) };
                prop_assert_eq!(verify(&key, &id, e, q["signature"], now), want);
            }

            #[test]
            fn any_link_parameters_are_refused_without_panicking(
                id in any::<String>(),
                expires in any::<i64>(),
                sig in any::<String>(),
                now in any::<i64>(),
            ) {
                prop_assert!(verify(b"k", &id, expires, &sig, now).is_err());
            }
        }
    }
}
