//! The environment rule: every key `a.b.c` can be set by `HEADY_A__B__C` (upper case, `.` ->
//! `__`; a top-level key is `HEADY_KEY`). The documented variables of earlier releases stay as
//! aliases ([`KeyDoc::aliases`]); when both are set the rule's variable wins.
//!
//! Values are read by the key's type ([`Ty`]): a number, `true`/`false` (also `on`/`off`,
//! `1`/`0`), a TOML array or a comma list, an array of inline tables; a string is taken as it
//! is (so a token of digits stays a string). Each value is set into the file's table at its
//! path before the one deserialisation. An unknown `HEADY_SECTION__KEY` is an error (a typo
//! must not pass silently); a single-word `HEADY_` variable that is neither a key nor an alias
//! belongs to something else and is left alone.

use super::{invalid, Config, ConfigError, KeyDoc, Ty};

/// `HEADY_*` variables that are not configuration, read elsewhere. Ignored by the rule.
pub const NOT_CONFIG: &[(&str, &str)] = &[
    (
        "HEADY_LOG",
        "the log filter, tracing's EnvFilter syntax (e.g. `info,heady_origin=debug`)",
    ),
    (
        "HEADY_TUNNEL_ID",
        "`heady-origin tunnel render`: the Cloudflare Tunnel id",
    ),
    (
        "HEADY_VSS_EXTENSION",
        "the bench_memory example: DuckDB's VSS extension file to compare with",
    ),
    (
        "HEADY_STRESS_SECS",
        "tests/hnsw_stress.rs: time budget per quantization",
    ),
    (
        "HEADY_STRESS_ROUNDS",
        "tests/hnsw_stress.rs: rounds per quantization",
    ),
    (
        "HEADY_PYTHON",
        "tests/openai_client.rs: a Python with the `openai` package",
    ),
    (
        "HEADY_ORIGIN_BIN",
        "tests/edge: the heady-origin binary the edge tests start",
    ),
    ("HEADY_VENV", "deploy/setup.sh: where the Python venv goes"),
];

/// The process's `HEADY_*` variables and `CREDENTIALS_DIRECTORY`, for [`Config::load`]
/// (others, and variables that are not UTF-8, are left out).
pub fn heady_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("HEADY_") || k == CREDENTIALS_DIRECTORY)
        .collect()
}

/// Where systemd puts the files of `LoadCredential=` for the service.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// `HEADY_X_FILE=path`: `HEADY_X` is the file's content.
const FILE_SUFFIX: &str = "_FILE";

/// Secrets kept in files instead of the environment (where `/proc/<pid>/environ`, `systemctl
/// show` and crash reports see them): `HEADY_X_FILE=path` sets `HEADY_X` to the file's
/// content, and so does a file named `HEADY_X` in `$CREDENTIALS_DIRECTORY` (systemd's
/// `LoadCredential=HEADY_X:/etc/heady/credentials/x`). A trailing newline is dropped. A
/// variable set directly wins; a file that cannot be read is an error naming its variable.
pub(super) fn with_credentials(
    env: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    let set = |name: &str, out: &[(String, String)]| {
        out.iter().any(|(k, v)| k == name && !v.trim().is_empty())
    };
    let read = |var: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| invalid(var, format!("cannot read {}: {e}", path.display())))
    };
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !(k.starts_with("HEADY_") && k.ends_with(FILE_SUFFIX)))
        .cloned()
        .collect();
    for (var, path) in env {
        let Some(target) = var
            .strip_suffix(FILE_SUFFIX)
            .filter(|t| t.starts_with("HEADY_") && t.len() > "HEADY_".len())
        else {
            continue;
        };
        if path.trim().is_empty() || set(target, &out) {
            continue;
        }
        let value = read(var, std::path::Path::new(path.trim()))?;
        out.push((target.to_string(), value));
    }
    let dir = env
        .iter()
        .rev()
        .find(|(k, _)| k == CREDENTIALS_DIRECTORY)
        .map(|(_, v)| v.clone());
    if let Some(dir) = dir.filter(|d| !d.trim().is_empty()) {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| invalid(CREDENTIALS_DIRECTORY, format!("cannot list {dir}: {e}")))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("HEADY_"))
            .collect();
        names.sort();
        for name in names {
            if set(&name, &out) {
                continue;
            }
            let value = read(&name, &std::path::Path::new(&dir).join(&name))?;
            out.push((name, value));
        }
    }
    Ok(out)
}

