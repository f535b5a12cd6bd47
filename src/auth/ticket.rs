//! Embed tickets: parsing and verification, pure (the clock is passed in).
//!
//! The integrator signs the exact ticket bytes with HMAC-SHA256 and sends
//! `{ticket, signature}`. We verify those bytes, never a re-serialization.
//! The single-use nonce check needs storage and is done by the caller after
//! [`verify`] succeeds.

use serde::Deserialize;
use serde_json::Value;

use super::origin::{canonical_origin, origin_allowed};
use super::sign::verify_b64url;
use crate::config::Integrator;

/// A verified ticket's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub integrator_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: String,
    pub origin: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub nonce: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("Ticket is not valid JSON")]
    Malformed,
    #[error("Ticket is missing field {0}")]
    MissingField(&'static str),
    #[error("Ticket field {0} has the wrong type or format")]
    BadField(&'static str),
    #[error("Unknown integrator")]
    UnknownIntegrator,
    #[error("Invalid signature")]
    BadSignature,
    #[error("Ticket expired")]
    Expired,
    #[error("Ticket issued too long ago or in the future")]
    Stale,
    #[error("Origin not allowed")]
    OriginNotAllowed,
    #[error("Ticket already used")]
    Replayed,
}

/// Time-window policy for tickets.
#[derive(Debug, Clone, Copy)]
pub struct TicketPolicy {
    pub max_age_ms: i64,
    pub clock_skew_ms: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTicket {
    integrator_id: Option<Value>,
    conversation_id: Option<Value>,
    user_id: Option<Value>,
    display_name: Option<Value>,
    avatar_url: Option<Value>,
    role: Option<Value>,
    origin: Option<Value>,
    issued_at: Option<Value>,
    expires_at: Option<Value>,
    nonce: Option<Value>,
}

fn req_str(v: Option<Value>, name: &'static str) -> Result<String, TicketError> {
    match v {
        None | Some(Value::Null) => Err(TicketError::MissingField(name)),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(TicketError::MissingField(name)),
        Some(_) => Err(TicketError::BadField(name)),
    }
}

/// An id field: a string, or a JSON number (the original took any present
/// value, so backends put database ids in as numbers), kept as its decimal text.
fn req_id(v: Option<Value>, name: &'static str) -> Result<String, TicketError> {
    match v {
        Some(Value::Number(n)) => Ok(n.to_string()),
        v => req_str(v, name),
    }
}

/// Timestamps are accepted as epoch milliseconds (the original's `Date.now()`),
/// epoch seconds (values below 10^11) or RFC 3339 strings.
pub fn parse_timestamp_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64()?;
            if !f.is_finite() || f < 0.0 {
                return None;
            }
            Some(if f < 1e11 {
                (f * 1000.0) as i64
            } else {
                f as i64
            })
        }
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()?;
            Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        _ => None,
    }
}

fn req_time(v: Option<Value>, name: &'static str) -> Result<i64, TicketError> {
    match v {
        None | Some(Value::Null) => Err(TicketError::MissingField(name)),
        Some(v) => parse_timestamp_ms(&v).ok_or(TicketError::BadField(name)),
    }
}

/// Parses the ticket JSON and checks every field is present.
pub fn parse(ticket: &str) -> Result<Ticket, TicketError> {
    let raw: RawTicket = serde_json::from_str(ticket).map_err(|_| TicketError::Malformed)?;
    let avatar_url = match raw.avatar_url {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(TicketError::BadField("avatarUrl")),
    };
    Ok(Ticket {
        integrator_id: req_str(raw.integrator_id, "integratorId")?,
        conversation_id: req_id(raw.conversation_id, "conversationId")?,
        user_id: req_id(raw.user_id, "userId")?,
        display_name: req_str(raw.display_name, "displayName")?,
        avatar_url,
        role: req_str(raw.role, "role")?,
        origin: req_str(raw.origin, "origin")?,
        issued_at_ms: req_time(raw.issued_at, "issuedAt")?,
        expires_at_ms: req_time(raw.expires_at, "expiresAt")?,
        nonce: req_id(raw.nonce, "nonce")?,
    })
}

/// The integrator id and origin a ticket names, read without verifying
/// anything: for a refusal, whose log line it is and where it may be shown.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Claims {
    pub integrator_id: Option<String>,
    pub origin: Option<String>,
}

