//! Loading the configuration: defaults, file, environment, validation, and
//! that every key of the table can be set both ways.

use std::collections::HashSet;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_original_service() {
    let c = Config::from_sources(None, &env(&[])).unwrap();
    assert_eq!(c.port, 3000);
    assert_eq!(c.rate_limit_per_min, 100);
    assert_eq!(c.admin_rate_limit_per_min, 10);
    assert_eq!(c.max_participants, 50);
    assert!(!c.production);
    assert!(c.s3.is_none());
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "port = 4000\nrate_limit_per_min = 5\n[media]\nmesh_max = 6\nlast_n = 3\n",
    )
    .unwrap();
    let c = Config::from_sources(Some(&p), &env(&[("PORT", "5000")])).unwrap();
    assert_eq!(c.port, 5000);
    assert_eq!(c.rate_limit_per_min, 5);
    assert_eq!(c.mesh_max, 6);
    assert_eq!(c.last_n, 3);
}

#[test]
fn invalid_values_name_the_key() {
    let e = Config::from_sources(None, &env(&[("PORT", "eighty")])).unwrap_err();
    assert!(e.to_string().contains("PORT"), "{e}");
    let e = Config::from_sources(None, &env(&[("COOKIE_SECRET", "short")])).unwrap_err();
    assert!(e.to_string().contains("COOKIE_SECRET"), "{e}");
    let e = Config::from_sources(None, &env(&[("INTEGRATORS", "{")])).unwrap_err();
    assert!(e.to_string().contains("INTEGRATORS"), "{e}");
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "prot = 4000\n").unwrap();
    let e = Config::from_sources(Some(&p), &env(&[])).unwrap_err();
    assert!(e.to_string().contains("prot"), "{e}");
}

#[test]
fn min_free_bytes_defaults_to_64_mib_and_is_configurable() {
    let c = Config::from_sources(None, &env(&[])).unwrap();
    assert_eq!(c.min_free_bytes, 64 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "min_free_bytes = 1048576\n").unwrap();
    let c = Config::from_sources(Some(&p), &env(&[])).unwrap();
    assert_eq!(c.min_free_bytes, 1024 * 1024);
    let c = Config::from_sources(Some(&p), &env(&[("MIN_FREE_BYTES", "0")])).unwrap();
    assert_eq!(
        c.min_free_bytes, 0,
        "the environment wins; 0 turns the check off"
    );
    let e = Config::from_sources(None, &env(&[("MIN_FREE_BYTES", "lots")])).unwrap_err();
    assert!(e.to_string().contains("MIN_FREE_BYTES"), "{e}");
}

