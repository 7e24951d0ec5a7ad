//! The configuration reference, generated from the code: each section's module lists its keys
//! ([`KeyDoc`]); defaults come from serializing `Config::default()`. `heady-origin
//! config-reference` prints it; `docs/config.md` holds a copy that a test keeps current.

use super::Config;
use serde_json::Value;

pub use crate::settings::{KeyDoc, Ty};

pub const DOC_BEGIN: &str = "<!-- BEGIN generated: heady-origin config-reference -->";
pub const DOC_END: &str = "<!-- END generated -->";

/// `Config::default()` as JSON (`null` for unset options), with one sample entry in each array
/// of tables so that the entries' fields have a place.
pub(crate) fn defaults_with_samples() -> Value {
    let mut v = serde_json::to_value(Config::default()).expect("the default config serializes");
    v["providers"] = serde_json::json!([crate::providers::config::ProviderConfig::sample()]);
    v["conductor"]["groups"] =
        serde_json::json!([crate::conductor::config::ConductorConfig::sample_group()]);
    v
}

/// The value at a dotted key (`a[]` steps into the first entry).
pub(crate) fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.')
        .try_fold(v, |v, seg| match seg.strip_suffix("[]") {
            Some(name) => v.get(name)?.get(0),
            None => v.get(seg),
        })
}

/// Every leaf path of a serialized config: a non-table value, or an array of tables (which is
/// also walked, as `a[].b`).
#[cfg(test)]
pub(crate) fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(x, &join(k), out);
            }
        }
        Value::Array(a) if a.first().is_some_and(Value::is_object) => {
            out.push(prefix.to_string());
            leaves(&a[0], &format!("{prefix}[]"), out);
        }
        _ => out.push(prefix.to_string()),
    }
}

fn default_text(k: &KeyDoc, plain: &Value, sampled: &Value) -> String {
    if k.required {
        return "(required)".into();
    }
    let source = if k.key.contains("[]") { sampled } else { plain };
    match lookup(source, k.key) {
        None | Some(Value::Null) => "(none)".into(),
        Some(v) => match toml::Value::try_from(v) {
            Ok(t) => format!("`{t}`"),
            Err(_) => format!("`{v}`"),
        },
    }
}

fn heading(section: &str) -> String {
    match section {
        "" => "Top level".into(),
        s => match s.strip_suffix("[]") {
            Some(array) => format!("`[[{array}]]` entries"),
            None => format!("`[{s}]`"),
        },
    }
}

/// The reference: one markdown table per section, `| key | env | default | meaning |`.
pub fn reference_markdown() -> String {
    let plain = serde_json::to_value(Config::default()).expect("the default config serializes");
    let sampled = defaults_with_samples();
    let mut sections: Vec<(&str, Vec<&KeyDoc>)> = Vec::new();
    for k in Config::keys() {
        match sections.iter_mut().find(|(s, _)| *s == k.section()) {
            Some((_, keys)) => keys.push(k),
            None => sections.push((k.section(), vec![k])),
        }
    }
    let mut out = Vec::new();
    for (section, keys) in sections {
        let mut t = format!(
            "### {}\n\n| key | env | default | meaning |\n|---|---|---|---|\n",
            heading(section)
        );
        for k in keys {
            let mut env: Vec<String> = k.env_var().into_iter().collect();
            for a in k.aliases.iter().chain(k.env_extra) {
                if !env.iter().any(|e| e == a) {
                    env.push(a.to_string());
                }
            }
            let env = if env.is_empty() {
                "—".to_string()
            } else {
                env.iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            t.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                k.key,
                env,
                default_text(k, &plain, &sampled).replace('|', "\\|"),
                k.meaning.replace('|', "\\|"),
            ));
        }
        out.push(t);
    }
    out.join("\n")
}

/// The generated part of a document (between the markers), if it has the markers.
pub fn generated_part(doc: &str) -> Option<&str> {
    let start = doc.find(DOC_BEGIN)? + DOC_BEGIN.len();
    let start = start + doc[start..].find('\n')? + 1;
    let end = start + doc[start..].find(DOC_END)?;
    Some(&doc[start..end])
}

