//! The work behind `heady-origin tunnel render|validate|rule`: read the files, write the config
//! or the report, and return the exit code. Argument parsing stays with the binary; these
//! take the parsed values and the output streams, so tests capture what an operator sees.
//! Exit codes: 0 success, 1 problems found or an input that cannot be read, 2 bad arguments.
//! Messages name `heady-origin`, the program operators run them through.

use crate::config::{parse, Config, ParseError, Warning};
use crate::matching::{match_rule, RequestUrl};
use crate::render::{render, RenderSettings};
use crate::validate::{parse_service, validate, Problem};
use heady_shared::properties::Properties;
use serde_json::json;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

const OK: i32 = 0;
const FAILED: i32 = 1;
const BAD_ARGUMENTS: i32 = 2;

/// `tunnel render`: renders `properties_path` with `settings` and writes the config to
/// `target` (atomically) or, without one, to `out`. Refuses settings or a result that
/// cloudflared would not accept.
pub fn render_command(
    properties_path: &Path,
    settings: &RenderSettings,
    target: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    if let Err(message) = check_settings(settings) {
        let _ = writeln!(err, "heady-origin: {message}");
        return BAD_ARGUMENTS;
    }
    let text = match fs::read_to_string(properties_path) {
        Ok(text) => text,
        Err(e) => {
            let _ = writeln!(
                err,
                "heady-origin: cannot read {}: {e}",
                properties_path.display()
            );
            return FAILED;
        }
    };
    let properties = match Properties::parse(&text) {
        Ok(properties) => properties,
        Err(e) => {
            let _ = writeln!(err, "heady-origin: {}: {e}", properties_path.display());
            return FAILED;
        }
    };
    let yaml = render(&properties, settings);
    // The settings were checked above, so this guards the renderer itself.
    let problems = match parse(&yaml) {
        Ok((config, _)) => validate(&config),
        Err(e) => {
            let _ = writeln!(err, "heady-origin: rendered config does not read back: {e}");
            return FAILED;
        }
    };
    if !problems.is_empty() {
        let _ = writeln!(
            err,
            "heady-origin: the rendered config would be refused by cloudflared:"
        );
        for problem in &problems {
            let _ = writeln!(err, "  {problem}");
        }
        return FAILED;
    }
    for property in properties.origin_properties() {
        if let Some(todo) = &property.operator_todo {
            let _ = writeln!(
                err,
                "note: property {} is incomplete: {todo}",
                property.name
            );
        }
    }
    match target {
        None => {
            let _ = out.write_all(yaml.as_bytes());
            OK
        }
        Some(path) => match write_atomically(path, yaml.as_bytes()) {
            Ok(()) => {
                let rules = properties.origin_properties().count();
                let _ = writeln!(
                    err,
                    "wrote {} ({rules} ingress rules and the catch-all)",
                    path.display()
                );
                OK
            }
            Err(e) => {
                let _ = writeln!(err, "heady-origin: cannot write {}: {e}", path.display());
                FAILED
            }
        },
    }
}

/// Rejects settings that would make the rendered YAML invalid or mean something else.
fn check_settings(settings: &RenderSettings) -> Result<(), String> {
    let one_line = |name: &str, value: &str| {
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            Err(format!(
                "{name} must be a non-empty single line, got {value:?}"
            ))
        } else {
            Ok(())
        }
    };
    one_line("--tunnel-id", &settings.tunnel_id)?;
    one_line("--credentials-file", &settings.credentials_file)?;
    parse_service(&settings.origin_url, false).map_err(|e| format!("--origin-url: {e}"))?;
    parse_service(&settings.catch_all, false).map_err(|e| format!("--catch-all: {e}"))?;
    if let Some(ca) = &settings.ca_pool {
        one_line("--ca-pool", ca)?;
        if !settings.origin_url.starts_with("https://") {
            return Err(format!(
                "--ca-pool is for an https:// --origin-url (got {:?})",
                settings.origin_url
            ));
        }
    }
    Ok(())
}

