//! How one key's value is read from an environment variable and from the
//! TOML file, and shown back as TOML (for the generated docs): the [`Kind`]
//! trait and its implementations for every type a key has.
//!
//! Owns parsing only; which keys exist is the table in `config/mod.rs`, and
//! ranges and cross-key rules are `Config::validate`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;

use super::{ConfigError, Integrator, Secret, invalid};

/// Reads and shows values of type `T`. A type is usually its own kind; a key
/// whose text means something else names its kind in the table (`as Mode`).
pub(super) trait Kind<T> {
    /// Parses an environment variable's (trimmed, non-empty) text; `key` is the variable.
    fn from_env(key: &str, text: &str) -> Result<T, ConfigError>;
    /// Converts a value of the TOML file; `key` is its dotted name.
    fn from_toml(key: &str, value: toml::Value) -> Result<T, ConfigError>;
    /// The value as TOML; `None` for an unset optional value.
    fn to_toml(value: &T) -> Option<toml::Value>;
    /// The value as an environment variable's text (the tests set every key this way).
    #[cfg(test)]
    fn to_env(value: &T) -> String;
}

fn from_serde<T: serde::de::DeserializeOwned>(
    key: &str,
    value: toml::Value,
) -> Result<T, ConfigError> {
    value
        .try_into()
        .map_err(|e| invalid(key, e.to_string().trim_end()))
}

fn toml_string(key: &str, value: toml::Value) -> Result<String, ConfigError> {
    from_serde(key, value)
}

/// Integers: decimal text in the environment, TOML integers in the file.
macro_rules! integer_kind {
    ($($t:ty),*) => {$(
        impl Kind<$t> for $t {
            fn from_env(key: &str, text: &str) -> Result<$t, ConfigError> {
                text.parse()
                    .map_err(|_| invalid(key, format!("{text:?} is not a valid number")))
            }
            fn from_toml(key: &str, value: toml::Value) -> Result<$t, ConfigError> {
                from_serde(key, value)
            }
            fn to_toml(value: &$t) -> Option<toml::Value> {
                i64::try_from(*value).ok().map(toml::Value::Integer)
            }
            #[cfg(test)]
            fn to_env(value: &$t) -> String {
                value.to_string()
            }
        }
    )*};
}

integer_kind!(u16, u32, u64, usize, i64);

/// Free text (a URL, a bucket name, an address to announce).
impl Kind<String> for String {
    fn from_env(_: &str, text: &str) -> Result<String, ConfigError> {
        Ok(text.to_owned())
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<String, ConfigError> {
        toml_string(key, value)
    }
    fn to_toml(value: &String) -> Option<toml::Value> {
        Some(toml::Value::String(value.clone()))
    }
    #[cfg(test)]
    fn to_env(value: &String) -> String {
        value.clone()
    }
}

impl Kind<Secret> for Secret {
    fn from_env(_: &str, text: &str) -> Result<Secret, ConfigError> {
        Ok(Secret::new(text))
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<Secret, ConfigError> {
        toml_string(key, value).map(Secret::new)
    }
    /// Only defaults and the docs' examples are shown, never a loaded secret.
    fn to_toml(value: &Secret) -> Option<toml::Value> {
        Some(toml::Value::String(value.expose().to_owned()))
    }
    #[cfg(test)]
    fn to_env(value: &Secret) -> String {
        value.expose().to_owned()
    }
}

impl Kind<PathBuf> for PathBuf {
    fn from_env(_: &str, text: &str) -> Result<PathBuf, ConfigError> {
        Ok(PathBuf::from(text))
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<PathBuf, ConfigError> {
        toml_string(key, value).map(PathBuf::from)
    }
    fn to_toml(value: &PathBuf) -> Option<toml::Value> {
        Some(toml::Value::String(value.display().to_string()))
    }
    #[cfg(test)]
    fn to_env(value: &PathBuf) -> String {
        value.display().to_string()
    }
}

/// `1/true/yes/on` or `0/false/no/off` in the environment; a TOML boolean in the file.
impl Kind<bool> for bool {
    fn from_env(key: &str, text: &str) -> Result<bool, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, format!("{text:?} is not a boolean"))),
        }
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<bool, ConfigError> {
        from_serde(key, value)
    }
    fn to_toml(value: &bool) -> Option<toml::Value> {
        Some(toml::Value::Boolean(*value))
    }
    #[cfg(test)]
    fn to_env(value: &bool) -> String {
        value.to_string()
    }
}

/// `env = "production"` (`NODE_ENV`, as in the original service); any other value is development.
pub(super) struct Mode;

