//! The contracts edge and origin share are heady-shared types; the edge uses them directly.
//! So does the origin, whose one error type takes an `ErrorCode`. What cannot (the docs, the
//! Node harness, deploy config) is checked against them here, so a copy that drifts fails a
//! test.

use heady_shared::embedding::{DEFAULT_DIMENSIONS, DEFAULT_MODEL};
use heady_shared::ErrorCode;
use heady_xtask::edge_config::repo_root;
use std::collections::BTreeSet;
use std::path::Path;

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_code(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Codes a doc names: "403 `upgrade_required`" and `"code":"banned"`.
fn codes_named_in(text: &str) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for (i, _) in text.match_indices(" `") {
        let status = text[..i].rsplit(|c: char| !c.is_ascii_digit()).next();
        let code = text[i + 2..].split('`').next().unwrap_or("");
        if status.is_some_and(|s| s.len() == 3) && is_code(code) {
            codes.insert(code.to_owned());
        }
    }
    for (i, _) in text.match_indices(r#""code":""#) {
        let code = text[i + 8..].split('"').next().unwrap_or("");
        if is_code(code) {
            codes.insert(code.to_owned());
        }
    }
    codes
}

/// README.md and docs/*.md, as (text, path).
fn docs() -> Vec<(String, String)> {
    let mut files = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(repo_root().join("docs")).expect("docs/") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    files.into_iter().map(|f| (read(&f), f)).collect()
}

#[test]
fn every_error_code_the_docs_name_is_an_error_code() {
    let mut named = 0;
    for (text, file) in docs() {
        let codes = codes_named_in(&text);
        named += codes.len();
        let unknown: Vec<_> = codes
            .iter()
            .filter(|c| c.parse::<ErrorCode>().is_err())
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} names codes heady_shared::ErrorCode lacks: {unknown:?}"
        );
    }
    assert!(
        named >= 15,
        "found only {named}: did the docs' format change?"
    );
}

/// docs/api.md's error table: one row per code (a row may list several), with its statuses.
#[test]
fn the_api_docs_error_table_is_exactly_error_code() {
    let api = read("docs/api.md");
    let mut documented = BTreeSet::new();
    for row in api.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let statuses: Vec<u16> = cells[2]
            .split('/')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        if statuses.is_empty() {
            continue; // a row of another table (routes)
        }
        for code in cells[1].split(',').map(|c| c.trim().trim_matches('`')) {
            let parsed: ErrorCode = code
                .parse()
                .unwrap_or_else(|_| panic!("docs/api.md: {code} is not an ErrorCode"));
            assert!(
                statuses.contains(&parsed.default_status()),
                "docs/api.md: {code} is sent with {}, the table says {statuses:?}",
                parsed.default_status()
            );
            assert!(documented.insert(parsed), "docs/api.md: {code} twice");
        }
    }
    let missing: Vec<_> = ErrorCode::ALL
        .iter()
        .filter(|c| !documented.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/api.md's error table lacks {missing:?}"
    );
}

/// Calls of the origin's error constructors whose code is a string literal instead of an
/// `ErrorCode` (`Error::new("banned", ..)`): the type forbids it, this says where if it returns.
fn origin_string_codes(dir: &Path, out: &mut Vec<String>, calls: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            origin_string_codes(&path, out, calls);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in ["Error::new(", "Error::unauthorized(", "Error::forbidden("] {
            for (i, _) in text.match_indices(call) {
                // `Error::new(` itself, not `ProviderError::new(` or `io::Error::new(`.
                let before = text[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                *calls += 1;
                let args = text[i + call.len()..].trim_start();
                if !args.starts_with("ErrorCode::") && !args.starts_with("code") {
                    out.push(format!(
                        "{}: {}",
                        path.display(),
                        &args[..args.len().min(40)]
                    ));
                }
            }
        }
    }
}

#[test]
fn the_origin_names_every_error_code_through_the_shared_enum() {
    let (mut found, mut calls) = (Vec::new(), 0);
    origin_string_codes(&repo_root().join("origin/src"), &mut found, &mut calls);
    assert!(
        calls >= 30,
        "found only {calls} constructor calls: did they change?"
    );
    assert!(
        found.is_empty(),
        "error codes not given as heady_shared::ErrorCode: {found:?}"
    );
}

#[test]
fn the_embedding_model_outside_rust_is_the_shared_default() {
    let harness = read("tests/edge/harness.mjs");
    assert!(
        harness.contains(&format!("export const EMBED_DIMS = {DEFAULT_DIMENSIONS};")),
        "tests/edge/harness.mjs EMBED_DIMS"
    );
    for file in ["tests/edge/harness.mjs", "tests/edge/edge.test.mjs"] {
        let text = read(file);
        for (i, _) in text.match_indices("\"@cf/baai/") {
            let model = text[i + 1..].split('"').next().unwrap_or("");
            assert_eq!(model, DEFAULT_MODEL, "{file}");
        }
    }
    let origin_toml = read("deploy/heady-origin.toml");
    assert!(
        origin_toml.lines().any(|l| l
            .trim_start()
            .starts_with(&format!("dim = {DEFAULT_DIMENSIONS} "))),
        "deploy/heady-origin.toml memory.dim"
    );
    assert!(origin_toml.contains(&format!("model = \"{DEFAULT_MODEL}\"")));
    let wrangler = read("wrangler.toml");
    assert!(
        wrangler.contains(&format!("{DEFAULT_DIMENSIONS} dimensions")),
        "wrangler.toml: the Vectorize index's dimensions"
    );
}
