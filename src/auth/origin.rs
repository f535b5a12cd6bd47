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
    // An IPv6 host is bracketed; the port follows the host after one `:`.
    let host_len = match rest.starts_with('[') {
        true => rest.find(']')? + 1,
        false => rest.find(':').unwrap_or(rest.len()),
    };
    let (host, port) = rest.split_at(host_len);
    let port = match port {
        "" => None,
        p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
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

/// `origin` when it is a browser's serialization of an `http(s)` origin
/// (`scheme://host[:port]`, lowercase, no default port) made only of characters
/// that cannot change the meaning of a CSP source list or an HTML attribute;
/// `None` otherwise. A wildcard pattern lets the integrator's clients choose the
/// subdomain, so a matching origin is not yet safe to write into a header.
pub fn canonical_origin(origin: &str) -> Option<&str> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:[]/".contains(c);
    if !origin.chars().all(ok_char) {
        return None;
    }
    let url = url::Url::parse(origin).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    (url.origin().ascii_serialization() == origin).then_some(origin)
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

    #[test]
    fn ipv6_origins_match_with_and_without_their_default_port() {
        // Found by `a_parsed_pattern_survives_its_csp_form`: "http://[::1]:80"
        // was written as "http://[::1]", which did not parse (a bracketed
        // host needed a port), so browsers' port-less IPv6 origins never matched.
        let l = ["http://[::1]:80"];
        assert!(allowed(&l, "http://[::1]"));
        assert!(allowed(&l, "http://[::1]:80"));
        assert!(!allowed(&l, "http://[::1]:8080"));
        assert!(allowed(
            &["https://[2001:db8::1]"],
            "https://[2001:DB8::1]:443"
        ));
        let p = OriginPattern::parse("http://[::1]:80").unwrap();
        assert_eq!(OriginPattern::parse(&p.to_string()), Ok(p));
        // A colon outside brackets is a port separator, once.
        assert!(OriginPattern::parse("https://a:b:443").is_err());
        assert!(OriginPattern::parse("https://[::1]x").is_err());
        assert!(OriginPattern::parse("https://[::1").is_err());
    }

    #[test]
    fn canonical_origins_are_what_a_browser_sends() {
        for o in [
            "https://shop.example.com",
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
        ] {
            assert_eq!(canonical_origin(o), Some(o));
        }
        for o in [
            "https://Shop.example.com",
            "https://shop.example.com:443",
            "https://shop.example.com/",
            "https://a;b.example.com",
            "https://a'b.example.com",
            "https://a\"b.example.com",
            "https://a,b.example.com",
            "https://a b.example.com",
            " https://shop.example.com",
            "ftp://files.example.com",
            "javascript://x",
            "null",
            "",
        ] {
            assert_eq!(canonical_origin(o), None, "{o}");
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Strings shaped like origins and patterns, with the characters that matter.
        fn originish() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "(https?|HTTPS|[a-z]{0,5})://(\\*\\.)?[a-zA-Z0-9.*:@/\\[\\] -]{0,20}(:[0-9+-]{0,6})?",
                "https?://(\\[[0-9a-f:]{0,12}\\]|[a-z]{1,6}(\\.[a-z]{1,4}){0,2})(:[0-9]{1,5})?",
            ]
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_pattern_and_origin_are_decided_without_panicking(
                patterns in prop::collection::vec(originish(), 0..4),
                origin in originish(),
            ) {
                let _ = origin_allowed(&patterns, &origin);
            }

            #[test]
            fn a_parsed_pattern_survives_its_csp_form(s in originish()) {
                if let Ok(p) = OriginPattern::parse(&s) {
                    prop_assert_eq!(OriginPattern::parse(&p.to_string()), Ok(p.clone()));
                    if !p.wildcard {
                        prop_assert!(p.matches(&p.to_string()), "{} does not match itself", p);
                        prop_assert!(p.matches(&p.to_string().to_ascii_uppercase()));
                    } else {
                        let sub = p.to_string().replacen("*.", "a.", 1);
                        prop_assert!(p.matches(&sub), "{} does not match {}", p, sub);
                        let apex = p.to_string().replacen("*.", "", 1);
                        prop_assert!(!p.matches(&apex), "{} matches its apex", p);
                    }
                }
            }

            #[test]
            fn a_canonical_origin_is_safe_in_a_header_and_an_attribute(o in originish()) {
                if let Some(c) = canonical_origin(&o) {
                    prop_assert!(!c.contains([';', ',', ' ', '\'', '"', '<', '>', '&', '*']), "{}", c);
                    prop_assert!(http::HeaderValue::from_str(c).is_ok());
                }
            }

            #[test]
            fn a_wildcard_matches_only_names_ending_in_dot_host(
                host in "[a-z]{1,5}\\.[a-z]{2,3}",
                origin in originish(),
            ) {
                let p = OriginPattern::parse(&format!("https://*.{host}")).unwrap();
                if p.matches(&origin) {
                    let o = origin.trim().to_ascii_lowercase();
                    let rest = o.strip_prefix("https://").unwrap();
                    let name = rest.strip_suffix(":443").unwrap_or(rest);
                    let suffix = format!(".{host}");
                    prop_assert!(name.ends_with(&suffix) && name.len() > suffix.len(), "{}", origin);
                }
            }
        }
    }
}
