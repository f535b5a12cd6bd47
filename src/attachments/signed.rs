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
}
