//! One typed `Config`: defaults → optional TOML file → environment variables.
//!
//! Every key is declared once, as a row of the tables below (`config_table!`,
//! see `table.rs`): its field, type, default, environment variables (including
//! the original service's `PORT`, `HOST`, `COOKIE_SECRET`, `S3_*`), an example
//! and a one-line doc. The struct, its defaults, the file's shape, the file
//! merge, the environment read and the docs (`docs.rs`: README table,
//! `docs/configuration.md`, `systemd/chats3.toml`) all come from those rows,
//! so every key can be set both ways. Everything is validated once, at start-up
//! (`validate.rs`); an invalid value fails with an error naming the key.
//! Nothing else in the crate reads the environment.

pub mod docs;
mod table;
#[cfg(test)]
mod tests;
mod validate;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use table::{Env, Table, config_table};
pub use table::{Flags, Key};
use value::Mode;

/// A secret string whose `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// An integrator allowed to embed chats3 and to post system messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Integrator {
    pub id: String,
    pub secret: Secret,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Where signed event webhooks are POSTed (optional).
    #[serde(default)]
    pub webhook_url: Option<String>,
}

config_table! {
    /// The server's configuration (see the module docs for where it comes from).
    #[derive(Debug, Clone)]
    pub struct Config, section None, file FileConfig {
        /// Listen address (`localhost` means 127.0.0.1); behind a reverse proxy keep 127.0.0.1.
        host: IpAddr = IpAddr::from([0, 0, 0, 0]), env ["HOST"],
            eg IpAddr::from([127, 0, 0, 1]), [deploy, common];
        /// Listen port (`0` picks a free one; the chosen address is printed).
        port: u16 = 3000, env ["PORT"], eg 8080, [common];
        /// Where the store, attachments and generated secrets live (the systemd unit sets
        /// `CHATS3_DATA_DIR=/var/lib/chats3`).
        data_dir: PathBuf = PathBuf::from("./data"), env ["CHATS3_DATA_DIR"],
            eg PathBuf::from("/var/lib/chats3"), [deploy, common];
        /// Writes (messages, joins, reactions, uploads) are refused with 503 `disk_full` while
        /// the data directory's filesystem has less free space than this (64 MiB); they resume
        /// by themselves; `0` disables the check (see docs/operations-disk-full.md).
        min_free_bytes: u64 = crate::store::DEFAULT_MIN_FREE_BYTES, env ["MIN_FREE_BYTES"],
            eg 1 << 20;
        /// Admin password (at least 8 characters); when unset, one is generated at first start
        /// into `<data_dir>/admin-password` (mode 0600) and printed only to a terminal.
        admin_password: Option<Secret> = None, env ["ADMIN_PASSWORD"],
            eg Some(Secret::new("change-me-please")), [common];
        /// Key for signed download URLs (at least 32 characters); generated when unset.
        cookie_secret: Option<Secret> = None, env ["COOKIE_SECRET"],
            eg Some(Secret::new("at-least-32-characters-of-randomness"));
        /// `production` turns on `Secure; SameSite=None; Partitioned` cookies and HSTS
        /// (`CHATS3_ENV` wins over `NODE_ENV`).
        #[key = "env"]
        production: bool as Mode = false, env ["CHATS3_ENV", "NODE_ENV"], eg true,
            [deploy, common];
        /// Public base URL (e.g. `https://chat.example.com`) for links handed out, and the one
        /// origin besides paths a message's `url` may point at; unset: derived from `Host` in
        /// development, paths in production.
        public_url: Option<String> = None, env ["PUBLIC_URL"],
            eg Some("https://chat.example.com".into()), [common];
        /// IPs or CIDRs whose `X-Forwarded-For` is believed (comma-separated in the environment).
        trusted_proxies: Vec<IpNet> = Vec::new(), env ["TRUSTED_PROXIES"],
            eg vec![IpAddr::from([127, 0, 0, 1]).into(), IpAddr::from(Ipv6Addr::LOCALHOST).into()],
            [deploy, common];
        /// Requests per minute per client IP (`0` disables).
        rate_limit_per_min: u32 = 100, env ["RATE_LIMIT_PER_MIN"], eg 600;
        /// Admin requests per minute per client IP (`0` disables).
        admin_rate_limit_per_min: u32 = 10, env ["ADMIN_RATE_LIMIT_PER_MIN"], eg 30;
        /// Active participants per conversation.
        max_participants: usize = 50, env ["MAX_PARTICIPANTS"], eg 12;
        /// Longest message body, in characters.
        max_message_chars: usize = 10_000, env ["MAX_MESSAGE_CHARS"], eg 2000;
        /// Longest display name, in characters.
        max_display_name_chars: usize = 50, env ["MAX_DISPLAY_NAME_CHARS"], eg 40;
        /// Largest request body other than an upload, in bytes.
        max_body_bytes: usize = 256 * 1024, env ["MAX_BODY_BYTES"], eg 65_536;
        /// Largest attachment, in bytes.
        max_upload_bytes: u64 = 10 * 1024 * 1024, env ["MAX_UPLOAD_BYTES"], eg 1 << 20;
        /// Idle session lifetime in seconds (60 s to 10 years).
        session_ttl_secs: i64 = 24 * 3600, env ["SESSION_TTL_SECS"], eg 3600;
        /// Oldest embed ticket accepted, in seconds (0 to 86400).
        ticket_max_age_secs: i64 = 60, env ["TICKET_MAX_AGE_SECS"], eg 120;
        /// Tolerance for embed ticket times, in seconds (0 to 300).
        ticket_clock_skew_secs: i64 = 30, env ["TICKET_CLOCK_SKEW_SECS"], eg 10;
        /// Seconds between heartbeat comments on event streams (1 to 15).
        heartbeat_secs: u64 = 15, env ["HEARTBEAT_SECS"], eg 10;
        /// STUN/TURN servers for calls, as RTCIceServer objects (JSON in the environment).
        ice_servers: serde_json::Value = serde_json::Value::Array(Vec::new()),
            env ["ICE_SERVERS"],
            eg serde_json::json!([
                { "urls": "stun:stun.example.com:3478" },
                { "urls": "turn:turn.example.com:3478", "username": "u", "credential": "p" },
            ]),
            [common];
        /// Bearer token that unlocks `/metrics` on the main listener.
        metrics_token: Option<Secret> = None, env ["METRICS_TOKEN"],
            eg Some(Secret::new("a-long-random-token"));
        /// Separate plain-HTTP listener serving `/metrics` without a token.
        metrics_addr: Option<SocketAddr> = None, env ["METRICS_ADDR"],
            eg Some(SocketAddr::from(([127, 0, 0, 1], 9464))), [deploy];
        /// Integrators allowed to embed chats3 and post system messages: `id`, `secret` (at
        /// least 16 characters), `allowedOrigins`, `webhookUrl` (a JSON array in the environment).
        integrators: Vec<Integrator> = Vec::new(), env ["INTEGRATORS"],
            eg vec![Integrator {
                id: "acme".into(),
                secret: Secret::new("a-shared-secret-of-16-or-more-characters"),
                allowed_origins: vec!["https://app.acme.com".into(), "https://*.acme.com".into()],
                webhook_url: Some("https://app.acme.com/chats3/webhook".into()),
            }],
            [common];
    }
    flat media in MediaFile {
        /// Largest call kept as a peer-to-peer mesh; a larger one goes through the relay.
        mesh_max: usize = 4, env ["MESH_MAX"], eg 6;
        /// In relay mode, forward video of only this many most recent speakers (`0`: everyone's);
        /// the others show their avatar.
        last_n: usize = 9, env ["LAST_N"], eg 3;
        /// The relay's one UDP socket, on a specific local IP (not 0.0.0.0); unset: one
        /// ephemeral port per call participant.
        relay_udp: Option<SocketAddr> = None, env ["RELAY_UDP"],
            eg Some(SocketAddr::from(([10, 0, 0, 5], 3478)));
        /// Address the relay announces instead of its local one (a VM behind 1:1 NAT).
        relay_public_ip: Option<String> = None, env ["RELAY_PUBLIC_IP"],
            eg Some("203.0.113.7".into());
    }
    group
    /// PEM certificate chain and private key: serve HTTPS directly.
    tls {
        /// PEM certificate chain: serve HTTPS directly, reloaded on SIGHUP (with `tls_key_file`).
        tls_cert_file: PathBuf => 0, env ["TLS_CERT_FILE"],
            eg PathBuf::from("/etc/chats3/fullchain.pem");
        /// PEM private key of `tls_cert_file`.
        tls_key_file: PathBuf => 1, env ["TLS_KEY_FILE"],
            eg PathBuf::from("/etc/chats3/privkey.pem");
    }
    nested
    /// What one client may make the server hold (`[limits]`).
    limits: Limits;
    optional
    /// The S3 mirror (`[s3]`), on when a bucket is configured.
    s3: S3Config;
    optional
    /// Cluster mode on NATS JetStream (`[cluster]`), on when `nats_url` is set.
    cluster: ClusterConfig;
}

