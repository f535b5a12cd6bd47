//! One typed `Config`: defaults → optional TOML file → environment variables.
//!
//! Accepts the original service's variables (`PORT`, `HOST`, `COOKIE_SECRET`,
//! `S3_*`) plus chats3's own. Everything is validated here, once, at start-up;
//! an invalid value fails with an error naming the key. Nothing else in the
//! crate reads the environment.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

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

/// S3 settings; sync is enabled when a bucket is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<Secret>,
    #[serde(default)]
    pub force_path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Writes are refused (503) while the data directory's filesystem has less
    /// than this many bytes available (0: no threshold). See `store::space`.
    pub min_free_bytes: u64,
    pub admin_password: Option<Secret>,
    pub cookie_secret: Option<Secret>,
    pub integrators: Vec<Integrator>,
    pub rate_limit_per_min: u32,
    pub admin_rate_limit_per_min: u32,
    pub max_participants: usize,
    pub production: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub max_message_chars: usize,
    pub max_display_name_chars: usize,
    pub max_body_bytes: usize,
    pub max_upload_bytes: u64,
    pub ticket_max_age_secs: i64,
    pub ticket_clock_skew_secs: i64,
    pub session_ttl_secs: i64,
    pub ice_servers: serde_json::Value,
    pub mesh_max: usize,
    /// In relay mode, forward video of only this many most recent speakers
    /// (`[media] last_n`, `LAST_N`); 0 forwards everyone's.
    pub last_n: usize,
    /// The relay's single UDP socket (`[media] relay_udp`, `RELAY_UDP`); a
    /// specific local IP. `None`: one ephemeral port per call participant.
    pub relay_udp: Option<std::net::SocketAddr>,
    /// Address the relay announces instead of its local one (1:1 NAT).
    pub relay_public_ip: Option<String>,
    /// Seconds between SSE heartbeat comments (at most 15).
    pub heartbeat_secs: u64,
    /// Public base URL (e.g. `https://chat.example.com`) for links handed out; derived from `Host` when unset.
    pub public_url: Option<String>,
    /// PEM certificate chain and private key: serve HTTPS directly.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bearer token that unlocks `/metrics` on the main listener.
    pub metrics_token: Option<Secret>,
    /// Separate plain-HTTP listener for `/metrics` (e.g. `127.0.0.1:9100`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub s3: Option<S3Config>,
    /// What one client may make the server hold (`[limits]`).
    pub limits: Limits,
}

/// Bounds on what clients can make the server hold. TOML table `[limits]`;
/// each key also from the environment (upper case, e.g. `STREAMS_PER_SESSION`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open event streams per session; one more is refused with 429.
    pub streams_per_session: usize,
    /// Open event streams per client IP (after `trusted_proxies`); one more is refused with 429.
    pub streams_per_ip: usize,
    /// Bytes of events a stream may fall behind its conversation before it is closed
    /// (`slow-consumer`); the client catches up from the store when it reconnects.
    pub stream_queue_bytes: u64,
    /// Seconds a connection may leave written bytes unread before it is closed.
    pub write_stall_secs: u64,
    /// Seconds a connection may go without reading or writing a byte (event
    /// streams send heartbeats, so only idle keep-alive connections hit it).
    pub idle_secs: u64,
    /// Largest `data` of a relayed signaling event, in bytes (413 beyond).
    pub signaling_max_bytes: usize,
    /// Signaling posts per second per session (sustained); bursts of ten times that pass.
    pub signaling_per_sec: u32,
    /// Open connections; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Seconds a request body may pause between chunks (slow uploads are cut off).
    pub body_timeout_secs: u64,
    /// Seconds a relay connection may take to connect before it is closed.
    pub relay_connect_secs: u64,
    /// Relay connections per conversation (0: `max_participants`).
    pub relay_per_conversation: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            streams_per_session: 4,
            streams_per_ip: 200,
            stream_queue_bytes: 1024 * 1024,
            write_stall_secs: 30,
            idle_secs: 120,
            signaling_max_bytes: 64 * 1024,
            signaling_per_sec: 20,
            max_connections: 10_000,
            body_timeout_secs: 30,
            relay_connect_secs: 30,
            relay_per_conversation: 0,
        }
    }
}