/// Reads [`Claims`] from any bytes; what is missing or not a string is `None`.
pub fn claims(ticket: &str) -> Claims {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        integrator_id: Option<Value>,
        origin: Option<Value>,
    }
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    match serde_json::from_str::<Raw>(ticket) {
        Ok(r) => Claims {
            integrator_id: text(r.integrator_id),
            origin: text(r.origin),
        },
        Err(_) => Claims::default(),
    }
}

/// Where the refusal of a ticket claiming `origin` for `integ` may be shown:
/// that origin, when it is canonical and in the integrator's `allowedOrigins`.
/// An unsigned ticket can claim any integrator and origin, so this only tells
/// the caller which of the integrator's own pages may see a page of fixed text.
pub fn refusal_origin(integ: &Integrator, origin: &str) -> Option<String> {
    let origin = canonical_origin(origin)?;
    origin_allowed(&integ.allowed_origins, origin).then(|| origin.to_owned())
}

/// Verifies everything but the nonce: fields, integrator, signature over the
/// exact bytes (constant time), expiry, age, and origin allow-list.
pub fn verify<'a>(
    ticket: &str,
    signature: &str,
    integrators: impl Fn(&str) -> Option<&'a Integrator>,
    now_ms: i64,
    policy: TicketPolicy,
) -> Result<Ticket, TicketError> {
    let t = parse(ticket)?;
    let integ = integrators(&t.integrator_id).ok_or(TicketError::UnknownIntegrator)?;
    if !verify_b64url(
        integ.secret.expose().as_bytes(),
        ticket.as_bytes(),
        signature,
    ) {
        return Err(TicketError::BadSignature);
    }
    // Saturating: the times are the integrator's (a ticket may say 1e300).
    if now_ms >= t.expires_at_ms.saturating_add(policy.clock_skew_ms) {
        return Err(TicketError::Expired);
    }
    let age = now_ms.saturating_sub(t.issued_at_ms);
    if age > policy.max_age_ms.saturating_add(policy.clock_skew_ms)
        || age < policy.clock_skew_ms.saturating_neg()
    {
        return Err(TicketError::Stale);
    }
    if !origin_allowed(&integ.allowed_origins, &t.origin) {
        return Err(TicketError::OriginNotAllowed);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sign::sign_b64url;
    use crate::config::Secret;

    const NOW: i64 = 1_700_000_000_000;
    const POLICY: TicketPolicy = TicketPolicy {
        max_age_ms: 60_000,
        clock_skew_ms: 30_000,
    };

    fn integ() -> Integrator {
        Integrator {
            id: "acme".into(),
            secret: Secret::new("acme-secret-0123456789"),
            allowed_origins: vec!["https://*.acme.com".into(), "https://acme.com".into()],
            webhook_url: None,
        }
    }

    fn ticket(issued: i64, expires: i64, origin: &str) -> String {
        serde_json::json!({
            "integratorId": "acme", "conversationId": "c1", "userId": "u1",
            "displayName": "Ann", "role": "participant", "origin": origin,
            "issuedAt": issued, "expiresAt": expires, "nonce": "n1"
        })
        .to_string()
    }

    fn check(t: &str, sig: &str, now: i64) -> Result<Ticket, TicketError> {
        let i = integ();
        verify(t, sig, |id| (id == "acme").then_some(&i), now, POLICY)
    }

    fn signed(t: &str) -> String {
        sign_b64url(b"acme-secret-0123456789", t.as_bytes())
    }

    #[test]
    fn valid_ticket_is_accepted() {
        let t = ticket(NOW - 1000, NOW + 60_000, "https://app.acme.com");
        let v = check(&t, &signed(&t), NOW).unwrap();
        assert_eq!(v.user_id, "u1");
        assert_eq!(v.nonce, "n1");
    }

    #[test]
    fn tampered_ticket_is_refused() {
        let t = ticket(NOW, NOW + 60_000, "https://acme.com");
        let sig = signed(&t);
        let t2 = t.replace("\"u1\"", "\"admin\"");
        assert_eq!(check(&t2, &sig, NOW), Err(TicketError::BadSignature));
    }

    #[test]
    fn expired_ticket_is_refused() {
        let t = ticket(NOW - 50_000, NOW - 31_000, "https://acme.com");
        assert_eq!(check(&t, &signed(&t), NOW), Err(TicketError::Expired));
    }

    #[test]
    fn old_or_future_issue_time_is_refused_beyond_skew() {
        let t = ticket(NOW - 91_000, NOW + 60_000, "https://acme.com");
        assert_eq!(check(&t, &signed(&t), NOW), Err(TicketError::Stale));
        let t = ticket(NOW + 31_000, NOW + 90_000, "https://acme.com");
        assert_eq!(check(&t, &signed(&t), NOW), Err(TicketError::Stale));
        let t = ticket(NOW + 20_000, NOW + 90_000, "https://acme.com");
        assert!(check(&t, &signed(&t), NOW).is_ok());
    }

    #[test]
    fn origin_outside_allow_list_is_refused() {
        let t = ticket(NOW, NOW + 60_000, "https://evil.com");
        assert_eq!(
            check(&t, &signed(&t), NOW),
            Err(TicketError::OriginNotAllowed)
        );
    }

    #[test]
    fn unknown_integrator_and_missing_fields() {
        let t = ticket(NOW, NOW + 60_000, "https://acme.com").replace("\"acme\"", "\"other\"");
        assert_eq!(
            check(&t, &signed(&t), NOW),
            Err(TicketError::UnknownIntegrator)
        );
        let t = r#"{"integratorId":"acme"}"#;
        assert_eq!(
            check(t, &signed(t), NOW),
            Err(TicketError::MissingField("conversationId"))
        );
        assert_eq!(check("nope", "x", NOW), Err(TicketError::Malformed));
    }

    #[test]
    fn a_refusal_is_shown_only_to_a_canonical_allowed_origin() {
        let t = ticket(NOW, NOW + 60_000, "https://app.acme.com");
        let c = claims(&t);
        assert_eq!(c.integrator_id.as_deref(), Some("acme"));
        assert_eq!(
            refusal_origin(&integ(), c.origin.as_deref().unwrap()).as_deref(),
            Some("https://app.acme.com")
        );
        for o in [
            "https://evil.com",
            "https://App.acme.com",
            "https://a;b.acme.com",
            "https://app.acme.com:443",
        ] {
            assert_eq!(refusal_origin(&integ(), o), None, "{o}");
        }
        assert_eq!(claims("nope"), Claims::default());
        assert_eq!(
            claims(r#"{"integratorId":7,"origin":"https://acme.com"}"#),
            Claims {
                integrator_id: None,
                origin: Some("https://acme.com".into())
            }
        );
    }

    #[test]
    fn ids_given_as_numbers_are_kept_as_their_decimal_text() {
        let t = serde_json::json!({
            "integratorId": "acme", "conversationId": 98765, "userId": 12345,
            "displayName": "Ann", "role": "customer", "origin": "https://app.acme.com",
            "issuedAt": NOW, "expiresAt": NOW + 60_000, "nonce": 0.123
        })
        .to_string();
        let v = parse(&t).unwrap();
        assert_eq!(
            (
                v.conversation_id.as_str(),
                v.user_id.as_str(),
                v.nonce.as_str()
            ),
            ("98765", "12345", "0.123")
        );
        let role = t.replace(r#""role":"customer""#, r#""role":7"#);
        assert_eq!(parse(&role).unwrap_err(), TicketError::BadField("role"));
    }

    #[test]
    fn seconds_and_rfc3339_timestamps_are_understood() {
        assert_eq!(
            parse_timestamp_ms(&serde_json::json!(1_700_000_000)),
            Some(NOW)
        );
        assert_eq!(parse_timestamp_ms(&serde_json::json!(NOW)), Some(NOW));
        assert_eq!(
            parse_timestamp_ms(&serde_json::json!("2023-11-14T22:13:20Z")),
            Some(NOW)
        );
        assert_eq!(parse_timestamp_ms(&serde_json::json!(true)), None);
    }

    #[test]
    fn a_far_future_expiry_does_not_overflow_and_age_still_bounds_it() {
        // Found by the property below: `expiresAt: 1e300` saturates to
        // i64::MAX, and adding the clock skew to it overflowed.
        let t =
            ticket(NOW, 0, "https://acme.com").replace("\"expiresAt\":0", "\"expiresAt\":1e300");
        assert!(t.contains("1e300"), "{t}");
        assert!(check(&t, &signed(&t), NOW).is_ok());
        assert_eq!(
            check(&t, &signed(&t), NOW + 91_000),
            Err(TicketError::Stale)
        );
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{json_value, mutated_object, rfc3339};
        use proptest::prelude::*;
        use serde_json::Value;

        /// Values a ticket field could plausibly hold, times near `NOW` included.
        fn plausible() -> impl Strategy<Value = Value> + Clone {
            prop_oneof![
                Just(Value::from("acme")),
                Just(Value::from("https://app.acme.com")),
                "[a-z0-9 ]{0,12}".prop_map(Value::from),
                json_value(),
                (NOW - 200_000..NOW + 200_000).prop_map(Value::from),
                (NOW / 1000 - 200..NOW / 1000 + 200).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                rfc3339().prop_map(Value::from),
            ]
        }

        fn policy() -> impl Strategy<Value = TicketPolicy> {
            // What configuration allows: a skew of 0..=300 s.
            (0..=i64::MAX / 1000, 0..=300_000i64).prop_map(|(max_age_ms, clock_skew_ms)| {
                TicketPolicy {
                    max_age_ms,
                    clock_skew_ms,
                }
            })
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_bytes_are_refused_without_panicking(t in any::<String>(), sig in any::<String>()) {
                let i = integ();
                let r = verify(&t, &sig, |id| (id == "acme").then_some(&i), NOW, POLICY);
                prop_assert!(r.is_err());
                let _ = parse(&t);
            }

            #[test]
            fn any_bytes_give_claims_and_a_refusal_origin_only_from_the_allow_list(
                t in prop_oneof![
                    any::<String>(),
                    mutated_object(
                        serde_json::json!({"integratorId": "acme", "origin": "https://app.acme.com"}),
                        plausible(),
                    ).prop_map(|v| v.to_string()),
                ],
            ) {
                let c = claims(&t);
                if let Some(o) = c.origin.as_deref().and_then(|o| refusal_origin(&integ(), o)) {
                    prop_assert!(origin_allowed(&integ().allowed_origins, &o));
                    prop_assert_eq!(canonical_origin(&o), Some(o.as_str()));
                }
            }

            #[test]
            fn any_timestamp_value_parses_or_is_refused(v in json_value()) {
                if let Some(ms) = parse_timestamp_ms(&v) {
                    prop_assert!(ms >= i64::MIN / 2 || matches!(v, Value::String(_)));
                }
            }

            #[test]
            fn signed_tickets_of_any_shape_are_decided_without_panicking(
                t in mutated_object(
                    serde_json::json!({
                        "integratorId": "acme", "conversationId": "c1", "userId": "u1",
                        "displayName": "Ann", "avatarUrl": "https://acme.com/a.png",
                        "role": "participant", "origin": "https://app.acme.com",
                        "issuedAt": NOW, "expiresAt": NOW + 60_000, "nonce": "n1"
                    }),
                    plausible(),
                ),
                now in prop_oneof![NOW - 300_000..NOW + 300_000, any::<i64>()],
                policy in policy(),
            ) {
                let t = t.to_string();
                let i = integ();
                let r = verify(&t, &signed(&t), |id| (id == "acme").then_some(&i), now, policy);
                if let Ok(v) = r {
                    // An accepted ticket is inside its time window.
                    prop_assert!(i128::from(now) < i128::from(v.expires_at_ms) + i128::from(policy.clock_skew_ms));
                    let age = i128::from(now) - i128::from(v.issued_at_ms);
                    prop_assert!(age <= i128::from(policy.max_age_ms) + i128::from(policy.clock_skew_ms));
                    prop_assert!(age >= -i128::from(policy.clock_skew_ms));
                    prop_assert!(origin_allowed(&i.allowed_origins, &v.origin));
                }
            }

            #[test]
            fn a_well_formed_ticket_in_its_window_round_trips(
                issued_ago in -30_000i64..=90_000,
                left in 1i64..=60_000,
                sub in "[a-z][a-z0-9-]{0,10}",
            ) {
                // Issued within the allowed age and skew, expiring `left` ms from now.
                let (issued, expires) = (NOW - issued_ago, NOW + left);
                let t = ticket(issued, expires, &format!("https://{sub}.acme.com"));
                let v = check(&t, &signed(&t), NOW).unwrap();
                prop_assert_eq!(v.issued_at_ms, issued);
                prop_assert_eq!(v.expires_at_ms, expires);
            }
        }
    }
}
