//! Wall-clock helpers. Pure logic takes `now` as a parameter; only the edges
//! (handlers, background tasks) call these.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 UTC with millisecond precision, like JavaScript's `toISOString()`.
pub fn rfc3339_ms(ms: i64) -> String {
    // RFC 3339 writes years 0000..=9999 only: other instants (a restored
    // message may claim any) are written as the epoch.
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000)
        .unwrap_or(t);
    // Rfc3339 formatting of a valid UTC time cannot fail.
    let s = t.format(&Rfc3339).unwrap_or_default();
    // Rfc3339 prints the minimal fraction; normalize to exactly 3 digits + Z.
    match s.split_once('.') {
        Some((head, _)) => format!("{head}.{:03}Z", ms.rem_euclid(1000)),
        None => format!("{}.{:03}Z", s.trim_end_matches('Z'), ms.rem_euclid(1000)),
    }
}

pub fn now_rfc3339() -> String {
    rfc3339_ms(now_ms())
}

/// `YYYY-MM-DD` (UTC) of an epoch-milliseconds instant, for S3 key prefixes.
pub fn date_of_ms(ms: i64) -> String {
    // `rfc3339_ms` always starts with a four-digit-year date (ASCII).
    rfc3339_ms(ms)[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_to_iso_string() {
        assert_eq!(rfc3339_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(date_of_ms(1_700_000_000_123), "2023-11-14");
    }

    #[test]
    fn instants_before_year_zero_have_a_date() {
        // Found by `any_instant_formats_as_a_date`: RFC 3339 formatting of
        // year -1 failed, and slicing the empty result panicked (reachable
        // from a restored message stamped "0000-01-01T00:00:00+01:00").
        assert_eq!(date_of_ms(-62_167_219_200_001), "1970-01-01");
        assert_eq!(date_of_ms(253_402_300_800_000), "1970-01-01");
        assert_eq!(date_of_ms(-62_167_219_200_000), "0000-01-01");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_instant_formats_as_a_date(ms in prop_oneof![
                any::<i64>(),
                -62_200_000_000_000i64..-62_100_000_000_000,
                253_402_200_000_000i64..253_402_400_000_000,
            ]) {
                let d = date_of_ms(ms);
                prop_assert_eq!(d.len(), 10);
                prop_assert!(rfc3339_ms(ms).ends_with('Z'));
            }
        }
    }
}