config_table! {
    /// Bounds on what clients can make the server hold: TOML table `[limits]`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Limits, section Some("limits"), file LimitsFile {
        /// Open event streams per session; one more is refused with 429 (the page retries with
        /// backoff).
        streams_per_session: usize = 4, env ["STREAMS_PER_SESSION"], eg 2;
        /// Open event streams per client IP (after `trusted_proxies`); one more is refused with
        /// 429.
        streams_per_ip: usize = 200, env ["STREAMS_PER_IP"], eg 50;
        /// Bytes of events a stream may fall behind its conversation before it is closed
        /// (`slow-consumer`); the client catches up from the store when it reconnects. A
        /// conversation holds at most twice this of events some stream has not taken yet.
        stream_queue_bytes: u64 = 1024 * 1024, env ["STREAM_QUEUE_BYTES"], eg 262_144;
        /// Seconds a connection may leave written bytes unread before it is closed.
        write_stall_secs: u64 = 30, env ["WRITE_STALL_SECS"], eg 10;
        /// Seconds a connection may go without reading or writing a byte before it is closed
        /// (event streams send heartbeats; must exceed `heartbeat_secs`).
        idle_secs: u64 = 120, env ["IDLE_SECS"], eg 60;
        /// Largest `data` of a relayed signaling event, in bytes (413 beyond); typing and read
        /// receipts are at most 512 bytes with a fixed shape.
        signaling_max_bytes: usize = 64 * 1024, env ["SIGNALING_MAX_BYTES"], eg 16_384;
        /// Signaling posts (relayed events and relay media signals) per second per session
        /// (sustained); bursts of ten times that pass.
        signaling_per_sec: u32 = 20, env ["SIGNALING_PER_SEC"], eg 5;
        /// Open connections; further ones wait in the kernel's backlog (logged, counted).
        max_connections: usize = 10_000, env ["MAX_CONNECTIONS"], eg 1000;
        /// Seconds a request body may pause between chunks before the request gets 408 (slow
        /// uploads are cut off).
        body_timeout_secs: u64 = 30, env ["BODY_TIMEOUT_SECS"], eg 10;
        /// Seconds a relay connection may take to connect (or whose ICE fails) before it is closed.
        relay_connect_secs: u64 = 30, env ["RELAY_CONNECT_SECS"], eg 10;
        /// Relay connections per conversation (`0`: `max_participants`); a relay connection also
        /// requires `call-join` first.
        relay_per_conversation: usize = 0, env ["RELAY_PER_CONVERSATION"], eg 8;
        /// Sessions a conversation keeps (within `session_ttl_secs`); a join by code that would
        /// add one more is refused with 403 `sessions`. An embedded user keeps at most 8 per
        /// conversation: a 9th ends the least recently active one.
        sessions_per_conversation: usize = 1000, env ["SESSIONS_PER_CONVERSATION"], eg 200;
        /// Bytes of attachments a conversation keeps (1 GiB); an upload beyond is refused with 413
        /// `conversation_quota`.
        attachment_bytes_per_conversation: u64 = 1 << 30,
            env ["ATTACHMENT_BYTES_PER_CONVERSATION"], eg 100 << 20;
    }
}

