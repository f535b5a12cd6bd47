//! Settings for the property tests that fuzz every parser of untrusted input
//! (the `mod fuzz` inside each parser's tests). A bounded number of cases keeps
//! `cargo test` quick; `PROPTEST_CASES=N` runs more (a longer local or nightly run).

use proptest::test_runner::Config;

/// Cases per property when `PROPTEST_CASES` is not set.
pub const CASES: u32 = 256;

/// The config every property runs with: [`CASES`] cases (or `PROPTEST_CASES`),
/// and no regression files written into `src/` (a failure found here becomes a
/// plain unit test next to the fix instead).
pub fn config() -> Config {
    let from_env = Config::default();
    Config {
        cases: match std::env::var_os("PROPTEST_CASES") {
            Some(_) => from_env.cases,
            None => CASES,
        },
        failure_persistence: None,
        ..from_env
    }
}

pub mod strategy {
    //! Generators shared by several properties.

    use proptest::prelude::*;
    use serde_json::Value;

    /// RFC 3339-shaped strings, valid or nearly, with extreme offsets.
    pub fn rfc3339() -> impl Strategy<Value = String> {
        "(0000|9999|[0-9]{4})-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,12})?(Z|z|[+-][0-2][0-9]:[0-5][0-9])"
    }

    /// Any JSON value: every number shape, odd strings, a little nesting.
    pub fn json_value() -> impl Strategy<Value = Value> + Clone {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            rfc3339().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `base` (a JSON object) with each field kept (mostly), removed, or
    /// replaced by a value from `other`: inputs that get past the first checks.
    pub fn mutated_object(
        base: Value,
        other: impl Strategy<Value = Value> + Clone + 'static,
    ) -> impl Strategy<Value = Value> {
        let Value::Object(fields) = base else {
            panic!("mutated_object takes an object");
        };
        let fields: Vec<(String, Value)> = fields.into_iter().collect();
        let n = fields.len();
        let one = prop_oneof![
            8 => Just(Edit::Keep),
            1 => Just(Edit::Remove),
            2 => other.prop_map(Edit::Replace),
        ];
        prop::collection::vec(one, n).prop_map(move |edits| {
            Value::Object(
                fields
                    .iter()
                    .zip(edits)
                    .filter_map(|((k, v), e)| match e {
                        Edit::Keep => Some((k.clone(), v.clone())),
                        Edit::Remove => None,
                        Edit::Replace(r) => Some((k.clone(), r)),
                    })
                    .collect(),
            )
        })
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Keep,
        Remove,
        Replace(Value),
    }
}
