//! Checks a loaded configuration: ranges, lengths and rules across keys.
//! Every refusal names the key both ways (`session_ttl_secs (SESSION_TTL_SECS)`).
//!
//! Owns the rules only; reading values is `table.rs` and `value.rs`.

use super::{Config, ConfigError, Limits, invalid};

/// The longest idle session lifetime accepted: ten years.
const MAX_SESSION_TTL_SECS: i64 = 10 * 365 * 24 * 3600;

/// A refused value of the key at `path` (`limits.idle_secs`), naming both
/// spellings: `limits.idle_secs (IDLE_SECS)`.
pub(super) fn refused(path: &str, reason: impl Into<String>) -> ConfigError {
    let keys = Config::keys();
    let key = keys.iter().find(|k| k.path() == path);
    debug_assert!(key.is_some(), "{path} is not a key of the table");
    match key {
        Some(k) => invalid(&format!("{path} ({})", k.env.join(", ")), reason),
        None => invalid(path, reason),
    }
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate()?;
        if self.limits.idle_secs <= self.heartbeat_secs {
            return Err(refused(
                "limits.idle_secs",
                "must exceed heartbeat_secs, or idle event streams are cut between heartbeats",
            ));
        }
        if let Some(s) = &self.cookie_secret
            && s.expose().len() < 32
        {
            return Err(refused("cookie_secret", "must be at least 32 characters"));
        }
        if let Some(p) = &self.admin_password
            && p.expose().len() < 8
        {
            return Err(refused("admin_password", "must be at least 8 characters"));
        }
        for (i, integ) in self.integrators.iter().enumerate() {
            let key = format!("INTEGRATORS[{i}]");
            if integ.id.trim().is_empty() {
                return Err(invalid(&key, "id must not be empty"));
            }
            if let Some(first) = self.integrators[..i].iter().position(|o| o.id == integ.id) {
                return Err(invalid(
                    &format!("{key}.id"),
                    format!(
                        "\"{}\" is already the id of INTEGRATORS[{first}]; each integrator needs its own",
                        integ.id
                    ),
                ));
            }
            if integ.secret.expose().len() < 16 {
                return Err(invalid(
                    &key,
                    "secret must be at least 16 characters; generate one with `chats3 secret` \
                     or `openssl rand -hex 32` and give the new secret to that integrator",
                ));
            }
            if let Some(u) = &integ.webhook_url
                && !(u.starts_with("https://") || u.starts_with("http://"))
            {
                return Err(invalid(
                    &format!("{key}.webhookUrl"),
                    "must be an http(s) URL",
                ));
            }
            for o in &integ.allowed_origins {
                crate::auth::origin::OriginPattern::parse(o)
                    .map_err(|e| invalid(&format!("{key}.allowedOrigins"), e.to_string()))?;
            }
        }
        if self.max_participants == 0 {
            return Err(refused("max_participants", "must be at least 1"));
        }
        if self.max_message_chars == 0 {
            return Err(refused("max_message_chars", "must be at least 1"));
        }
        // Upper bounds keep the millisecond forms (`secs * 1000`) in range.
        if !(60..=MAX_SESSION_TTL_SECS).contains(&self.session_ttl_secs) {
            return Err(refused(
                "session_ttl_secs",
                format!("must be between 60 and {MAX_SESSION_TTL_SECS} (10 years)"),
            ));
        }
        if !(0..=86_400).contains(&self.ticket_max_age_secs) {
            return Err(refused(
                "ticket_max_age_secs",
                "must be between 0 and 86400",
            ));
        }
        if !(0..=300).contains(&self.ticket_clock_skew_secs) {
            return Err(refused(
                "ticket_clock_skew_secs",
                "must be between 0 and 300",
            ));
        }
        if !self.ice_servers.is_array() {
            return Err(refused("ice_servers", "must be an array"));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(refused("public_url", "must start with http:// or https://"));
        }
        if !(1..=15).contains(&self.heartbeat_secs) {
            return Err(refused("heartbeat_secs", "must be between 1 and 15"));
        }
        if self.mesh_max < 2 {
            return Err(refused("media.mesh_max", "must be at least 2"));
        }
        if let Some(c) = &self.cluster {
            if c.nats_url.trim().is_empty() {
                return Err(refused(
                    "cluster.nats_url",
                    "is required when any [cluster] key is set",
                ));
            }
            if !matches!(c.replicas, 1 | 3 | 5) {
                return Err(refused("cluster.replicas", "must be 1, 3 or 5"));
            }
            let tls = [&c.cluster_cert, &c.cluster_key, &c.cluster_ca];
            match c.trunk_bind {
                Some(_) if tls.iter().any(|f| f.is_none()) => {
                    return Err(refused(
                        "cluster.trunk_bind",
                        "needs cluster_cert, cluster_key and cluster_ca",
                    ));
                }
                Some(bind) if bind.ip().is_unspecified() && c.trunk_addr.is_none() => {
                    return Err(refused(
                        "cluster.trunk_addr",
                        "is required when trunk_bind is an unspecified address",
                    ));
                }
                None if c.trunk_addr.is_some() || tls.iter().any(|f| f.is_some()) => {
                    return Err(refused(
                        "cluster.trunk_bind",
                        "is required when trunk_addr or a cluster certificate is set",
                    ));
                }
                _ => {}
            }
            if c.trunk_addr
                .is_some_and(|a| a.ip().is_unspecified() || a.port() == 0)
            {
                return Err(refused(
                    "cluster.trunk_addr",
                    "must name a reachable IP and port",
                ));
            }
            if let Some(n) = &c.node_id
                && !crate::cluster::valid_node_id(n)
            {
                return Err(refused(
                    "cluster.node_id",
                    "must be 1 to 64 letters, digits, '-' or '_'",
                ));
            }
        }
        if let Some(s3) = &self.s3
            && s3.bucket.trim().is_empty()
        {
            return Err(refused(
                "s3.bucket",
                "must be set when any other S3 setting is",
            ));
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("streams_per_session", self.streams_per_session as u64),
            ("streams_per_ip", self.streams_per_ip as u64),
            ("stream_queue_bytes", self.stream_queue_bytes),
            ("write_stall_secs", self.write_stall_secs),
            ("idle_secs", self.idle_secs),
            ("signaling_max_bytes", self.signaling_max_bytes as u64),
            ("signaling_per_sec", u64::from(self.signaling_per_sec)),
            ("max_connections", self.max_connections as u64),
            ("body_timeout_secs", self.body_timeout_secs),
            ("relay_connect_secs", self.relay_connect_secs),
            (
                "attachment_bytes_per_conversation",
                self.attachment_bytes_per_conversation,
            ),
            (
                "sessions_per_conversation",
                self.sessions_per_conversation as u64,
            ),
        ];
        match positive.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(refused(&format!("limits.{key}"), "must be at least 1")),
            None => Ok(()),
        }
    }
}