config_table! {
    /// S3 settings: TOML table `[s3]`; sync is enabled when a bucket is configured.
    #[derive(Debug, Clone)]
    pub struct S3Config, section Some("s3"), file S3File {
        /// Bucket the store is mirrored to; setting any `[s3]` key needs it.
        bucket: String = String::new(), env ["S3_BUCKET"], eg "chats3".to_string(), [common];
        /// Region (signs the requests).
        region: String = "us-east-1".into(), env ["S3_REGION"], eg "eu-central-1".to_string();
        /// Endpoint of an S3-compatible server (MinIO, Garage, …); unset: AWS.
        endpoint: Option<String> = None, env ["S3_ENDPOINT"],
            eg Some("https://s3.example.com".into());
        /// Access key id; without it (and `secret_key`) the AWS default credential chain is used.
        access_key: Option<String> = None, env ["S3_ACCESS_KEY"], eg Some("AKIAEXAMPLE".into());
        /// Secret access key of `access_key`.
        secret_key: Option<Secret> = None, env ["S3_SECRET_KEY"],
            eg Some(Secret::new("example-secret-key"));
        /// Path-style URLs (`endpoint/bucket/key`); always on with an `endpoint`.
        force_path_style: bool = false, env ["S3_FORCE_PATH_STYLE"], eg true;
    }
}

