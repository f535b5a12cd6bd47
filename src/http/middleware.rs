//! Cross-cutting HTTP layers: client IP resolution (trusting `X-Forwarded-For`
//! only from configured proxies), per-IP rate limits (the quotas are
//! `state::RateLimits`), request metrics by matched route, and security
//! headers (CSP without `unsafe-inline`, nosniff, referrer policy, HSTS in
//! production).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::error::ApiError;
use crate::state::AppState;

/// The content security policy: no inline code; images and media also from
/// `media_origins` (the S3 endpoint when presigned URLs point there), images
/// also from any `https:` host (avatar URLs, loaded without a referrer);
/// framing only by `ancestors` (`'none'` when empty).
pub fn csp(media_origins: &[String], ancestors: &[String]) -> String {
    let media = media_origins
        .iter()
        .fold(String::new(), |acc, o| acc + " " + o);
    let fa = if ancestors.is_empty() {
        "'none'".to_string()
    } else {
        ancestors.join(" ")
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:{media}; \
         media-src 'self' blob:{media}; connect-src 'self'; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors {fa}"
    )
}

/// The client address: the peer, or the right-most untrusted `X-Forwarded-For`
/// hop when the peer is a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// The client address as resolved by [`client_ip`], for handlers that bound per address.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

fn exempt(path: &str) -> bool {
    path == "/health" || path.starts_with("/static/") || path == "/favicon.ico"
}

pub async fn rate_limit(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, req.headers(), &state.config.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    let admin = req.uri().path().starts_with("/api/v1/admin/");
    if !state.limits.allow(&ip, admin) {
        return limited();
    }
    next.run(req).await
}

fn limited() -> Response {
    let mut r = ApiError::too_many().into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

/// Refusals of requests that came with a body say `Connection: close`: the
/// body may be unread (refused on its headers), and then the connection
/// cannot carry another request, so the client is told instead of finding out
/// when its next request on it fails.
pub async fn close_after_refused_body(req: Request, next: Next) -> Response {
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut res = next.run(req).await;
    if http1 && has_body && (res.status().is_client_error() || res.status().is_server_error()) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Route layer: counts and times every matched request (`metrics::Metrics::observe`).
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    let counted = res
        .extensions()
        .get::<crate::metrics::RefusalCounted>()
        .is_some();
    match res.status() {
        _ if counted => {}
        StatusCode::PAYLOAD_TOO_LARGE => state.metrics.refused.trip(
            "body-too-large",
            "request refused with 413: its body is over the limit",
        ),
        StatusCode::REQUEST_TIMEOUT => state
            .metrics
            .refused
            .trip("body-timeout", "request refused with 408: its body stalled"),
        _ => {}
    }
    state.metrics.observe(
        &method,
        &route,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

pub async fn security_headers(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // The auditor it once switched on is gone from browsers; `0` is today's advice,
    // and clients of the original service check that the header is present.
    h.insert("x-xss-protection", HeaderValue::from_static("0"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp(&state.media_origins, &[]))
                .unwrap_or(HeaderValue::from_static("default-src 'self'")),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    }
    if state.config.production {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 10.0.0.2"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "5.6.7.8".parse().unwrap();
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
