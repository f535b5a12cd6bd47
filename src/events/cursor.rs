//! Where a resumed event stream starts: the `Last-Event-ID` header a
//! reconnecting `EventSource` sends, or `?cursor=` from clients that resume
//! by hand. Pure: the two strings in, a sequence number out.

/// A resume point that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a non-negative integer event id")]
pub struct BadCursor;

/// The sequence number to resume after: the header's when it has one
/// (trimmed, non-empty), else the query's; `None` for a fresh stream.
pub fn resume_after(
    last_event_id: Option<&str>,
    query: Option<&str>,
) -> Result<Option<u64>, BadCursor> {
    let raw = last_event_id
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or(query.filter(|v| !v.is_empty()));
    raw.map(|r| r.parse().map_err(|_| BadCursor)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_and_blank_values_do_not_count() {
        assert_eq!(resume_after(Some(" 7 "), Some("3")), Ok(Some(7)));
        assert_eq!(resume_after(Some("  "), Some("3")), Ok(Some(3)));
        assert_eq!(resume_after(None, Some("")), Ok(None));
        assert_eq!(resume_after(None, None), Ok(None));
        assert_eq!(resume_after(Some("-1"), None), Err(BadCursor));
        assert_eq!(
            resume_after(None, Some("18446744073709551616")),
            Err(BadCursor)
        );
    }

    mod fuzz {
        use super::*;
        use crate::events::frame;
        use proptest::prelude::*;

        fn cursorish() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ \t]{0,2}[+-]?[0-9]{0,22}[ \t]{0,2}",
                any::<u64>().prop_map(|n| n.to_string()),
            ]
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_header_and_query_resume_somewhere_or_are_refused(
                header in prop::option::of(cursorish()),
                query in prop::option::of(cursorish()),
            ) {
                let r = resume_after(header.as_deref(), query.as_deref());
                let header_used = header.as_deref().is_some_and(|h| !h.trim().is_empty());
                let chosen = if header_used { header.as_deref().map(str::trim) } else { query.as_deref() };
                match r {
                    Ok(None) => prop_assert!(chosen.is_none_or(str::is_empty)),
                    Ok(Some(n)) => prop_assert_eq!(chosen.unwrap().parse::<u64>(), Ok(n)),
                    Err(BadCursor) => prop_assert!(chosen.unwrap().parse::<u64>().is_err()),
                }
            }

            /// A frame's `id:` line, as an `EventSource` echoes it back, resumes
            /// right after that frame.
            #[test]
            fn a_frames_id_line_resumes_after_it(seq in any::<u64>(), query in prop::option::of(cursorish())) {
                let f = frame::Event { kind: "new-message", from: Some("u"), seq: Some(seq), event_id: Some("m"), ..Default::default() }.json(b"{}");
                let text = std::str::from_utf8(&f.bytes).unwrap();
                let id = text.lines().find_map(|l| l.strip_prefix("id:")).unwrap();
                prop_assert_eq!(resume_after(Some(id), query.as_deref()), Ok(Some(seq)));
            }
        }
    }
}