/// `doc` with its generated part replaced by `generated`.
pub fn splice(doc: &str, generated: &str) -> Option<String> {
    let part = generated_part(doc)?;
    let start = part.as_ptr() as usize - doc.as_ptr() as usize;
    Some(format!(
        "{}{}{}",
        &doc[..start],
        generated,
        &doc[start + part.len()..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_key_of_the_types_is_documented_and_nothing_else() {
        let mut found = Vec::new();
        leaves(&defaults_with_samples(), "", &mut found);
        let found: BTreeSet<String> = found.into_iter().collect();
        let documented: Vec<&str> = Config::keys().map(|k| k.key).collect();
        let set: BTreeSet<String> = documented.iter().map(|s| s.to_string()).collect();
        assert_eq!(set.len(), documented.len(), "a key is documented twice");
        let missing: Vec<_> = found.difference(&set).collect();
        let extra: Vec<_> = set.difference(&found).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "keys without a KeyDoc row: {missing:?}; rows without a key: {extra:?}"
        );
    }

    #[test]
    fn each_documented_type_matches_the_default() {
        let sampled = defaults_with_samples();
        for k in Config::keys() {
            let v = lookup(&sampled, k.key).unwrap();
            let ok = match (k.ty, v) {
                (_, Value::Null) => true,
                (Ty::Str, Value::String(_)) => true,
                (Ty::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
                (Ty::Float, Value::Number(n)) => n.is_f64(),
                (Ty::Bool, Value::Bool(_)) => true,
                (Ty::List, Value::Array(a)) => a.iter().all(Value::is_string),
                (Ty::Table, Value::Array(a)) => a.iter().all(Value::is_object),
                _ => false,
            };
            assert!(ok, "{}: documented as {:?}, default {v}", k.key, k.ty);
            assert!(
                !k.meaning.is_empty() && !k.meaning.contains('\n'),
                "{}",
                k.key
            );
        }
    }

    #[test]
    fn the_reference_has_a_table_per_section() {
        let md = reference_markdown();
        for h in [
            "### Top level",
            "### `[memory]`",
            "### `[defense.ban]`",
            "### `[[providers]]` entries",
            "### `[pipeline.drift.quality]`",
        ] {
            assert!(
                md.contains(&format!("{h}\n\n| key | env | default | meaning |\n")),
                "{h}"
            );
        }
        assert!(md.contains("| `memory.hnsw_ef_search` | `HEADY_MEMORY__HNSW_EF_SEARCH` | `64` |"));
        assert!(md.contains("| `memory.dim` | `HEADY_MEMORY__DIM`, `HEADY_MEMORY_DIM` | `384` |"));
        assert!(md.contains("| `listen` | `HEADY_LISTEN` | `\"127.0.0.1:8080\"` |"));
        assert!(md.contains("| `redis_url` | `HEADY_REDIS_URL` | (none) |"));
        assert!(md.contains("| `providers[].name` | — | (required) |"));
        assert!(md.contains("`HEADY_OPENAI_BASE_URL`"));
    }

    #[test]
    fn docs_config_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
        let doc = std::fs::read_to_string(&path).expect("docs/config.md");
        let part = generated_part(&doc).expect("docs/config.md has the generated markers");
        assert!(
            part == reference_markdown(),
            "docs/config.md is out of date; regenerate it with:\n    \
             cargo run --release -p heady-origin -- config-reference --write docs/config.md"
        );
    }

    #[test]
    fn splice_replaces_only_the_generated_part() {
        let doc = format!("# T\n\nprose\n\n{DOC_BEGIN}\nold\n{DOC_END}\n\nmore\n");
        let new = splice(&doc, "new\n").unwrap();
        assert_eq!(
            new,
            format!("# T\n\nprose\n\n{DOC_BEGIN}\nnew\n{DOC_END}\n\nmore\n")
        );
        assert_eq!(generated_part(&new), Some("new\n"));
        assert!(splice("no markers", "x").is_none());
    }
}
