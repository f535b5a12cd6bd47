//! Single-use tokens shared by every node (SSE stream tokens, embed handoff
//! codes): in cluster mode a token issued by one node is redeemed on whichever
//! node the load balancer picks next. Kept in the bucket `chats3_tokens`
//! (forgotten after [`TTL`]); a redemption deletes the entry at the revision
//! it read, so exactly one redemption succeeds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Cluster, keys};
use crate::store::StoreError;

/// Longest a token is kept (every token's own lifetime is shorter).
pub const TTL: Duration = Duration::from_secs(600);

#[derive(Serialize, Deserialize)]
struct Entry {
    /// Expiry, epoch ms.
    exp: i64,
    value: serde_json::Value,
}

/// A new 192-bit token of `kind` for `value`, valid until `exp_ms`.
pub async fn issue(
    c: &Cluster,
    kind: &str,
    value: serde_json::Value,
    exp_ms: i64,
) -> Result<String, StoreError> {
    let kv = &c.resources().await?.tokens;
    c.connected()?;
    let token = crate::auth::tokens::new_token();
    let entry = serde_json::to_vec(&Entry { exp: exp_ms, value })
        .map_err(|_| StoreError::Corrupt("token entry"))?;
    kv.create(keys::token_key(kind, &token), entry.into())
        .await
        .map_err(|e| c.unavailable("NATS did not take the token", e))?;
    Ok(token)
}

/// The value of an unexpired token of `kind`, consumed by this call (`None`
/// for an unknown, expired, malformed or already redeemed token).
pub async fn redeem(
    c: &Cluster,
    kind: &str,
    token: &str,
    now_ms: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    if !keys::valid_token(token) {
        return Ok(None);
    }
    let kv = &c.resources().await?.tokens;
    c.connected()?;
    let key = keys::token_key(kind, token);
    let Some(entry) = kv
        .entry(key.clone())
        .await
        .map_err(|e| c.unavailable("cannot read a token", e))?
    else {
        return Ok(None);
    };
    if entry.operation != async_nats::jetstream::kv::Operation::Put
        || kv
            .delete_expect_revision(&key, Some(entry.revision))
            .await
            .is_err()
    {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<Entry>(&entry.value)
        .ok()
        .filter(|e| e.exp > now_ms)
        .map(|e| e.value))
}
