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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            data_dir: PathBuf::from("./data"),
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
        if let Some(v) = get("HOST") {
            self.host = parse_host("HOST", v)?;
        }
        if let Some(v) = get("PORT") {
            self.port = parse_num("PORT", v)?;
        }
        if let Some(v) = get("CHATS3_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
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
                return Err(invalid(&key, "secret must be at least 16 characters"));
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
        if self.session_ttl_secs < 60 {
            return Err(invalid("SESSION_TTL_SECS", "must be at least 60"));
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
}
