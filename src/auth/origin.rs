//! Origin allow-list patterns: exact origins (`https://app.example.com`) or a
//! subdomain wildcard (`https://*.example.com`, which matches any subdomain but
//! not the apex). Pure; compared on scheme, host and port.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    /// Host without the `*.`; lowercase.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an origin (expected scheme://host[:port])")]
pub struct BadOrigin(pub String);

struct Parts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

fn split(origin: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            (h, Some(p.parse::<u16>().ok()?))
        }
        _ => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    Some(Parts { scheme, host, port })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<Self, BadOrigin> {
        let p = split(s.trim()).ok_or_else(|| BadOrigin(s.to_string()))?;
        let (wildcard, host) = match p.host.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, p.host),
        };
        if host.is_empty() || host.contains('*') {
            return Err(BadOrigin(s.to_string()));
        }
        Ok(Self {
            scheme: p.scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            wildcard,
            port: p
                .port
                .or_else(|| default_port(&p.scheme.to_ascii_lowercase())),
        })
    }

    /// Does the concrete `origin` match this pattern?
    pub fn matches(&self, origin: &str) -> bool {
        let Some(p) = split(origin.trim()) else {
            return false;
        };
        let scheme = p.scheme.to_ascii_lowercase();
        let host = p.host.to_ascii_lowercase();
        if host.contains('*') || scheme != self.scheme {
            return false;
        }
        if p.port.or_else(|| default_port(&scheme)) != self.port {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

impl fmt::Display for OriginPattern {
    /// The CSP source form (`https://*.example.com:8443`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.host)?;
        match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => write!(f, ":{p}"),
            _ => Ok(()),
        }
    }
}

/// True when `origin` matches any pattern in `allowed` (invalid patterns never match).
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed
        .iter()
        .filter_map(|a| OriginPattern::parse(a).ok())
        .any(|p| p.matches(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str], o: &str) -> bool {
        origin_allowed(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>(), o)
    }

    #[test]
    fn exact_origin_matches_only_itself() {
        let l = ["https://acme.com"];
        assert!(allowed(&l, "https://acme.com"));
        assert!(allowed(&l, "https://ACME.com"));
        assert!(allowed(&l, "https://acme.com:443"));
        assert!(!allowed(&l, "http://acme.com"));
        assert!(!allowed(&l, "https://acme.com:8443"));
        assert!(!allowed(&l, "https://evil-acme.com"));
        assert!(!allowed(&l, "https://acme.com.evil.com"));
        assert!(!allowed(&l, "https://acme.com/path"));
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_apex_or_lookalikes() {
        let l = ["https://*.acme.com"];
        assert!(allowed(&l, "https://app.acme.com"));
        assert!(allowed(&l, "https://a.b.acme.com"));
        assert!(!allowed(&l, "https://acme.com"));
        assert!(!allowed(&l, "https://evilacme.com"));
        assert!(!allowed(&l, "https://app.acme.com.evil.io"));
        assert!(!allowed(&l, "http://app.acme.com"));
    }

    #[test]
    fn ports_and_garbage() {
        assert!(allowed(&["http://localhost:8080"], "http://localhost:8080"));
        assert!(!allowed(
            &["http://localhost:8080"],
            "http://localhost:8081"
        ));
        assert!(!allowed(&["http://localhost:8080"], "null"));
        assert!(!allowed(&["*"], "https://a.com"));
        assert!(OriginPattern::parse("https://").is_err());
        assert!(OriginPattern::parse("https://a.*.com").is_err());
        assert_eq!(
            OriginPattern::parse("https://*.acme.com:443")
                .unwrap()
                .to_string(),
            "https://*.acme.com"
        );
    }
}
