//! The origin's layering, checked on its source: the domain (conductor, pipeline, cache,
//! providers, memory, defense, accounts, billing, usage, mesh, mcp) never imports the layers above it (http, api, app, cli), and the
//! top-level modules form no cycle. A module's edges are the `crate::<module>` paths its
//! files name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const DOMAIN: [&str; 11] = [
    "cache",
    "mesh",
    "mcp",
    "conductor",
    "pipeline",
    "providers",
    "memory",
    "defense",
    "accounts",
    "billing",
    "usage",
];
const ABOVE_DOMAIN: [&str; 4] = ["http", "api", "app", "cli"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module of a file under `src/` (`src/pipeline/stages/plan.rs` -> `pipeline`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The top-level modules a file names as `crate::<m>`, comments and strings aside.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let tail = &rest[i + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = tail;
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let text = fs::read_to_string(f).unwrap();
        let deps = g.entry(m.clone()).or_default();
        for r in references(&text) {
            if r != m && modules.contains(&r) {
                deps.insert(r);
            }
        }
    }
    g
}

#[test]
fn the_domain_never_imports_the_layers_above_it() {
    let g = graph();
    let mut bad = Vec::new();
    for m in DOMAIN {
        let deps = g.get(m).unwrap_or_else(|| panic!("no module {m}"));
        for up in ABOVE_DOMAIN {
            if deps.contains(up) {
                bad.push(format!("{m} -> {up}"));
            }
        }
    }
    assert!(bad.is_empty(), "domain imports a layer above it: {bad:?}");
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let g = graph();
    // Depth-first search; a grey node reached again closes a cycle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(1) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if let Some(cycle) = visit(m, &g, &mut state, &mut Vec::new()) {
            panic!("modules form a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_imports_and_ignores_comments() {
    let r = references("use crate::http::respond; // crate::api is fine in a comment\nlet x = crate::memory::id_of(k);");
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        ["http".to_string(), "memory".to_string()]
    );
}
