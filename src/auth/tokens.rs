//! Single-use, short-lived random tokens kept in memory: SSE stream tokens and
//! embed handoff codes. A token is redeemed at most once, and never after its
//! expiry; losing them on restart only makes clients ask for a new one.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;

/// A new random 192-bit token, base64url.
pub fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub struct OneTimeTokens<T> {
    // std Mutex: held only for a map insert/remove, never across an await.
    map: Mutex<HashMap<String, (T, i64)>>,
}

impl<T> Default for OneTimeTokens<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> OneTimeTokens<T> {
    /// A new 192-bit token for `value`, valid until `now_ms + ttl_ms`.
    pub fn issue(&self, value: T, now_ms: i64, ttl_ms: i64) -> String {
        let token = new_token();
        crate::lock::lock(&self.map).insert(token.clone(), (value, now_ms + ttl_ms));
        token
    }

    /// The token's value, if it exists and has not expired; it is consumed either way.
    pub fn redeem(&self, token: &str, now_ms: i64) -> Option<T> {
        let entry = crate::lock::lock(&self.map).remove(token);
        entry.filter(|(_, exp)| *exp > now_ms).map(|(v, _)| v)
    }

    /// Voids every token whose value matches (e.g. all of an ended session's).
    pub fn revoke_where(&self, matches: impl Fn(&T) -> bool) {
        crate::lock::lock(&self.map).retain(|_, (v, _)| !matches(v));
    }

    /// Tokens issued and not yet redeemed or swept (for `/metrics`).
    pub fn len(&self) -> usize {
        crate::lock::lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets expired tokens.
    pub fn sweep(&self, now_ms: i64) {
        crate::lock::lock(&self.map).retain(|_, (_, exp)| *exp > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_and_expire() {
        let t = OneTimeTokens::default();
        let a = t.issue("s1", 0, 100);
        assert_ne!(a, t.issue("s1", 0, 100));
        assert_eq!(t.redeem(&a, 50), Some("s1"));
        assert_eq!(t.redeem(&a, 50), None);
        let b = t.issue("s2", 0, 100);
        assert_eq!(t.redeem(&b, 100), None);
        let c = t.issue("s3", 0, 100);
        t.sweep(200);
        assert_eq!(t.redeem(&c, 0), None);
    }
}
