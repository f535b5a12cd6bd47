//! The configuration's docs, generated from its table: the Markdown tables in
//! `README.md` (common keys) and `docs/configuration.md` (every key), and the
//! example file `systemd/chats3.toml`. A test compares them with the checked-in
//! files; `UPDATE_CONFIG_DOCS=1 cargo test --lib config_docs` rewrites them.
//!
//! Owns rendering only: what the keys are is `config/mod.rs`.

use super::{Config, Key};

/// Where a generated table goes in a Markdown file: between these lines.
pub const TABLE_START: &str = "<!-- config-table:start -->";
pub const TABLE_END: &str = "<!-- config-table:end -->";

/// A value worth showing: not unset, not an empty string or list.
fn shown(v: &Option<toml::Value>) -> Option<&toml::Value> {
    v.as_ref().filter(|v| match v {
        toml::Value::String(s) => !s.is_empty(),
        toml::Value::Array(a) => !a.is_empty(),
        _ => true,
    })
}

fn toml_key(k: &Key) -> String {
    match k.section {
        Some(s) => format!("[{s}] {}", k.name),
        None => k.name.to_owned(),
    }
}

/// The Markdown table of every key (`common_only`: of the README's few).
pub fn markdown_table(common_only: bool) -> String {
    let mut out =
        String::from("| Environment | TOML key | Default | Meaning |\n|---|---|---|---|\n");
    for k in Config::keys() {
        if common_only && !k.flags.common {
            continue;
        }
        let env: Vec<String> = k.env.iter().map(|e| format!("`{e}`")).collect();
        let default = match shown(&k.default) {
            Some(v) => format!("`{v}`"),
            None => "none".into(),
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            env.join(", "),
            toml_key(&k),
            default.replace('|', "\\|"),
            k.doc.replace('|', "\\|"),
        ));
    }
    out
}

/// `text` as `# ` comment lines of at most about 100 characters.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// An array of tables: written as `[[key]]` blocks at the end of the file.
fn is_table_array(v: &toml::Value) -> bool {
    matches!(v, toml::Value::Array(a) if !a.is_empty() && a.iter().all(toml::Value::is_table))
}

/// One key as TOML lines (`key = value`, or a `[[key]]` block).
fn assignment(k: &Key, value: &toml::Value) -> String {
    if !is_table_array(value) {
        return format!("{} = {value}\n", k.name);
    }
    let mut doc = toml::Table::new();
    doc.insert(k.name.to_owned(), value.clone());
    if let Some(s) = k.section {
        let mut outer = toml::Table::new();
        outer.insert(s.to_owned(), toml::Value::Table(doc));
        doc = outer;
    }
    // A table of arrays of tables always serializes (no NaN, no nesting limit reached).
    toml::to_string(&doc).unwrap_or_default()
}

fn commented(lines: &str) -> String {
    let line = |l: &str| {
        if l.is_empty() {
            "#\n".to_owned()
        } else {
            format!("# {l}\n")
        }
    };
    lines.lines().map(line).collect()
}

const EXAMPLE_HEADER: &str = "\
# chats3 example configuration: every key, with its default. Generated from the table in
# src/config/mod.rs (`UPDATE_CONFIG_DOCS=1 cargo test --lib config_docs`); do not edit by hand.
# Environment variables override this file (names in brackets). Validate with:
#   chats3 --config /etc/chats3/chats3.toml check-config
# It holds secrets: keep it root-owned, mode 0600 (install.sh does); the unit
# hands it to the service with LoadCredential. Values other than the default are
# set for a VM behind a reverse proxy; commented-out keys show an example.
";

/// The example configuration file (`systemd/chats3.toml`).
pub fn example_toml() -> String {
    let mut out = String::from(EXAMPLE_HEADER);
    let mut at_end = String::new();
    let keys = Config::keys();
    let mut sections = Vec::new();
    for k in &keys {
        if !sections.contains(&k.section) {
            sections.push(k.section);
        }
    }
    let by_section = sections
        .into_iter()
        .flat_map(|s| keys.iter().filter(move |k| k.section == s));
    let mut section = None;
    for k in by_section {
        let mut doc = format!("{} [{}]", k.doc, k.env.join(", "));
        let (value, active) = if k.optional {
            (shown(&k.default).or(k.example.as_ref()), false)
        } else if k.flags.deploy {
            if let Some(d) = shown(&k.default) {
                doc.push_str(&format!(" Default: {d}."));
            }
            (k.example.as_ref(), true)
        } else {
            match shown(&k.default) {
                Some(d) => (Some(d), true),
                None => (k.example.as_ref(), false),
            }
        };
        let Some(value) = value else { continue };
        let mut lines = assignment(k, value);
        if !active {
            lines = commented(&lines);
        }
        let block = format!("\n{}{lines}", comment(&doc));
        if is_table_array(value) {
            at_end.push_str(&block);
            continue;
        }
        if k.section != section {
            section = k.section;
            let name = section.unwrap_or_default();
            let header = if k.optional {
                format!("# [{name}]")
            } else {
                format!("[{name}]")
            };
            out.push_str(&format!("\n{header}\n"));
        }
        out.push_str(&block);
    }
    out + &at_end
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `text` with the part between the table markers replaced by `table`.
    fn splice(text: &str, table: &str) -> Option<String> {
        let start = text.find(TABLE_START)? + TABLE_START.len();
        let end = text[start..].find(TABLE_END)? + start;
        Some(format!("{}\n{table}{}", &text[..start], &text[end..]))
    }

    #[test]
    fn config_docs_match_the_table() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let update = std::env::var_os("UPDATE_CONFIG_DOCS").is_some();
        let mut stale = Vec::new();
        for (file, table) in [
            ("README.md", Some(markdown_table(true))),
            ("docs/configuration.md", Some(markdown_table(false))),
            ("systemd/chats3.toml", None),
        ] {
            let path = root.join(file);
            let now = std::fs::read_to_string(&path).unwrap_or_default();
            let want = match &table {
                Some(t) => splice(&now, t)
                    .unwrap_or_else(|| panic!("{file} lacks {TABLE_START} … {TABLE_END}")),
                None => example_toml(),
            };
            if now != want {
                if update {
                    std::fs::write(&path, want).unwrap();
                } else {
                    stale.push(file);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:?} differ from the configuration table in src/config/mod.rs; \
             regenerate them with `UPDATE_CONFIG_DOCS=1 cargo test --lib config_docs`"
        );
    }

    #[test]
    fn the_example_config_loads_and_keeps_the_defaults_it_shows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chats3.toml");
        std::fs::write(&p, example_toml()).unwrap();
        let c = Config::from_sources(Some(&p), &Default::default()).unwrap();
        assert!(c.production);
        assert_eq!(c.port, 3000);
        assert_eq!(c.limits, crate::config::Limits::default());
        assert!(c.s3.is_none() && c.integrators.is_empty() && c.tls.is_none());
    }
}