/// Writes via a temporary file in the same directory and a rename, so cloudflared (or a
/// reader racing the write) sees either the old file or the new one, never half of one.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> io::Result<()> {
        // A leftover from a crashed run with the same pid is ours to replace.
        let _ = fs::remove_file(&temp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(contents)?;
        if let Ok(existing) = fs::metadata(path) {
            file.set_permissions(existing.permissions())?;
        }
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // Make the rename itself durable; not every platform can open a directory.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Why a config file could not be checked at all.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot read {path}: {source}")]
    Unreadable { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: ParseError },
}

impl LoadError {
    fn json(&self) -> serde_json::Value {
        match self {
            LoadError::Unreadable { source, .. } => {
                json!({ "code": "unreadable", "message": source.to_string() })
            }
            LoadError::Parse { source, .. } => match source {
                ParseError::Syntax {
                    line,
                    column,
                    message,
                } => {
                    json!({ "code": "yaml_syntax", "message": message, "line": line, "column": column })
                }
                ParseError::Yaml { message } => json!({ "code": "yaml", "message": message }),
                other => json!({ "code": "not_a_mapping", "message": other.to_string() }),
            },
        }
    }
}

fn load(path: &Path) -> Result<(Config, Vec<Warning>), LoadError> {
    let shown = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|source| LoadError::Unreadable {
        path: shown.clone(),
        source,
    })?;
    parse(&text).map_err(|source| LoadError::Parse {
        path: shown,
        source,
    })
}

/// `tunnel validate`: prints `OK` or every problem (as text, or one JSON document with `json`).
pub fn validate_command(path: &Path, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if json {
        validate_json(path, out)
    } else {
        validate_text(path, out, err)
    }
}

/// Loads the file for a text command: its warnings and any error go to `err`.
fn load_reporting(path: &Path, err: &mut dyn Write) -> Option<Config> {
    match load(path) {
        Ok((config, warnings)) => {
            for warning in &warnings {
                let _ = writeln!(err, "warning: {warning}");
            }
            Some(config)
        }
        Err(e) => {
            let _ = writeln!(err, "heady-origin: {e}");
            None
        }
    }
}

fn validate_text(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let config = match load_reporting(path, err) {
        Some(config) => config,
        None => return FAILED,
    };
    let problems = validate(&config);
    if problems.is_empty() {
        let _ = writeln!(out, "OK");
        return OK;
    }
    let count = problems.len();
    let _ = writeln!(
        out,
        "{}: {count} problem{}",
        path.display(),
        if count == 1 { "" } else { "s" }
    );
    for problem in &problems {
        let _ = writeln!(out, "  {problem}");
    }
    FAILED
}

fn validate_json(path: &Path, out: &mut dyn Write) -> i32 {
    let (report, code) = match load(path) {
        Err(e) => (
            json!({ "ok": false, "error": e.json(), "problems": [], "warnings": [] }),
            FAILED,
        ),
        Ok((config, warnings)) => {
            let problems = validate(&config);
            let code = if problems.is_empty() { OK } else { FAILED };
            let report = json!({
                "ok": problems.is_empty(),
                "error": null,
                "problems": problems.iter().map(problem_json).collect::<Vec<_>>(),
                "warnings": warnings.iter().map(warning_json).collect::<Vec<_>>(),
            });
            (report, code)
        }
    };
    let mut report = report;
    report["file"] = json!(path.display().to_string());
    let _ = writeln!(out, "{report:#}");
    code
}

/// `index` is 0-based (into `ingress`); `rule` is the 1-based number the messages use.
fn problem_json(problem: &Problem) -> serde_json::Value {
    json!({
        "index": problem.rule,
        "rule": problem.rule.map(|i| i + 1),
        "hostname": problem.hostname,
        "code": problem.code(),
        "message": problem.kind.to_string(),
    })
}

fn warning_json(warning: &Warning) -> serde_json::Value {
    json!({
        "index": warning.rule,
        "rule": warning.rule.map(|i| i + 1),
        "code": warning.code(),
        "message": warning.kind.to_string(),
    })
}

