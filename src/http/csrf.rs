//! Cross-site request forgery: the one check that a state-changing request a
//! browser sent was sent by a page of ours, or of a configured integrator.
//!
//! Browsers attach the `sessionId` cookie to requests that another site's page
//! triggers (forms, `fetch` with `no-cors`, including body-less and
//! `text/plain` POSTs), and they mark every such request with `Origin` and
//! `Sec-Fetch-Site`. So: safe methods pass; a request carrying `x-session-id`
//! passes (a page cannot set that header cross-site without a CORS preflight,
//! and the session it names is not ambient); otherwise a browser request must
//! come from our own origin or from an integrator's allowed origin. A request
//! with neither header is not from a browser (curl, an integrator's backend,
//! the admin CLI) and carries no ambient authority to abuse.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::origin::origin_allowed;
use crate::state::AppState;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Forgery {
    /// `Origin: null` (sandboxed frame, `data:` page, some redirects).
    OpaqueOrigin,
    /// An origin that is neither ours nor an integrator's.
    ForeignOrigin,
    /// `Sec-Fetch-Site` says another site, and there is no origin to allow.
    CrossSite,
}

/// Where a request may come from.
pub struct Origins<'a> {
    /// `PUBLIC_URL`'s origin, when configured; else the request's `Host` is ours.
    pub public: Option<&'a str>,
    /// Every integrator's `allowedOrigins` patterns.
    pub integrators: &'a [String],
}

fn header(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `scheme://host[:port]` → `host[:port]`.
fn authority(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

fn is_own(origin: &str, headers: &HeaderMap, origins: &Origins) -> bool {
    match origins.public {
        Some(public) => origin.eq_ignore_ascii_case(public),
        None => {
            let host = header(headers, header::HOST);
            authority(origin).is_some_and(|a| host.is_some_and(|h| a.eq_ignore_ascii_case(h)))
        }
    }
}

/// The decision, pure: `Ok` to let the request through.
pub fn check(method: &Method, headers: &HeaderMap, origins: &Origins) -> Result<(), Forgery> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if header(headers, "x-session-id").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let site = header(headers, "sec-fetch-site");
    if matches!(site, Some("same-origin" | "none")) {
        return Ok(());
    }
    match header(headers, header::ORIGIN) {
        Some("null") => Err(Forgery::OpaqueOrigin),
        Some(o) if is_own(o, headers, origins) || origin_allowed(origins.integrators, o) => Ok(()),
        Some(_) => Err(Forgery::ForeignOrigin),
        None if site.is_some() => Err(Forgery::CrossSite),
        None => Ok(()),
    }
}

/// The middleware: 403 with the envelope for a forged request.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let origins = Origins {
        public: state.public_origin.as_deref(),
        integrators: &state.integrator_origins,
    };
    if let Err(f) = check(req.method(), req.headers(), &origins) {
        state.metrics.csrf_refused.inc();
        tracing::info!(reason = ?f, path = %req.uri().path(), "cross-site request refused");
        return ApiError::forbidden("Cross-site request refused")
            .with_details(serde_json::json!({ "reason": "cross_site" }))
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn verdict(
        pairs: &[(&'static str, &'static str)],
        public: Option<&str>,
    ) -> Result<(), Forgery> {
        let integrators = vec!["https://*.acme.com".to_string()];
        let o = Origins {
            public,
            integrators: &integrators,
        };
        check(&Method::POST, &headers(pairs), &o)
    }

    #[test]
    fn same_origin_and_non_browser_requests_pass() {
        assert_eq!(verdict(&[("sec-fetch-site", "same-origin")], None), Ok(()));
        assert_eq!(verdict(&[], None), Ok(()));
        let own = [
            ("host", "chat.example:3000"),
            ("origin", "http://chat.example:3000"),
        ];
        assert_eq!(verdict(&own, None), Ok(()));
        let public = [("origin", "https://chat.example")];
        assert_eq!(verdict(&public, Some("https://chat.example")), Ok(()));
    }

    #[test]
    fn integrator_origins_pass() {
        let h = [
            ("origin", "https://app.acme.com"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(verdict(&h, None), Ok(()));
    }

    #[test]
    fn foreign_sites_are_refused() {
        let h = [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
            ("host", "chat.example"),
        ];
        assert_eq!(verdict(&h, None), Err(Forgery::ForeignOrigin));
        assert_eq!(
            verdict(&[("origin", "null")], None),
            Err(Forgery::OpaqueOrigin)
        );
        assert_eq!(
            verdict(&[("sec-fetch-site", "cross-site")], None),
            Err(Forgery::CrossSite)
        );
        assert_eq!(
            verdict(&[("sec-fetch-site", "same-site")], None),
            Err(Forgery::CrossSite)
        );
        // With PUBLIC_URL set, a forged Host does not make a foreign origin ours.
        let h = [("origin", "https://evil.example"), ("host", "evil.example")];
        assert_eq!(
            verdict(&h, Some("https://chat.example")),
            Err(Forgery::ForeignOrigin)
        );
    }

    #[test]
    fn the_session_header_and_safe_methods_pass() {
        let h = headers(&[("origin", "https://evil.example"), ("x-session-id", "s")]);
        let o = Origins {
            public: None,
            integrators: &[],
        };
        assert_eq!(check(&Method::POST, &h, &o), Ok(()));
        let h = headers(&[("origin", "https://evil.example")]);
        assert_eq!(check(&Method::GET, &h, &o), Ok(()));
    }
}
