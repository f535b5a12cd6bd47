//! `chats3 ticket`: mints a signed embed ticket exactly as an integrator's
//! backend would, and prints it with its signature and a ready `/embed` URL.

use crate::auth::sign::sign_b64url;
use crate::config::{Config, Integrator};

pub struct TicketRequest<'a> {
    pub conversation_id: &'a str,
    pub user_id: &'a str,
    pub display_name: &'a str,
    pub origin: &'a str,
    pub role: &'a str,
    pub ttl_secs: i64,
}

pub struct Minted {
    pub ticket: String,
    pub signature: String,
}

/// Builds the ticket JSON (field order as the integrator guide shows) and signs its bytes.
pub fn mint(integ: &Integrator, req: &TicketRequest<'_>, now_ms: i64, nonce: &str) -> Minted {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire<'a> {
        integrator_id: &'a str,
        conversation_id: &'a str,
        user_id: &'a str,
        display_name: &'a str,
        role: &'a str,
        origin: &'a str,
        issued_at: i64,
        expires_at: i64,
        nonce: &'a str,
    }
    let wire = Wire {
        integrator_id: &integ.id,
        conversation_id: req.conversation_id,
        user_id: req.user_id,
        display_name: req.display_name,
        role: req.role,
        origin: req.origin,
        issued_at: now_ms,
        expires_at: now_ms + req.ttl_secs * 1000,
        nonce,
    };
    // A struct of strings and integers always serializes.
    let ticket = serde_json::to_string(&wire).expect("ticket serializes");
    let signature = sign_b64url(integ.secret.expose().as_bytes(), ticket.as_bytes());
    Minted { ticket, signature }
}

/// The chats3 address the printed URL starts with, and where it came from:
/// `--base-url`, else the configured `PUBLIC_URL`, else where this configuration
/// listens (`HOST`, 127.0.0.1 for an unspecified address; `PORT`; https with TLS).
/// Never `localhost` by itself: a host page on `http://localhost:8080` and chats3
/// on `localhost` would be one site, which hides what third-party embedding changes.
pub fn base_url(explicit: Option<String>, config: &Config) -> (String, &'static str) {
    match (explicit, &config.public_url) {
        (Some(b), _) => (b, "--base-url"),
        (None, Some(p)) => (p.clone(), "PUBLIC_URL"),
        (None, None) => (
            crate::cli::admin::default_base_url(config),
            "HOST and PORT; set PUBLIC_URL or --base-url to change it",
        ),
    }
}

/// `{base}/embed?ticket=…&signature=…` with both values URL-encoded.
pub fn embed_url(base: &str, m: &Minted) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("ticket", &m.ticket)
        .append_pair("signature", &m.signature)
        .finish();
    format!("{}/embed?{q}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ticket::{TicketPolicy, verify};
    use crate::config::Secret;

    #[test]
    fn minted_tickets_verify() {
        let integ = Integrator {
            id: "acme".into(),
            secret: Secret::new("acme-secret-0123456789"),
            allowed_origins: vec!["https://app.acme.com".into()],
            webhook_url: None,
        };
        let req = TicketRequest {
            conversation_id: "c1",
            user_id: "u1",
            display_name: "Ann",
            origin: "https://app.acme.com",
            role: "participant",
            ttl_secs: 60,
        };
        let m = mint(&integ, &req, 1_700_000_000_000, "n1");
        let policy = TicketPolicy {
            max_age_ms: 60_000,
            clock_skew_ms: 30_000,
        };
        let t = verify(
            &m.ticket,
            &m.signature,
            |_| Some(&integ),
            1_700_000_001_000,
            policy,
        )
        .unwrap();
        assert_eq!(t.user_id, "u1");
        let url = embed_url("http://localhost:3000/", &m);
        assert!(
            url.starts_with("http://localhost:3000/embed?ticket=%7B%22integratorId%22"),
            "{url}"
        );
        assert!(url.contains("&signature="));
    }

    #[test]
    fn the_printed_url_uses_the_configured_address() {
        let mut c = Config {
            host: "127.0.0.1".parse().unwrap(),
            port: 3000,
            ..Default::default()
        };
        assert_eq!(base_url(None, &c).0, "http://127.0.0.1:3000");
        c.host = "0.0.0.0".parse().unwrap();
        assert_eq!(base_url(None, &c).0, "http://127.0.0.1:3000");
        c.public_url = Some("https://chat.example.net".into());
        assert_eq!(
            base_url(None, &c),
            ("https://chat.example.net".into(), "PUBLIC_URL")
        );
        assert_eq!(
            base_url(Some("http://127.0.0.1:9".into()), &c).0,
            "http://127.0.0.1:9"
        );
    }
}