/// Which variable set which path (dotted, as errors name keys).
#[derive(Debug, Default)]
pub(super) struct Sources(Vec<(String, String)>);

impl Sources {
    /// The variable that set `key`, a key inside it, or a table holding it.
    pub(super) fn var_for(&self, key: &str) -> Option<&str> {
        let inside = |child: &str, parent: &str| {
            child.len() > parent.len()
                && child.starts_with(parent)
                && matches!(child.as_bytes()[parent.len()], b'.' | b'[')
        };
        self.0
            .iter()
            .rev()
            .find(|(path, _)| path == key || inside(path, key) || inside(key, path))
            .map(|(_, var)| var.as_str())
    }
}

/// Sets the values of the `HEADY_*` variables in `env` into `table` (the file's). Empty values
/// are ignored, as before.
pub(super) fn merge(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Sources, ConfigError> {
    let env = &with_credentials(env)?;
    let keys: Vec<&'static KeyDoc> = Config::keys().filter(|k| k.env_var().is_some()).collect();
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, value)| name.starts_with("HEADY_") && !value.trim().is_empty())
        .collect();
    vars.sort();
    let (mut by_alias, mut by_rule) = (Vec::new(), Vec::new());
    for (name, value) in vars {
        if NOT_CONFIG.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Some(k) = keys.iter().find(|k| k.aliases.contains(&name.as_str())) {
            by_alias.push((name, value, *k));
            continue;
        }
        if let Some(k) = keys
            .iter()
            .find(|k| k.env_var().as_deref() == Some(name.as_str()))
        {
            by_rule.push((name, value, *k));
            continue;
        }
        if name.contains("__") {
            return Err(invalid(name, unknown_key(name, &keys)));
        }
    }
    let mut sources = Sources::default();
    // The rule's variables last: they win over aliases.
    for (name, raw, k) in by_alias.into_iter().chain(by_rule) {
        let value = parse_value(k.ty, raw).map_err(|m| invalid(name, m))?;
        set(table, k.key, value);
        sources.0.push((k.key.to_string(), name.clone()));
    }
    let get = |n: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    if crate::providers::config::apply_env(table, &get) {
        sources
            .0
            .push(("providers[0]".into(), "HEADY_OPENAI_BASE_URL".into()));
    }
    Ok(sources)
}

fn unknown_key(name: &str, keys: &[&KeyDoc]) -> String {
    let path = name["HEADY_".len()..]
        .to_ascii_lowercase()
        .replace("__", ".");
    let section = path.rsplit_once('.').map_or("", |(s, _)| s);
    let siblings: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.key.strip_prefix(section)?.strip_prefix('.'))
        .filter(|rest| !rest.contains('.'))
        .collect();
    if siblings.is_empty() {
        let mut sections: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.key.split_once('.').map(|(s, _)| s))
            .collect();
        sections.dedup();
        format!(
            "not a configuration key: there is no section [{section}] (sections: {})",
            sections.join(", ")
        )
    } else {
        format!(
            "not a configuration key: [{section}] has no `{}` (its keys: {})",
            &path[section.len() + 1..],
            siblings.join(", ")
        )
    }
}