impl Limits {
    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        macro_rules! from_env {
            ($($field:ident => $key:literal),* $(,)?) => {$(
                if let Some(v) = get($key) {
                    self.$field = parse_num($key, v)?;
                }
            )*};
        }
        from_env!(
            streams_per_session => "STREAMS_PER_SESSION",
            streams_per_ip => "STREAMS_PER_IP",
            stream_queue_bytes => "STREAM_QUEUE_BYTES",
            write_stall_secs => "WRITE_STALL_SECS",
            idle_secs => "IDLE_SECS",
            signaling_max_bytes => "SIGNALING_MAX_BYTES",
            signaling_per_sec => "SIGNALING_PER_SEC",
            max_connections => "MAX_CONNECTIONS",
            body_timeout_secs => "BODY_TIMEOUT_SECS",
            relay_connect_secs => "RELAY_CONNECT_SECS",
            relay_per_conversation => "RELAY_PER_CONVERSATION",
        );
        Ok(())
    }

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
        ];
        match positive.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(invalid(&format!("limits.{key}"), "must be at least 1")),
            None => Ok(()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            data_dir: PathBuf::from("./data"),
            min_free_bytes: crate::store::DEFAULT_MIN_FREE_BYTES,
            admin_password: None,
            cookie_secret: None,
            integrators: Vec::new(),
            rate_limit_per_min: 100,
            admin_rate_limit_per_min: 10,
            max_participants: 50,
            production: false,
            trusted_proxies: Vec::new(),
            max_message_chars: 10_000,
            max_display_name_chars: 50,
            max_body_bytes: 256 * 1024,
            max_upload_bytes: 10 * 1024 * 1024,
            ticket_max_age_secs: 60,
            ticket_clock_skew_secs: 30,
            session_ttl_secs: 24 * 3600,
            ice_servers: serde_json::Value::Array(Vec::new()),
            mesh_max: 4,
            last_n: 9,
            relay_udp: None,
            relay_public_ip: None,
            heartbeat_secs: 15,
            public_url: None,
            tls: None,
            metrics_token: None,
            metrics_addr: None,
            s3: None,
            limits: Limits::default(),
        }
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