impl Kind<bool> for Mode {
    fn from_env(_: &str, text: &str) -> Result<bool, ConfigError> {
        Ok(text == "production")
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<bool, ConfigError> {
        toml_string(key, value).map(|s| s == "production")
    }
    fn to_toml(value: &bool) -> Option<toml::Value> {
        let mode = if *value { "production" } else { "development" };
        Some(toml::Value::String(mode.into()))
    }
    #[cfg(test)]
    fn to_env(value: &bool) -> String {
        if *value { "production" } else { "development" }.into()
    }
}

fn parse_host(key: &str, text: &str) -> Result<IpAddr, ConfigError> {
    if text == "localhost" {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    text.parse()
        .map_err(|_| invalid(key, format!("{text:?} is not an IP address")))
}

/// An IP address; `localhost` means 127.0.0.1.
impl Kind<IpAddr> for IpAddr {
    fn from_env(key: &str, text: &str) -> Result<IpAddr, ConfigError> {
        parse_host(key, text)
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<IpAddr, ConfigError> {
        parse_host(key, &toml_string(key, value)?)
    }
    fn to_toml(value: &IpAddr) -> Option<toml::Value> {
        Some(toml::Value::String(value.to_string()))
    }
    #[cfg(test)]
    fn to_env(value: &IpAddr) -> String {
        value.to_string()
    }
}

fn parse_socket(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| invalid(key, format!("{text:?} is not host:port")))
}

/// `ip:port` text in both places.
impl Kind<SocketAddr> for SocketAddr {
    fn from_env(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        parse_socket(key, text)
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<SocketAddr, ConfigError> {
        parse_socket(key, &toml_string(key, value)?)
    }
    fn to_toml(value: &SocketAddr) -> Option<toml::Value> {
        Some(toml::Value::String(value.to_string()))
    }
    #[cfg(test)]
    fn to_env(value: &SocketAddr) -> String {
        value.to_string()
    }
}

fn parse_nets<'a>(
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

/// A single address is shown without its `/32` or `/128`.
fn show_net(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// IPs and CIDRs: comma-separated in the environment, an array of strings in the file.
impl Kind<Vec<IpNet>> for Vec<IpNet> {
    fn from_env(key: &str, text: &str) -> Result<Vec<IpNet>, ConfigError> {
        parse_nets(key, text.split(','))
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<Vec<IpNet>, ConfigError> {
        let list: Vec<String> = from_serde(key, value)?;
        parse_nets(key, list.iter().map(String::as_str))
    }
    fn to_toml(value: &Vec<IpNet>) -> Option<toml::Value> {
        let list = value.iter().map(|n| toml::Value::String(show_net(n)));
        Some(toml::Value::Array(list.collect()))
    }
    #[cfg(test)]
    fn to_env(value: &Vec<IpNet>) -> String {
        value.iter().map(show_net).collect::<Vec<_>>().join(",")
    }
}

/// JSON in the environment, the same structure in TOML in the file (`ice_servers`).
impl Kind<serde_json::Value> for serde_json::Value {
    fn from_env(key: &str, text: &str) -> Result<serde_json::Value, ConfigError> {
        serde_json::from_str(text).map_err(|e| invalid(key, format!("is not JSON: {e}")))
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<serde_json::Value, ConfigError> {
        from_serde(key, value)
    }
    fn to_toml(value: &serde_json::Value) -> Option<toml::Value> {
        toml::Value::try_from(value).ok()
    }
    #[cfg(test)]
    fn to_env(value: &serde_json::Value) -> String {
        value.to_string()
    }
}

/// A JSON array in the environment (`INTEGRATORS`), `[[integrators]]` tables in the file.
impl Kind<Vec<Integrator>> for Vec<Integrator> {
    fn from_env(key: &str, text: &str) -> Result<Vec<Integrator>, ConfigError> {
        serde_json::from_str(text).map_err(|e| {
            invalid(
                key,
                format!("expected a JSON array of {{id, secret, allowedOrigins, webhookUrl}}: {e}"),
            )
        })
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<Vec<Integrator>, ConfigError> {
        from_serde(key, value)
    }
    fn to_toml(value: &Vec<Integrator>) -> Option<toml::Value> {
        let table = |i: &Integrator| {
            let mut t = toml::Table::new();
            t.insert("id".into(), i.id.clone().into());
            t.insert("secret".into(), i.secret.expose().into());
            let origins = i.allowed_origins.iter().map(|o| o.as_str().into());
            t.insert(
                "allowedOrigins".into(),
                toml::Value::Array(origins.collect()),
            );
            if let Some(u) = &i.webhook_url {
                t.insert("webhookUrl".into(), u.as_str().into());
            }
            toml::Value::Table(t)
        };
        Some(toml::Value::Array(value.iter().map(table).collect()))
    }
    #[cfg(test)]
    fn to_env(value: &Vec<Integrator>) -> String {
        let list: Vec<_> = value
            .iter()
            .map(|i| {
                serde_json::json!({
                    "id": i.id,
                    "secret": i.secret.expose(),
                    "allowedOrigins": i.allowed_origins,
                    "webhookUrl": i.webhook_url,
                })
            })
            .collect();
        serde_json::Value::Array(list).to_string()
    }
}

/// An optional key: unset by default, set by any value.
impl<T: Kind<T>> Kind<Option<T>> for Option<T> {
    fn from_env(key: &str, text: &str) -> Result<Option<T>, ConfigError> {
        T::from_env(key, text).map(Some)
    }
    fn from_toml(key: &str, value: toml::Value) -> Result<Option<T>, ConfigError> {
        T::from_toml(key, value).map(Some)
    }
    fn to_toml(value: &Option<T>) -> Option<toml::Value> {
        value.as_ref().and_then(T::to_toml)
    }
    #[cfg(test)]
    fn to_env(value: &Option<T>) -> String {
        value.as_ref().map(T::to_env).unwrap_or_default()
    }
}