/// `tunnel rule`: prints the rule cloudflared would pick for `url` in the config at `path`.
pub fn rule_command(path: &Path, url: &str, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let request = match RequestUrl::parse(url) {
        Ok(request) => request,
        Err(e) => {
            let _ = writeln!(err, "heady-origin: {e}");
            return BAD_ARGUMENTS;
        }
    };
    let config = match load_reporting(path, err) {
        Some(config) => config,
        None => return FAILED,
    };
    // cloudflared matches only against a config it accepts.
    let problems = validate(&config);
    if !problems.is_empty() {
        let _ = writeln!(
            err,
            "heady-origin: {} would be refused by cloudflared:",
            path.display()
        );
        for problem in &problems {
            let _ = writeln!(err, "  {problem}");
        }
        return FAILED;
    }
    let Some((index, rule)) = match_rule(&config, &request) else {
        let _ = writeln!(err, "heady-origin: no rule matches {url}");
        return FAILED;
    };
    let _ = writeln!(out, "Matched rule #{} (index {index})", index + 1);
    if !rule.hostname.is_empty() {
        let _ = writeln!(out, "\thostname: {}", rule.hostname);
    }
    if !rule.path.is_empty() {
        let _ = writeln!(out, "\tpath: {}", rule.path);
    }
    let _ = writeln!(out, "\tservice: {}", rule.service);
    OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::example_settings;
    use std::path::PathBuf;

    const REAL_PROPERTIES: &str = include_str!("../../../deploy/properties.toml");

    struct Outcome {
        code: i32,
        out: String,
        err: String,
    }

    fn run_captured(command: impl FnOnce(&mut dyn Write, &mut dyn Write) -> i32) -> Outcome {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = command(&mut out, &mut err);
        Outcome {
            code,
            out: String::from_utf8_lossy(&out).into(),
            err: String::from_utf8_lossy(&err).into(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).expect("write test file");
        path
    }

    /// `tunnel render` with the example's settings and the default credentials path.
    fn render_to(properties: &Path, target: Option<&Path>) -> Outcome {
        let example = example_settings();
        let settings = RenderSettings {
            credentials_file: RenderSettings::default_credentials_file(&example.tunnel_id),
            ..example
        };
        run_captured(|out, err| render_command(properties, &settings, target, out, err))
    }

    fn validate_file(file: &Path, json: bool) -> Outcome {
        run_captured(|out, err| validate_command(file, json, out, err))
    }

    fn rule_for(file: &Path, url: &str) -> Outcome {
        run_captured(|out, err| rule_command(file, url, out, err))
    }

    #[test]
    fn render_validate_and_rule_through_the_cli() {
        let dir = tempfile::tempdir().expect("temp dir");
        let properties = write(dir.path(), "properties.toml", REAL_PROPERTIES);
        let config = dir.path().join("config.yml");

        let rendered = render_to(&properties, Some(&config));
        assert_eq!(rendered.code, 0, "{}", rendered.err);
        assert!(rendered.out.is_empty());
        assert!(rendered.err.contains("4 ingress rules"), "{}", rendered.err);
        let written = fs::read_to_string(&config).expect("written");
        assert!(written.contains(
            "credentials-file: /etc/cloudflared/00000000-0000-4000-8000-000000000000.json"
        ));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary file is left behind");

        let to_stdout = render_to(&properties, None);
        assert_eq!(
            (to_stdout.code, to_stdout.out.as_str()),
            (0, written.as_str())
        );

        let validated = validate_file(&config, false);
        assert_eq!(
            (
                validated.code,
                validated.out.as_str(),
                validated.err.as_str()
            ),
            (0, "OK\n", "")
        );

        let matched = rule_for(&config, "https://headymcp.com/sse");
        assert_eq!(matched.code, 0, "{}", matched.err);
        assert_eq!(
            matched.out,
            "Matched rule #2 (index 1)\n\thostname: headymcp.com\n\tservice: http://127.0.0.1:8080\n"
        );
        let fallback = rule_for(&config, "https://headyweb.com/");
        assert!(
            fallback
                .out
                .starts_with("Matched rule #5 (index 4)\n\tservice: http_status:404"),
            "{}",
            fallback.out
        );
    }

    #[test]
    fn validate_reports_every_problem_and_exits_1() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "config.yml",
            "ingress:\n  - hostname: a.example.com:443\n    service: http://x\n    servce: typo\n  - hostname: b.example.com\n    service: http://x/\n",
        );
        let result = validate_file(&file, false);
        assert_eq!(result.code, 1);
        assert!(result.out.contains(": 3 problems\n"), "{}", result.out);
        assert!(
            result
                .out
                .contains("  rule #1 (a.example.com:443): hostname cannot contain a port\n"),
            "{}",
            result.out
        );
        assert!(
            result
                .out
                .contains("  rule #2 (b.example.com): service \"http://x/\" has a path"),
            "{}",
            result.out
        );
        assert!(
            result
                .out
                .contains("  rule #2 (b.example.com): the last ingress rule must match all URLs"),
            "{}",
            result.out
        );
        assert!(
            result
                .err
                .contains("warning: rule #1: unknown key \"servce\""),
            "{}",
            result.err
        );

        let result = validate_file(&file, true);
        assert_eq!(result.code, 1);
        let report: serde_json::Value =
            serde_json::from_str(&result.out).expect("one JSON document");
        assert_eq!(report["ok"], false);
        assert_eq!(report["problems"].as_array().map(Vec::len), Some(3));
        assert_eq!(report["problems"][0]["index"], 0);
        assert_eq!(report["problems"][0]["rule"], 1);
        assert_eq!(report["problems"][0]["hostname"], "a.example.com:443");
        assert_eq!(report["problems"][0]["code"], "hostname_has_port");
        assert_eq!(report["warnings"][0]["code"], "unknown_key");
    }

    #[test]
    fn valid_config_with_warnings_is_still_ok() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "config.yml",
            "tunnel: t\nIngress: x\ningress:\n  - service: http_status:404\n",
        );
        let result = validate_file(&file, false);
        assert_eq!((result.code, result.out.as_str()), (0, "OK\n"));
        assert!(
            result.err.contains("\"Ingress\" looks like \"ingress\""),
            "{}",
            result.err
        );
        let result = validate_file(&file, true);
        let report: serde_json::Value = serde_json::from_str(&result.out).expect("JSON");
        assert_eq!(
            (result.code, &report["ok"]),
            (0, &serde_json::Value::Bool(true))
        );
        assert_eq!(report["warnings"][0]["code"], "lookalike_top_level_key");
    }

    #[test]
    fn unreadable_files_and_syntax_errors_exit_1_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.yml");
        let result = validate_file(&missing, false);
        assert_eq!(result.code, 1);
        assert!(
            result.err.starts_with("heady-origin: cannot read ")
                && result.err.contains("missing.yml"),
            "{}",
            result.err
        );

        let broken = write(
            dir.path(),
            "broken.yml",
            "ingress:\n  - hostname: a\n   service: b\n",
        );
        let result = validate_file(&broken, false);
        assert_eq!(result.code, 1);
        assert!(
            result.err.contains("YAML syntax error at line 3, column"),
            "{}",
            result.err
        );
        let result = validate_file(&broken, true);
        let report: serde_json::Value =
            serde_json::from_str(&result.out).expect("JSON even for errors");
        assert_eq!(
            (
                result.code,
                &report["error"]["code"],
                &report["error"]["line"]
            ),
            (1, &json!("yaml_syntax"), &json!(3))
        );

        let result = validate_file(dir.path(), true);
        let report: serde_json::Value = serde_json::from_str(&result.out).expect("JSON");
        assert_eq!(
            (result.code, &report["error"]["code"]),
            (1, &json!("unreadable"))
        );

        let result = rule_for(&broken, "https://a.example.com/");
        assert_eq!(result.code, 1);
    }

    #[test]
    fn rule_exit_codes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let invalid = write(
            dir.path(),
            "invalid.yml",
            "ingress:\n  - hostname: a.example.com\n    service: http://x\n",
        );
        let result = rule_for(&invalid, "not a url");
        assert_eq!(result.code, 2, "a bad URL is a bad argument");
        assert!(
            result.err.contains("doesn't have a hostname"),
            "{}",
            result.err
        );
        let result = rule_for(&invalid, "https://a.example.com/");
        assert_eq!(result.code, 1, "cloudflared would refuse the config");
        assert!(
            result
                .err
                .contains("the last ingress rule must match all URLs"),
            "{}",
            result.err
        );
    }

    #[test]
    fn an_https_origin_is_checked_against_the_ca_pool_and_the_result_validates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let properties = write(dir.path(), "properties.toml", REAL_PROPERTIES);
        let settings = RenderSettings {
            origin_url: "https://127.0.0.1:8443".into(),
            ca_pool: Some("/etc/heady/mesh/ca.pem".into()),
            ..example_settings()
        };
        let target = dir.path().join("config.yml");
        let rendered = run_captured(|out, err| {
            render_command(&properties, &settings, Some(&target), out, err)
        });
        assert_eq!(rendered.code, 0, "{}", rendered.err);
        let yaml = std::fs::read_to_string(&target).unwrap();
        assert!(
            yaml.contains("originRequest:\n  caPool: /etc/heady/mesh/ca.pem\n"),
            "{yaml}"
        );
        assert!(yaml.contains("service: https://127.0.0.1:8443"), "{yaml}");
        let checked = validate_file(&target, false);
        assert_eq!(checked.code, 0, "{}{}", checked.out, checked.err);
    }

    #[test]
    fn render_rejects_bad_arguments_with_2_and_bad_properties_with_1() {
        let dir = tempfile::tempdir().expect("temp dir");
        let properties = write(dir.path(), "properties.toml", REAL_PROPERTIES);
        let command = |tunnel_id: &str, origin_url: &str, catch_all: &str| RenderSettings {
            tunnel_id: tunnel_id.into(),
            credentials_file: RenderSettings::default_credentials_file(tunnel_id),
            origin_url: origin_url.into(),
            catch_all: catch_all.into(),
            ca_pool: None,
        };
        for (bad, flag) in [
            (
                command("", "http://127.0.0.1:8080", "http_status:404"),
                "--tunnel-id",
            ),
            (
                command("id\nx", "http://127.0.0.1:8080", "http_status:404"),
                "--tunnel-id",
            ),
            (
                command("id", "127.0.0.1:8080", "http_status:404"),
                "--origin-url",
            ),
            (
                command("id", "http://127.0.0.1:8080/api", "http_status:404"),
                "--origin-url",
            ),
            (
                command("id", "http://127.0.0.1:8080", "http_status:4040"),
                "--catch-all",
            ),
            (
                RenderSettings {
                    ca_pool: Some("/etc/heady/ca.pem".into()),
                    ..command("id", "http://127.0.0.1:8080", "http_status:404")
                },
                "--ca-pool",
            ),
        ] {
            let result = run_captured(|out, err| render_command(&properties, &bad, None, out, err));
            assert_eq!(result.code, 2, "{}", result.err);
            assert!(result.err.contains(flag), "{}", result.err);
            assert!(result.out.is_empty());
        }

        let duplicated = write(
            dir.path(),
            "dup.toml",
            "[[property]]\nname = \"a\"\nhostname = \"api.example.com\"\nkind = \"api\"\n\
             [[property]]\nname = \"b\"\nhostname = \"API.example.com\"\nkind = \"api\"\n",
        );
        let result = render_to(&duplicated, None);
        assert_eq!(result.code, 1);
        assert!(
            result.err.contains("property #2 (b) has the same hostname"),
            "{}",
            result.err
        );
        let result = render_to(&dir.path().join("none.toml"), None);
        assert_eq!(result.code, 1);
        assert!(result.err.contains("cannot read"), "{}", result.err);
    }

    #[test]
    fn render_out_replaces_an_existing_file_and_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let properties = write(dir.path(), "properties.toml", REAL_PROPERTIES);
        let config = write(dir.path(), "config.yml", "old contents\n");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).expect("chmod");
        let result = render_to(&properties, Some(&config));
        assert_eq!(result.code, 0, "{}", result.err);
        assert!(fs::read_to_string(&config)
            .expect("read")
            .starts_with("# cloudflared configuration"));
        assert_eq!(
            fs::metadata(&config).expect("stat").permissions().mode() & 0o777,
            0o640
        );

        let result = render_to(
            &dir.path().join("properties.toml"),
            Some(&dir.path().join("no-such-dir").join("config.yml")),
        );
        assert_eq!(result.code, 1);
        assert!(result.err.contains("cannot write"), "{}", result.err);
    }
}