config_table! {
    /// Cluster mode (`[cluster]`, see docs/cluster.md): several nodes share one deployment
    /// through NATS JetStream; unset, the node serves alone from its own store.
    #[derive(Debug, Clone)]
    pub struct ClusterConfig, section Some("cluster"), file ClusterFile {
        /// NATS servers (comma-separated `nats://host:port`; `tls://` for TLS); setting any
        /// `[cluster]` key needs it.
        nats_url: String = String::new(), env ["NATS_URL"],
            eg "nats://10.0.0.1:4222,nats://10.0.0.2:4222".to_string(), [deploy];
        /// This node's name in the cluster (letters, digits, `-`, `_`); unset: the host name.
        node_id: Option<String> = None, env ["NODE_ID"], eg Some("chat-1".into());
        /// NATS credentials file (`.creds`, from `nsc`); unset: no authentication.
        nats_creds: Option<PathBuf> = None, env ["NATS_CREDS"],
            eg Some(PathBuf::from("/etc/chats3/nats.creds"));
        /// Replicas of each JetStream stream and bucket chats3 creates (1, 3 or 5; at most the
        /// number of NATS servers).
        replicas: usize = 1, env ["NATS_REPLICAS"], eg 3;
        /// UDP address of the relay's QUIC trunk to other nodes (the cascade: one call's relay
        /// spans nodes); unset: each node's relay serves its own participants only.
        trunk_bind: Option<SocketAddr> = None, env ["TRUNK_BIND"],
            eg Some(SocketAddr::from(([10, 0, 0, 1], 7000)));
        /// Trunk address other nodes dial (found through NATS); unset: `trunk_bind`.
        trunk_addr: Option<SocketAddr> = None, env ["TRUNK_ADDR"],
            eg Some(SocketAddr::from(([192, 0, 2, 1], 7000)));
        /// PEM certificate of this node for trunks, signed by `cluster_ca` (`chats3 cluster-cert`
        /// makes a development set).
        cluster_cert: Option<PathBuf> = None, env ["CLUSTER_CERT"],
            eg Some(PathBuf::from("/etc/chats3/cluster/node.pem"));
        /// PEM private key of `cluster_cert`.
        cluster_key: Option<PathBuf> = None, env ["CLUSTER_KEY"],
            eg Some(PathBuf::from("/etc/chats3/cluster/node.key"));
        /// PEM certificate of the cluster CA: trunks accept only peers it signed.
        cluster_ca: Option<PathBuf> = None, env ["CLUSTER_CA"],
            eg Some(PathBuf::from("/etc/chats3/cluster/ca.pem"));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(file, &env)
    }

    /// Pure variant of [`Config::load`] used by tests: the environment is passed in.
    pub fn from_sources(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut cfg = Config::default();
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("CHATS3_CONFIG").map(PathBuf::from));
        if let Some(path) = path {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let fc: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            cfg.apply_file(fc)?;
        }
        cfg.apply_env(&Env(env))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every key, in table order (top level, `[media]`, TLS, `[limits]`, `[s3]`).
    pub fn keys() -> Vec<Key> {
        <Config as Table>::keys(|c| Some(c))
    }

    pub fn integrator(&self, id: &str) -> Option<&Integrator> {
        self.integrators.iter().find(|i| i.id == id)
    }
}