#[test]
fn integrators_and_s3_from_env() {
    let c = Config::from_sources(
        None,
        &env(&[
            (
                "INTEGRATORS",
                r#"[{"id":"acme","secret":"0123456789abcdef0123","allowedOrigins":["https://*.acme.com"]}]"#,
            ),
            ("S3_BUCKET", "b"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("NODE_ENV", "production"),
        ]),
    )
    .unwrap();
    assert_eq!(c.integrator("acme").unwrap().allowed_origins.len(), 1);
    let s3 = c.s3.unwrap();
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(c.production);
    assert_eq!(format!("{:?}", c.integrators[0].secret), "***");
}

#[test]
fn two_integrators_with_one_id_are_refused_by_name() {
    let e = Config::from_sources(
        None,
        &env(&[(
            "INTEGRATORS",
            r#"[{"id":"acme","secret":"0123456789abcdef0123","allowedOrigins":[]},
                {"id":"acme","secret":"second-secret-0123456789","allowedOrigins":[]}]"#,
        )]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("INTEGRATORS[1].id"), "{e}");
}

#[test]
fn durations_that_overflow_in_milliseconds_are_refused() {
    // Found by `any_environment_loads_or_names_a_key`: a TTL of
    // 9223372036854776 s passed, and `session_ttl_secs * 1000`
    // overflowed on every authenticated request.
    let e =
        Config::from_sources(None, &env(&[("SESSION_TTL_SECS", "9223372036854776")])).unwrap_err();
    assert!(e.to_string().contains("SESSION_TTL_SECS"), "{e}");
    assert!(Config::from_sources(None, &env(&[("SESSION_TTL_SECS", "315360000")])).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    for bad in [
        "ticket_max_age_secs = 9223372036854775807\n",
        "ticket_max_age_secs = -1\n",
    ] {
        std::fs::write(&p, bad).unwrap();
        let e = Config::from_sources(Some(&p), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("ticket_max_age_secs"), "{e}");
    }
}

/// Every key's example as environment variables (`alias`: which of a key's variables, when it has
/// that many).
fn examples_in_env(alias: usize) -> HashMap<String, String> {
    Config::keys()
        .iter()
        .map(|k| {
            let var = k.env[alias.min(k.env.len() - 1)];
            (var.to_string(), k.example_env.clone())
        })
        .collect()
}

fn assert_examples_read(c: &Config, how: &str) {
    for k in Config::keys() {
        assert_eq!((k.read)(c), k.example, "{} from {how}", k.path());
    }
}

#[test]
fn every_key_is_settable_from_the_environment() {
    let aliases = Config::keys().iter().map(|k| k.env.len()).max().unwrap();
    for alias in 0..aliases {
        let c =
            Config::from_sources(None, &examples_in_env(alias)).unwrap_or_else(|e| panic!("{e}"));
        assert_examples_read(
            &c,
            &format!("the environment (variable {alias} of each key)"),
        );
    }
}

#[test]
fn every_key_is_settable_from_the_file() {
    let mut doc = toml::Table::new();
    for k in Config::keys() {
        let table = match k.section {
            Some(s) => doc
                .entry(s)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap(),
            None => &mut doc,
        };
        table.insert(k.name.into(), k.example.clone().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml::to_string(&doc).unwrap()).unwrap();
    let c = Config::from_sources(Some(&p), &env(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert_examples_read(&c, "the file");
}

#[test]
fn every_key_has_a_doc_an_example_unlike_its_default_and_unique_names() {
    let (mut paths, mut vars) = (HashSet::new(), HashSet::new());
    for k in Config::keys() {
        let path = k.path();
        assert!(!k.doc.is_empty(), "{path} has no doc");
        assert!(
            k.example.is_some(),
            "{path}: its example does not show as TOML"
        );
        // Otherwise the two tests above could not tell that the key was read.
        assert_ne!(k.example, k.default, "{path}: its example is its default");
        assert_ne!(k.example, (k.read)(&Config::default()), "{path}");
        assert!(paths.insert(path.clone()), "{path} twice");
        for v in k.env {
            assert!(vars.insert(*v), "{v} names two keys");
        }
    }
}

#[test]
fn each_refused_value_names_its_key_both_ways() {
    for (var, value, key) in [
        ("IDLE_SECS", "15", "limits.idle_secs (IDLE_SECS)"),
        (
            "STREAMS_PER_IP",
            "0",
            "limits.streams_per_ip (STREAMS_PER_IP)",
        ),
        ("COOKIE_SECRET", "short", "cookie_secret (COOKIE_SECRET)"),
        ("ADMIN_PASSWORD", "short", "admin_password (ADMIN_PASSWORD)"),
        (
            "MAX_PARTICIPANTS",
            "0",
            "max_participants (MAX_PARTICIPANTS)",
        ),
        (
            "MAX_MESSAGE_CHARS",
            "0",
            "max_message_chars (MAX_MESSAGE_CHARS)",
        ),
        (
            "SESSION_TTL_SECS",
            "59",
            "session_ttl_secs (SESSION_TTL_SECS)",
        ),
        (
            "TICKET_MAX_AGE_SECS",
            "86401",
            "ticket_max_age_secs (TICKET_MAX_AGE_SECS)",
        ),
        (
            "TICKET_CLOCK_SKEW_SECS",
            "301",
            "ticket_clock_skew_secs (TICKET_CLOCK_SKEW_SECS)",
        ),
        ("ICE_SERVERS", "{}", "ice_servers (ICE_SERVERS)"),
        ("PUBLIC_URL", "chat.example.com", "public_url (PUBLIC_URL)"),
        ("HEARTBEAT_SECS", "16", "heartbeat_secs (HEARTBEAT_SECS)"),
        ("MESH_MAX", "1", "media.mesh_max (MESH_MAX)"),
        ("S3_REGION", "eu-west-1", "s3.bucket (S3_BUCKET)"),
        (
            "TLS_CERT_FILE",
            "/etc/chats3/cert.pem",
            "tls_key_file (TLS_KEY_FILE)",
        ),
        ("MAX_BODY_BYTES", "lots", "MAX_BODY_BYTES"),
    ] {
        match Config::from_sources(None, &env(&[(var, value)])) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{var}={value}"),
            other => panic!("{var}={value}: {other:?}"),
        }
    }
}

#[test]
fn wrongly_typed_file_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    for (text, key) in [
        ("port = \"80\"\n", "port"),
        ("port = 70000\n", "port"),
        ("trusted_proxies = [\"10.0.0.300\"]\n", "trusted_proxies"),
        ("[media]\nrelay_udp = \"nowhere\"\n", "media.relay_udp"),
        ("[limits]\nidle_secs = -1\n", "limits.idle_secs"),
        ("[s3]\nforce_path_style = \"yes\"\n", "s3.force_path_style"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = Config::from_sources(Some(&p), &env(&[])).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key: k, .. } if k == key),
            "{text}: {e}"
        );
        assert!(!e.to_string().ends_with('\n'), "{e:?}");
    }
}

#[test]
fn environment_completes_and_overrides_the_files_tls_pair() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "tls_cert_file = \"/a.pem\"\ntls_key_file = \"/a.key\"\n",
    )
    .unwrap();
    let c = Config::from_sources(Some(&p), &env(&[("TLS_KEY_FILE", "/b.key")])).unwrap();
    assert_eq!(c.tls, Some(("/a.pem".into(), "/b.key".into())));
    std::fs::write(&p, "tls_cert_file = \"/a.pem\"\n").unwrap();
    let e = Config::from_sources(Some(&p), &env(&[])).unwrap_err();
    assert!(e.to_string().contains("tls_key_file"), "{e}");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Environment variables the configuration reads (from its table).
    fn env_keys() -> Vec<&'static str> {
        Config::keys()
            .iter()
            .flat_map(|k| k.env.iter().copied())
            .collect()
    }

    /// Keys of one section of the file (`None`: the top level), and a typo.
    fn file_keys(section: Option<&str>) -> Vec<&'static str> {
        let keys = Config::keys().into_iter().filter(|k| k.section == section);
        keys.map(|k| k.name).chain(["prot"]).collect()
    }

    fn keys(list: Vec<&'static str>) -> impl Strategy<Value = &'static str> {
        prop::sample::select(list)
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => any::<i64>().prop_map(|n| n.to_string()),
            2 => any::<u64>().prop_map(|n| n.to_string()),
            3 => (0i64..100_000).prop_map(|n| n.to_string()),
            1 => "[0-9a-f.:/,\\[\\] ]{0,24}",
            1 => Just("[]".to_string()),
            1 => Just(r#"[{"id":"a","secret":"0123456789abcdef","allowedOrigins":["https://[::1]"]}]"#.to_string()),
            1 => any::<String>(),
        ]
    }

    fn toml_value() -> impl Strategy<Value = toml::Value> {
        prop_oneof![
            any::<i64>().prop_map(toml::Value::Integer),
            (0i64..100_000).prop_map(toml::Value::Integer),
            text().prop_map(toml::Value::String),
            any::<bool>().prop_map(toml::Value::Boolean),
            any::<f64>().prop_map(toml::Value::Float),
            prop::collection::vec(text().prop_map(toml::Value::String), 0..3)
                .prop_map(toml::Value::Array),
        ]
    }

    /// A config file: a table of known (and some unknown) keys, some of its
    /// sections, and sometimes arbitrary text instead.
    fn file() -> impl Strategy<Value = String> {
        let section = |s: &'static str| {
            let keys = prop::collection::btree_map(keys(file_keys(Some(s))), toml_value(), 0..3);
            prop::option::of(keys).prop_map(move |m| (s, m))
        };
        let table = (
            prop::collection::btree_map(keys(file_keys(None)), toml_value(), 0..4),
            prop::collection::vec(
                prop_oneof![section("media"), section("limits"), section("s3")],
                0..3,
            ),
        )
            .prop_map(|(top, sections)| {
                let mut t: toml::Table = top.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                for (name, m) in sections {
                    if let Some(m) = m {
                        let m: toml::Table =
                            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                        t.insert(name.into(), toml::Value::Table(m));
                    }
                }
                toml::to_string(&t).unwrap_or_default()
            });
        prop_oneof![4 => table, 1 => any::<String>(), 1 => "[a-z_\\[\\]=\"' 0-9\n]{0,80}"]
    }

    /// What the rest of the server computes from a valid configuration.
    fn check_derived(c: &Config) -> Result<(), TestCaseError> {
        prop_assert!(c.session_ttl_secs.checked_mul(1000).is_some());
        let max_age = c.ticket_max_age_secs.checked_mul(1000);
        let skew = c.ticket_clock_skew_secs.checked_mul(1000);
        let window = max_age.zip(skew).and_then(|(a, s)| a.checked_add(s));
        prop_assert!(window.is_some());
        prop_assert!(c.ticket_max_age_secs >= 0);
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config())]

        #[test]
        fn any_environment_loads_or_names_a_key(
            vars in prop::collection::btree_map(keys(env_keys()), text(), 0..3),
        ) {
            let env: HashMap<String, String> =
                vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            match Config::from_sources(None, &env) {
                Ok(c) => check_derived(&c)?,
                Err(ConfigError::Invalid { key, .. }) => prop_assert!(!key.is_empty()),
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }

        #[test]
        fn any_config_file_loads_or_is_refused(text in file()) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.toml");
            std::fs::write(&p, &text).unwrap();
            if let Ok(c) = Config::from_sources(Some(&p), &HashMap::new()) {
                check_derived(&c)?;
            }
        }
    }
}

#[test]
fn a_trunk_needs_its_certificates_and_a_dialable_address() {
    let nats = ("NATS_URL", "nats://127.0.0.1:4222");
    let certs = [
        ("CLUSTER_CERT", "/c/node.pem"),
        ("CLUSTER_KEY", "/c/node.key"),
        ("CLUSTER_CA", "/c/ca.pem"),
    ];
    let refused = |pairs: &[(&str, &str)], key: &str| {
        let e = Config::from_sources(None, &env(pairs)).unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    };
    refused(&[nats, ("TRUNK_BIND", "127.0.0.1:7000")], "trunk_bind");
    refused(&[nats, certs[0], certs[1], certs[2]], "trunk_bind");
    let mut pairs = vec![nats, ("TRUNK_BIND", "0.0.0.0:7000")];
    pairs.extend(certs);
    refused(&pairs, "trunk_addr");
    pairs.push(("TRUNK_ADDR", "0.0.0.0:7000"));
    refused(&pairs, "trunk_addr");
    pairs.pop();
    pairs.push(("TRUNK_ADDR", "10.0.0.1:7000"));
    let c = Config::from_sources(None, &env(&pairs)).unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.trunk_addr, Some("10.0.0.1:7000".parse().unwrap()));
}
