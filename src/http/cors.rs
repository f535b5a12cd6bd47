//! CORS: integrators' pages may call the API from the browser, with
//! credentials, as they could with the original service. Exactly the configured
//! integrators' `allowedOrigins` are allowed (exact origins and
//! `https://*.example.com` subdomain patterns, matched by `crate::auth::origin`,
//! the same list and rule as the cross-site guard in `csrf.rs`); every other
//! origin gets no CORS headers, so its pages can neither read an answer nor
//! send a preflighted request. Owns no state and touches nothing else.

use std::time::Duration;

use axum::http::{HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::origin::OriginPattern;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Is the request's `Origin` one of `patterns`?
pub fn allowed(patterns: &[OriginPattern], origin: &HeaderValue) -> bool {
    origin
        .to_str()
        .is_ok_and(|o| patterns.iter().any(|p| p.matches(o)))
}

/// The layer for the integrators' allowed-origin patterns (invalid ones, refused
/// at start-up by the config check, never match).
pub fn layer(allowed_origins: &[String]) -> CorsLayer {
    let patterns: Vec<OriginPattern> = allowed_origins
        .iter()
        .filter_map(|o| OriginPattern::parse(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            allowed(&patterns, origin)
        }))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        // As the original (@fastify/cors): whatever headers the preflight asks for
        // (`content-type`, `x-session-id`, `last-event-id`, …), for allowed origins only.
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(PREFLIGHT_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|p| OriginPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn configured_origins_and_subdomain_patterns_are_allowed() {
        let p = patterns(&["https://shop.example.com", "https://*.acme.com"]);
        for o in [
            "https://shop.example.com",
            "https://app.acme.com",
            "https://a.b.acme.com",
        ] {
            assert!(allowed(&p, &HeaderValue::from_static(o)), "{o}");
        }
    }

    #[test]
    fn foreign_opaque_and_lookalike_origins_are_not() {
        let p = patterns(&["https://shop.example.com", "https://*.acme.com"]);
        for o in [
            "https://evil.example",
            "http://shop.example.com",
            "https://acme.com",
            "https://evilacme.com",
            "null",
            "",
        ] {
            assert!(!allowed(&p, &HeaderValue::from_static(o)), "{o}");
        }
        let binary = HeaderValue::from_bytes(b"https://\xffacme.com").unwrap();
        assert!(!allowed(&p, &binary));
        assert!(!allowed(
            &[],
            &HeaderValue::from_static("https://app.acme.com")
        ));
    }
}