/// The longest idle session lifetime accepted: ten years.
const MAX_SESSION_TTL_SECS: i64 = 10 * 365 * 24 * 3600;

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The TOML file: every key optional, unknown keys refused (a typo must not be silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    min_free_bytes: Option<u64>,
    admin_password: Option<Secret>,
    cookie_secret: Option<Secret>,
    #[serde(default)]
    integrators: Option<Vec<Integrator>>,
    rate_limit_per_min: Option<u32>,
    admin_rate_limit_per_min: Option<u32>,
    max_participants: Option<usize>,
    env: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    max_message_chars: Option<usize>,
    max_display_name_chars: Option<usize>,
    max_body_bytes: Option<usize>,
    max_upload_bytes: Option<u64>,
    ticket_max_age_secs: Option<i64>,
    ticket_clock_skew_secs: Option<i64>,
    session_ttl_secs: Option<i64>,
    ice_servers: Option<serde_json::Value>,
    heartbeat_secs: Option<u64>,
    public_url: Option<String>,
    tls_cert_file: Option<PathBuf>,
    metrics_token: Option<Secret>,
    metrics_addr: Option<String>,
    tls_key_file: Option<PathBuf>,
    media: Option<MediaFileConfig>,
    s3: Option<S3Config>,
    limits: Option<Limits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaFileConfig {
    mesh_max: Option<usize>,
    last_n: Option<usize>,
    relay_udp: Option<std::net::SocketAddr>,
    relay_public_ip: Option<String>,
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
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_file(&mut self, fc: FileConfig) -> Result<(), ConfigError> {
        if let Some(h) = fc.host {
            self.host = parse_host("host", &h)?;
        }
        set(&mut self.port, fc.port);
        set(&mut self.data_dir, fc.data_dir);
        set(&mut self.min_free_bytes, fc.min_free_bytes);
        if fc.admin_password.is_some() {
            self.admin_password = fc.admin_password;
        }
        if fc.cookie_secret.is_some() {
            self.cookie_secret = fc.cookie_secret;
        }
        set(&mut self.integrators, fc.integrators);
        set(&mut self.rate_limit_per_min, fc.rate_limit_per_min);
        set(
            &mut self.admin_rate_limit_per_min,
            fc.admin_rate_limit_per_min,
        );
        set(&mut self.max_participants, fc.max_participants);
        if let Some(e) = fc.env {
            self.production = e == "production";
        }
        if let Some(list) = fc.trusted_proxies {
            self.trusted_proxies =
                parse_proxies("trusted_proxies", list.iter().map(String::as_str))?;
        }
        set(&mut self.max_message_chars, fc.max_message_chars);
        set(&mut self.max_display_name_chars, fc.max_display_name_chars);
        set(&mut self.max_body_bytes, fc.max_body_bytes);
        set(&mut self.max_upload_bytes, fc.max_upload_bytes);
        set(&mut self.ticket_max_age_secs, fc.ticket_max_age_secs);
        set(&mut self.ticket_clock_skew_secs, fc.ticket_clock_skew_secs);
        set(&mut self.session_ttl_secs, fc.session_ttl_secs);
        set(&mut self.ice_servers, fc.ice_servers);
        set(&mut self.heartbeat_secs, fc.heartbeat_secs);
        if fc.public_url.is_some() {
            self.public_url = fc.public_url;
        }
        if fc.metrics_token.is_some() {
            self.metrics_token = fc.metrics_token;
        }
        if let Some(a) = fc.metrics_addr {
            self.metrics_addr = Some(
                a.parse()
                    .map_err(|_| invalid("metrics_addr", format!("{a:?} is not host:port")))?,
            );
        }
        match (fc.tls_cert_file, fc.tls_key_file) {
            (Some(c), Some(k)) => self.tls = Some((c, k)),
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "tls_cert_file",
                    "tls_cert_file and tls_key_file go together",
                ));
            }
        }
        if let Some(l) = fc.limits {
            self.limits = l;
        }
        if let Some(m) = fc.media {
            set(&mut self.mesh_max, m.mesh_max);
            set(&mut self.last_n, m.last_n);
            if m.relay_udp.is_some() {
                self.relay_udp = m.relay_udp;
            }
            if m.relay_public_ip.is_some() {
                self.relay_public_ip = m.relay_public_ip;
            }
        }
        if fc.s3.is_some() {
            self.s3 = fc.s3;
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        self.limits.apply_env(env)?;
        if let Some(v) = get("HOST") {
            self.host = parse_host("HOST", v)?;
        }
        if let Some(v) = get("PORT") {
            self.port = parse_num("PORT", v)?;
        }
        if let Some(v) = get("CHATS3_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("MIN_FREE_BYTES") {
            self.min_free_bytes = parse_num("MIN_FREE_BYTES", v)?;
        }
        if let Some(v) = get("ADMIN_PASSWORD") {
            self.admin_password = Some(Secret::new(v));
        }
        if let Some(v) = get("COOKIE_SECRET") {
            self.cookie_secret = Some(Secret::new(v));
        }
        if let Some(v) = get("INTEGRATORS") {
            self.integrators = serde_json::from_str(v).map_err(|e| {
                invalid(
                    "INTEGRATORS",
                    format!("expected a JSON array of {{id, secret, allowedOrigins}}: {e}"),
                )
            })?;
        }
        if let Some(v) = get("RATE_LIMIT_PER_MIN") {
            self.rate_limit_per_min = parse_num("RATE_LIMIT_PER_MIN", v)?;
        }
        if let Some(v) = get("ADMIN_RATE_LIMIT_PER_MIN") {
            self.admin_rate_limit_per_min = parse_num("ADMIN_RATE_LIMIT_PER_MIN", v)?;
        }
        if let Some(v) = get("MAX_PARTICIPANTS") {
            self.max_participants = parse_num("MAX_PARTICIPANTS", v)?;
        }
        if let Some(v) = get("MAX_MESSAGE_CHARS") {
            self.max_message_chars = parse_num("MAX_MESSAGE_CHARS", v)?;
        }
        if let Some(v) = get("MAX_UPLOAD_BYTES") {
            self.max_upload_bytes = parse_num("MAX_UPLOAD_BYTES", v)?;
        }
        if let Some(v) = get("SESSION_TTL_SECS") {
            self.session_ttl_secs = parse_num("SESSION_TTL_SECS", v)?;
        }
        if let Some(v) = get("TICKET_CLOCK_SKEW_SECS") {
            self.ticket_clock_skew_secs = parse_num("TICKET_CLOCK_SKEW_SECS", v)?;
        }
        // CHATS3_ENV wins over NODE_ENV when both are set.
        if let Some(v) = get("CHATS3_ENV").or_else(|| get("NODE_ENV")) {
            self.production = v == "production";
        }
        if let Some(v) = get("TRUSTED_PROXIES") {
            self.trusted_proxies = parse_proxies("TRUSTED_PROXIES", v.split(','))?;
        }
        if let Some(v) = get("ICE_SERVERS") {
            self.ice_servers = serde_json::from_str(v).map_err(|e| {
                invalid(
                    "ICE_SERVERS",
                    format!("expected a JSON array of RTCIceServer: {e}"),
                )
            })?;
        }
        if let Some(v) = get("PUBLIC_URL") {
            self.public_url = Some(v.to_string());
        }
        if let Some(v) = get("METRICS_TOKEN") {
            self.metrics_token = Some(Secret::new(v));
        }
        if let Some(v) = get("METRICS_ADDR") {
            self.metrics_addr = Some(
                v.parse()
                    .map_err(|_| invalid("METRICS_ADDR", format!("{v:?} is not host:port")))?,
            );
        }
        match (get("TLS_CERT_FILE"), get("TLS_KEY_FILE")) {
            (Some(c), Some(k)) => self.tls = Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "TLS_CERT_FILE",
                    "TLS_CERT_FILE and TLS_KEY_FILE go together",
                ));
            }
        }
        if let Some(v) = get("MESH_MAX") {
            self.mesh_max = parse_num("MESH_MAX", v)?;
        }
        if let Some(v) = get("LAST_N") {
            self.last_n = parse_num("LAST_N", v)?;
        }
        if let Some(v) = get("RELAY_UDP") {
            self.relay_udp = Some(parse_num("RELAY_UDP", v)?);
        }
        if let Some(v) = get("RELAY_PUBLIC_IP") {
            self.relay_public_ip = Some(v.to_owned());
        }
        if let Some(bucket) = get("S3_BUCKET") {
            let mut s3 = self.s3.take().unwrap_or_default();
            s3.bucket = bucket.to_string();
            if s3.region.is_empty() {
                s3.region = default_region();
            }
            self.s3 = Some(s3);
        }
        if let Some(s3) = self.s3.as_mut() {
            if let Some(v) = get("S3_REGION") {
                s3.region = v.to_string();
            }
            if let Some(v) = get("S3_ENDPOINT") {
                s3.endpoint = Some(v.to_string());
            }
            if let Some(v) = get("S3_ACCESS_KEY") {
                s3.access_key = Some(v.to_string());
            }
            if let Some(v) = get("S3_SECRET_KEY") {
                s3.secret_key = Some(Secret::new(v));
            }
            if let Some(v) = get("S3_FORCE_PATH_STYLE") {
                s3.force_path_style = parse_bool("S3_FORCE_PATH_STYLE", v)?;
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate()?;
        if self.limits.idle_secs <= self.heartbeat_secs {
            return Err(invalid(
                "limits.idle_secs",
                "must exceed heartbeat_secs, or idle event streams are cut between heartbeats",
            ));
        }
        if let Some(s) = &self.cookie_secret
            && s.expose().len() < 32
        {
            return Err(invalid("COOKIE_SECRET", "must be at least 32 characters"));
        }
        if let Some(p) = &self.admin_password
            && p.expose().len() < 8
        {
            return Err(invalid("ADMIN_PASSWORD", "must be at least 8 characters"));
        }
        for (i, integ) in self.integrators.iter().enumerate() {
            let key = format!("INTEGRATORS[{i}]");
            if integ.id.trim().is_empty() {
                return Err(invalid(&key, "id must not be empty"));
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
            return Err(invalid("MAX_PARTICIPANTS", "must be at least 1"));
        }
        if self.max_message_chars == 0 {
            return Err(invalid("MAX_MESSAGE_CHARS", "must be at least 1"));
        }
        // Upper bounds keep the millisecond forms (`secs * 1000`) in range.
        if !(60..=MAX_SESSION_TTL_SECS).contains(&self.session_ttl_secs) {
            return Err(invalid(
                "SESSION_TTL_SECS",
                format!("must be between 60 and {MAX_SESSION_TTL_SECS} (10 years)"),
            ));
        }
        if !(0..=86_400).contains(&self.ticket_max_age_secs) {
            return Err(invalid(
                "ticket_max_age_secs",
                "must be between 0 and 86400",
            ));
        }
        if !(0..=300).contains(&self.ticket_clock_skew_secs) {
            return Err(invalid(
                "TICKET_CLOCK_SKEW_SECS",
                "must be between 0 and 300",
            ));
        }
        if !self.ice_servers.is_array() {
            return Err(invalid("ICE_SERVERS", "must be a JSON array"));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(invalid("PUBLIC_URL", "must start with http:// or https://"));
        }
        if !(1..=15).contains(&self.heartbeat_secs) {
            return Err(invalid("heartbeat_secs", "must be between 1 and 15"));
        }
        if self.mesh_max < 2 {
            return Err(invalid("MESH_MAX", "must be at least 2"));
        }
        if let Some(s3) = &self.s3
            && s3.bucket.trim().is_empty()
        {
            return Err(invalid("S3_BUCKET", "must not be empty"));
        }
        Ok(())
    }

    pub fn integrator(&self, id: &str) -> Option<&Integrator> {
        self.integrators.iter().find(|i| i.id == id)
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn parse_host(key: &str, v: &str) -> Result<IpAddr, ConfigError> {
    if v == "localhost" {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    v.parse()
        .map_err(|_| invalid(key, format!("{v:?} is not an IP address")))
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse()
        .map_err(|_| invalid(key, format!("{v:?} is not a valid number")))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(key, format!("{v:?} is not a boolean"))),
    }
}

fn parse_proxies<'a>(
    key: &str,
    items: impl Iterator<Item = &'a str>,
) -> Result<Vec<IpNet>, ConfigError> {
    items
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| invalid(key, format!("{s:?} is not an IP address or CIDR")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_original_service() {
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.rate_limit_per_min, 100);
        assert_eq!(c.admin_rate_limit_per_min, 10);
        assert_eq!(c.max_participants, 50);
        assert!(!c.production);
        assert!(c.s3.is_none());
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "port = 4000\nrate_limit_per_min = 5\n[media]\nmesh_max = 6\nlast_n = 3\n",
        )
        .unwrap();
        let c = Config::from_sources(Some(&p), &env(&[("PORT", "5000")])).unwrap();
        assert_eq!(c.port, 5000);
        assert_eq!(c.rate_limit_per_min, 5);
        assert_eq!(c.mesh_max, 6);
        assert_eq!(c.last_n, 3);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = Config::from_sources(None, &env(&[("PORT", "eighty")])).unwrap_err();
        assert!(e.to_string().contains("PORT"), "{e}");
        let e = Config::from_sources(None, &env(&[("COOKIE_SECRET", "short")])).unwrap_err();
        assert!(e.to_string().contains("COOKIE_SECRET"), "{e}");
        let e = Config::from_sources(None, &env(&[("INTEGRATORS", "{")])).unwrap_err();
        assert!(e.to_string().contains("INTEGRATORS"), "{e}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "prot = 4000\n").unwrap();
        let e = Config::from_sources(Some(&p), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    fn min_free_bytes_defaults_to_64_mib_and_is_configurable() {
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.min_free_bytes, 64 * 1024 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "min_free_bytes = 1048576\n").unwrap();
        let c = Config::from_sources(Some(&p), &env(&[])).unwrap();
        assert_eq!(c.min_free_bytes, 1024 * 1024);
        let c = Config::from_sources(Some(&p), &env(&[("MIN_FREE_BYTES", "0")])).unwrap();
        assert_eq!(
            c.min_free_bytes, 0,
            "the environment wins; 0 turns the check off"
        );
        let e = Config::from_sources(None, &env(&[("MIN_FREE_BYTES", "lots")])).unwrap_err();
        assert!(e.to_string().contains("MIN_FREE_BYTES"), "{e}");
    }

    #[test]
    fn integrators_and_s3_from_env() {
        let c = Config::from_sources(
            None,
            &env(&[
                (
                    "INTEGRATORS",
                    r#"[{"id":"acme","secret":"0123456789abcdef0123","allowedOrigins":["https://*.acme.com"]}]"#,
                ),
                ("S3_BUCKET", "b"),
                ("S3_ENDPOINT", "http://127.0.0.1:9000"),
                ("NODE_ENV", "production"),
            ]),
        )
        .unwrap();
        assert_eq!(c.integrator("acme").unwrap().allowed_origins.len(), 1);
        let s3 = c.s3.unwrap();
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.production);
        assert_eq!(format!("{:?}", c.integrators[0].secret), "***");
    }

    #[test]
    fn durations_that_overflow_in_milliseconds_are_refused() {
        // Found by `any_environment_loads_or_names_a_key`: a TTL of
        // 9223372036854776 s passed, and `session_ttl_secs * 1000`
        // overflowed on every authenticated request.
        let e = Config::from_sources(None, &env(&[("SESSION_TTL_SECS", "9223372036854776")]))
            .unwrap_err();
        assert!(e.to_string().contains("SESSION_TTL_SECS"), "{e}");
        assert!(Config::from_sources(None, &env(&[("SESSION_TTL_SECS", "315360000")])).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for bad in [
            "ticket_max_age_secs = 9223372036854775807\n",
            "ticket_max_age_secs = -1\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = Config::from_sources(Some(&p), &env(&[])).unwrap_err();
            assert!(e.to_string().contains("ticket_max_age_secs"), "{e}");
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Environment variables and file keys the configuration reads (and a typo).
        const ENV_KEYS: &str = "HOST PORT CHATS3_DATA_DIR ADMIN_PASSWORD COOKIE_SECRET \
            INTEGRATORS RATE_LIMIT_PER_MIN MAX_PARTICIPANTS MAX_MESSAGE_CHARS MAX_UPLOAD_BYTES \
            SESSION_TTL_SECS TICKET_CLOCK_SKEW_SECS CHATS3_ENV TRUSTED_PROXIES ICE_SERVERS \
            PUBLIC_URL METRICS_ADDR TLS_CERT_FILE MESH_MAX LAST_N RELAY_UDP S3_BUCKET \
            S3_FORCE_PATH_STYLE";
        const FILE_KEYS: &str = "host port data_dir admin_password cookie_secret \
            rate_limit_per_min max_participants env trusted_proxies max_message_chars \
            max_display_name_chars max_body_bytes max_upload_bytes ticket_max_age_secs \
            ticket_clock_skew_secs session_ttl_secs ice_servers heartbeat_secs public_url \
            metrics_addr tls_cert_file prot";

        fn keys(list: &'static str) -> impl Strategy<Value = &'static str> {
            prop::sample::select(list.split_whitespace().collect::<Vec<_>>())
        }

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => any::<i64>().prop_map(|n| n.to_string()),
                2 => any::<u64>().prop_map(|n| n.to_string()),
                3 => (0i64..100_000).prop_map(|n| n.to_string()),
                1 => "[0-9a-f.:/,\\[\\] ]{0,24}",
                1 => Just("[]".to_string()),
                1 => Just(r#"[{"id":"a","secret":"0123456789abcdef","allowedOrigins":["https://[::1]"]}]"#.to_string()),
                1 => any::<String>(),
            ]
        }

        fn toml_value() -> impl Strategy<Value = toml::Value> {
            prop_oneof![
                any::<i64>().prop_map(toml::Value::Integer),
                (0i64..100_000).prop_map(toml::Value::Integer),
                text().prop_map(toml::Value::String),
                any::<bool>().prop_map(toml::Value::Boolean),
                any::<f64>().prop_map(toml::Value::Float),
                prop::collection::vec(text().prop_map(toml::Value::String), 0..3)
                    .prop_map(toml::Value::Array),
            ]
        }

        /// A config file: a table of known (and some unknown) keys, a
        /// `[media]` table, and sometimes arbitrary text instead.
        fn file() -> impl Strategy<Value = String> {
            let media = prop::collection::btree_map(
                keys("mesh_max last_n relay_udp relay_public_ip"),
                toml_value(),
                0..3,
            );
            let table = (
                prop::collection::btree_map(keys(FILE_KEYS), toml_value(), 0..4),
                prop::option::of(media),
            )
                .prop_map(|(top, media)| {
                    let mut t: toml::Table =
                        top.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    if let Some(m) = media {
                        let m: toml::Table =
                            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                        t.insert("media".into(), toml::Value::Table(m));
                    }
                    toml::to_string(&t).unwrap_or_default()
                });
            prop_oneof![4 => table, 1 => any::<String>(), 1 => "[a-z_\\[\\]=\"' 0-9\n]{0,80}"]
        }

        /// What the rest of the server computes from a valid configuration.
        fn check_derived(c: &Config) -> Result<(), TestCaseError> {
            prop_assert!(c.session_ttl_secs.checked_mul(1000).is_some());
            let max_age = c.ticket_max_age_secs.checked_mul(1000);
            let skew = c.ticket_clock_skew_secs.checked_mul(1000);
            let window = max_age.zip(skew).and_then(|(a, s)| a.checked_add(s));
            prop_assert!(window.is_some());
            prop_assert!(c.ticket_max_age_secs >= 0);
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_environment_loads_or_names_a_key(
                vars in prop::collection::btree_map(keys(ENV_KEYS), text(), 0..3),
            ) {
                let env: HashMap<String, String> =
                    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                match Config::from_sources(None, &env) {
                    Ok(c) => check_derived(&c)?,
                    Err(ConfigError::Invalid { key, .. }) => prop_assert!(!key.is_empty()),
                    Err(e) => prop_assert!(false, "unexpected {}", e),
                }
            }

            #[test]
            fn any_config_file_loads_or_is_refused(text in file()) {
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("c.toml");
                std::fs::write(&p, &text).unwrap();
                if let Ok(c) = Config::from_sources(Some(&p), &HashMap::new()) {
                    check_derived(&c)?;
                }
            }
        }
    }
}