/// A variable's text as a value of the key's type.
fn parse_value(ty: Ty, raw: &str) -> Result<toml::Value, String> {
    let text = raw.trim();
    match ty {
        Ty::Str => Ok(toml::Value::String(raw.to_string())),
        Ty::Int => match toml_value(text) {
            Ok(v @ toml::Value::Integer(_)) => Ok(v),
            _ => Err(format!("not a whole number: {raw:?}")),
        },
        Ty::Float => match toml_value(text) {
            Ok(v @ toml::Value::Float(_)) => Ok(v),
            Ok(toml::Value::Integer(i)) => Ok(toml::Value::Float(i as f64)),
            _ => Err(format!("not a number: {raw:?}")),
        },
        Ty::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => Ok(toml::Value::Boolean(true)),
            "false" | "off" | "0" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!(
                "expected true or false (or on/off, 1/0) (got {raw:?})"
            )),
        },
        Ty::List if text.starts_with('[') => match toml_value(text)? {
            v @ toml::Value::Array(_) => Ok(v),
            _ => Err("not a TOML array".into()),
        },
        Ty::List => Ok(toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )),
        Ty::Table => match toml_value(text)? {
            v @ toml::Value::Array(_) => Ok(v),
            _ => Err("expected a TOML array of inline tables, e.g. [{name = \"a\"}]".into()),
        },
    }
}

/// One TOML value. The parser's message only: its excerpt would show the text, which may hold
/// a key.
fn toml_value(text: &str) -> Result<toml::Value, String> {
    let mut t = format!("v = {text}")
        .parse::<toml::Table>()
        .map_err(|e| format!("not a TOML value: {}", e.message().trim_end()))?;
    t.remove("v").ok_or_else(|| "not a TOML value".to_string())
}

fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (parents, leaf) = match key.rsplit_once('.') {
        Some((p, l)) => (p.split('.').collect::<Vec<_>>(), l),
        None => (Vec::new(), key),
    };
    let mut t = table;
    for p in parents {
        let slot = t
            .entry(p)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !slot.is_table() {
            *slot = toml::Value::Table(toml::Table::new());
        }
        t = match slot {
            toml::Value::Table(inner) => inner,
            _ => unreachable!("made a table above"),
        };
    }
    t.insert(leaf.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::super::Overrides;
    use super::*;
    use crate::settings::rule_var;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heady.toml");
        if let Some(t) = file {
            std::fs::write(&path, t).unwrap();
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(file.map(|_| path.as_path()), &env, &Overrides::default())
    }

    #[test]
    fn the_rule_spells_the_dotted_path() {
        assert_eq!(
            rule_var("memory.hnsw_ef_search"),
            "HEADY_MEMORY__HNSW_EF_SEARCH"
        );
        assert_eq!(
            rule_var("defense.ban.base_ttl_secs"),
            "HEADY_DEFENSE__BAN__BASE_TTL_SECS"
        );
        assert_eq!(rule_var("listen"), "HEADY_LISTEN");
    }

    #[test]
    fn every_key_takes_its_default_through_its_variable() {
        // Setting each key, through the rule's variable, to the text of its default changes
        // nothing: the variable reaches the key, and the key's type reads the text.
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut env = Vec::new();
        for k in Config::keys() {
            let Some(var) = k.env_var() else { continue };
            let v = super::super::reference::lookup(&defaults, k.key).unwrap();
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                other => toml::Value::try_from(other).unwrap().to_string(),
            };
            env.push((var, text));
        }
        assert!(env.len() > 50, "{}", env.len());
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let c = load(None, &env).unwrap();
        assert_eq!(serde_json::to_value(c).unwrap(), defaults);
    }

    #[test]
    fn variables_set_keys_of_every_type() {
        let c = load(
            None,
            &[
                ("HEADY_MEMORY__HNSW_EF_SEARCH", "32"),
                ("HEADY_DEFENSE__BAN__BASE_TTL_SECS", "60"),
                ("HEADY_PIPELINE__CRITIQUE__RETRY", "false"),
                ("HEADY_PIPELINE__READINESS__THRESHOLD", "0.5"),
                ("HEADY_PIPELINE__PATTERNS__LATENCY_SCALE_MS", "5000"),
                ("HEADY_PIPELINE__DRIFT__QUALITY__MIN_SAMPLES", "7"),
                (
                    "HEADY_DEFENSE__TRUSTED_PROXIES",
                    "[\"10.0.0.1\", \"10.1.0.0/16\"]",
                ),
                ("HEADY_DEFENSE__CLIENT_IP_HEADER", "X-Forwarded-For"),
                ("HEADY_LOG_FORMAT", "json"),
                ("HEADY_EMBEDDER__KIND", "openai"),
                ("HEADY_EMBEDDER__BASE_URL", "http://127.0.0.1:11434/v1"),
                // A string key keeps a value that would read as a number.
                ("HEADY_EMBEDDER__MODEL", "1234"),
                (
                    "HEADY_CONDUCTOR__GROUPS",
                    "[{name = \"translation\", weight = 0.65, actions = [\"translate\"]}]",
                ),
                (
                    "HEADY_PROVIDERS",
                    "[{name = \"local\", base_url = \"http://127.0.0.1:1/v1\", groups = [\"translation\"]}]",
                ),
            ],
        )
        .unwrap();
        assert_eq!(c.memory.hnsw_ef_search, 32);
        assert_eq!(c.defense.ban.base_ttl_secs, 60);
        assert!(!c.pipeline.critique.retry);
        assert_eq!(c.pipeline.readiness.threshold, 0.5);
        assert_eq!(c.pipeline.patterns.latency_scale_ms, 5000.0);
        assert_eq!(c.pipeline.drift.quality.min_samples, 7);
        assert_eq!(c.defense.trusted_proxies.len(), 2);
        assert_eq!(c.defense.client_ip_header.as_str(), "x-forwarded-for");
        assert_eq!(c.log_format, super::super::LogFormat::Json);
        assert_eq!(c.embedder.model.as_deref(), Some("1234"));
        assert_eq!(c.conductor.groups[0].name, "translation");
        assert_eq!(c.providers[0].name, "local");
        assert_eq!(c.providers[0].groups, ["translation"]);
    }

    #[test]
    fn env_wins_over_the_file_and_the_rule_over_an_alias() {
        let file = "[memory]\ndim = 16\nhnsw_ef_search = 40\n";
        let c = load(Some(file), &[("HEADY_MEMORY__HNSW_EF_SEARCH", "48")]).unwrap();
        assert_eq!((c.memory.dim, c.memory.hnsw_ef_search), (16, 48));
        let c = load(
            Some(file),
            &[("HEADY_MEMORY_DIM", "24"), ("HEADY_MEMORY__DIM", "32")],
        )
        .unwrap();
        assert_eq!(c.memory.dim, 32);
        let c = load(Some(file), &[("HEADY_MEMORY_DIM", "24")]).unwrap();
        assert_eq!(c.memory.dim, 24);
        // An empty value is no value.
        let c = load(Some(file), &[("HEADY_MEMORY__DIM", " ")]).unwrap();
        assert_eq!(c.memory.dim, 16);
        // The rule's list form and the alias's comma form.
        let c = load(None, &[("HEADY_DEFENSE__TRUSTED_PROXIES", "10.0.0.1,::1")]).unwrap();
        assert_eq!(c.defense.trusted_proxies.len(), 2);
        // Booleans: the old on/off spellings work for every boolean key.
        let c = load(
            None,
            &[
                ("HEADY_DEFENSE__ENABLED", "off"),
                ("HEADY_PIPELINE__MEMORY__STORE", "0"),
            ],
        )
        .unwrap();
        assert!(!c.defense.enabled && !c.pipeline.memory.store);
    }

    #[test]
    fn an_unknown_section_key_is_an_error_and_other_variables_are_left_alone() {
        let e = load(None, &[("HEADY_MEMORY__HNSW_EF_SERCH", "32")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("HEADY_MEMORY__HNSW_EF_SERCH: not a configuration key")
                && e.contains("hnsw_ef_search"),
            "{e}"
        );
        let e = load(None, &[("HEADY_MEMROY__DIM", "32")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no section [memroy]") && e.contains("memory"),
            "{e}"
        );
        // A field of an array entry has no variable of its own.
        assert!(load(None, &[("HEADY_PROVIDERS__NAME", "a")]).is_err());
        // Not configuration: the log filter, test knobs, words that are no key, sections.
        load(
            None,
            &[
                ("HEADY_LOG", "debug"),
                ("HEADY_STRESS_SECS", "5"),
                ("HEADY_ORIGIN_BIN", "/x"),
                ("HEADY_SOMETHING_ELSE", "x"),
                ("HEADY_MEMORY", "x"),
                ("HEADY_PIPELINE", "x"),
            ],
        )
        .unwrap();
    }

    #[test]
    fn bad_values_name_the_variable_and_never_echo_strings() {
        for (var, value, expect) in [
            ("HEADY_MEMORY__DIM", "many", "not a whole number"),
            (
                "HEADY_PIPELINE__READINESS__THRESHOLD",
                "high",
                "not a number",
            ),
            ("HEADY_REQUIRE_EDGE", "maybe", "expected true or false"),
            (
                "HEADY_DEFENSE__TRUSTED_PROXIES",
                "[\"10.0.0.1\"",
                "not a TOML value",
            ),
            (
                "HEADY_PROVIDERS",
                "{name = \"a\"}",
                "array of inline tables",
            ),
            ("HEADY_LOG_FORMAT", "xml", "unknown variant"),
            ("HEADY_LISTEN", "nowhere", "not an address"),
        ] {
            let e = load(None, &[(var, value)]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{var}: ")) && e.contains(expect),
                "{var}={value}: {e}"
            );
        }
        let e = load(
            None,
            &[("HEADY_PROVIDERS", "[{name = \"a\", api_key = \"sk-abc}]")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("HEADY_PROVIDERS: ") && !e.contains("sk-abc"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files_and_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let key = "tunnel-key-from-a-file-0123456789abcdef0123";
        let tunnel = dir.path().join("tunnel-key");
        std::fs::write(&tunnel, format!("{key}\n")).unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(
            creds.join("HEADY_REDIS_URL"),
            "redis://:pw-from-creds@127.0.0.1:6390\n",
        )
        .unwrap();
        std::fs::write(creds.join("HEADY_EMBEDDER__API_KEY"), "embedder-secret").unwrap();
        std::fs::write(creds.join("unrelated"), "x").unwrap();
        let c = load(
            None,
            &[
                ("HEADY_TUNNEL_KEY_FILE", tunnel.to_str().unwrap()),
                ("HEADY_TUNNEL_AUTH", "hmac"),
                (CREDENTIALS_DIRECTORY, creds.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(c.defense.edge_key.as_ref().map(|k| k.expose()), Some(key));
        assert_eq!(
            c.redis_url.as_ref().map(|u| u.as_str()),
            Some("redis://:pw-from-creds@127.0.0.1:6390")
        );
        assert_eq!(
            c.embedder.api_key.as_ref().map(|k| k.expose()),
            Some("embedder-secret")
        );
        // A variable set directly wins over its file.
        let c = load(
            None,
            &[
                ("HEADY_REDIS_URL", "redis://127.0.0.1:6391"),
                (CREDENTIALS_DIRECTORY, creds.to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(c.redis_url.unwrap().as_str(), "redis://127.0.0.1:6391");
        // An unreadable file names its variable and shows no secret.
        let e = load(None, &[("HEADY_TUNNEL_KEY_FILE", "/nonexistent/heady-key")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("HEADY_TUNNEL_KEY_FILE: cannot read"), "{e}");
        // What the credential files held stays out of Debug (check-config prints it).
        let c = load(None, &[(CREDENTIALS_DIRECTORY, creds.to_str().unwrap())]).unwrap();
        let shown = format!("{c:#?}");
        assert!(
            !shown.contains("pw-from-creds") && !shown.contains("embedder-secret"),
            "{shown}"
        );
    }

    #[test]
    fn names_do_not_collide() {
        let mut seen = std::collections::HashSet::new();
        for k in Config::keys() {
            let names: std::collections::BTreeSet<String> = k
                .env_var()
                .into_iter()
                .chain(k.aliases.iter().chain(k.env_extra).map(|s| s.to_string()))
                .collect();
            for name in names {
                assert!(
                    !NOT_CONFIG.iter().any(|(n, _)| *n == name),
                    "{name} is a key's variable and also something else's"
                );
                assert!(seen.insert(name.clone()), "{name} names two keys");
            }
        }
    }
}
