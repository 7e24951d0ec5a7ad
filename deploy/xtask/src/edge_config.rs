//! Files derived from `deploy/properties.toml` for the edge: the `wrangler.toml` routes and
//! the static landing pages under `edge/assets`. `heady-edge-config write` regenerates them;
//! `check` (and the heady-tests drift tests) fail when the committed copies differ.
//! Run: `cargo run -p heady-xtask --bin heady-edge-config -- write|check`.

use heady_edge::site;
use heady_shared::properties::{Properties, Property};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

pub const BEGIN_ROUTES: &str = "# BEGIN generated routes";
pub const END_ROUTES: &str = "# END generated routes";

/// The repository root (this crate lives in `deploy/xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("../.."))
}

pub fn load_properties(root: &Path) -> Result<Properties, String> {
    let path = root.join("deploy/properties.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Properties::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The zone a hostname belongs to: its last two labels (every property is on a two-label
/// registrable domain; a public-suffix list would be needed for names like example.co.uk).
pub fn zone_of(hostname: &str) -> String {
    let labels: Vec<&str> = hostname.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// One route line. Origin-reaching properties are zone routes (their DNS record is the
/// tunnel, so the Worker's fetch to the same host reaches cloudflared); the rest are Custom
/// Domains, where the Worker is the origin.
pub fn route_line(property: &Property) -> String {
    if property.origin {
        format!(
            "  {{ pattern = \"{}/*\", zone_name = \"{}\" }},",
            property.hostname,
            zone_of(&property.hostname)
        )
    } else {
        format!(
            "  {{ pattern = \"{}\", custom_domain = true }},",
            property.hostname
        )
    }
}

/// The text between the route markers.
pub fn routes_block(properties: &Properties) -> String {
    let mut out = String::from("routes = [\n");
    for property in properties.iter().filter(|p| p.edge) {
        let _ = writeln!(out, "{}", route_line(property));
    }
    out.push_str("]\n");
    out
}

/// `wrangler` with its generated block replaced by `block`.
pub fn with_routes(wrangler: &str, block: &str) -> Result<String, String> {
    let start = wrangler
        .find(BEGIN_ROUTES)
        .ok_or_else(|| format!("wrangler.toml has no {BEGIN_ROUTES:?} line"))?;
    let after_begin = start + BEGIN_ROUTES.len() + 1;
    let end = wrangler[start..]
        .find(END_ROUTES)
        .map(|i| start + i)
        .ok_or_else(|| {
            format!("wrangler.toml has no {END_ROUTES:?} line after the begin marker")
        })?;
    Ok(format!(
        "{}{block}{}",
        &wrangler[..after_begin.min(end)],
        &wrangler[end..]
    ))
}

/// A file to (re)write and whether it differs from what is on disk.
pub struct Derived {
    pub path: PathBuf,
    pub contents: String,
    pub stale: bool,
}

/// Everything derived from the property list, compared with the files on disk. Also lists
/// files under `edge/assets` that no property produces any more (as stale, empty contents).
pub fn derive(root: &Path) -> Result<(Vec<Derived>, Vec<PathBuf>), String> {
    let properties = load_properties(root)?;
    let mut out = Vec::new();
    let wrangler_path = root.join("wrangler.toml");
    let wrangler = fs::read_to_string(&wrangler_path)
        .map_err(|e| format!("{}: {e}", wrangler_path.display()))?;
    let updated = with_routes(&wrangler, &routes_block(&properties))?;
    out.push(Derived {
        stale: updated != wrangler,
        path: wrangler_path,
        contents: updated,
    });
    let assets = root.join(site::ASSETS_DIR);
    let mut expected = Vec::new();
    for (relative, contents) in site::render_assets(&properties) {
        let path = assets.join(&relative);
        let stale = fs::read_to_string(&path)
            .map(|c| c != contents)
            .unwrap_or(true);
        expected.push(path.clone());
        out.push(Derived {
            path,
            contents,
            stale,
        });
    }
    let mut extra = Vec::new();
    collect_files(&assets, &mut extra);
    extra.retain(|p| !expected.contains(p));
    extra.sort();
    Ok((out, extra))
}

fn collect_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, into);
        } else {
            into.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_is_the_workspace_root() {
        let root = repo_root();
        let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
        assert!(manifest.contains("[workspace]"), "{}", root.display());
        assert!(root.join("deploy/properties.toml").is_file());
        assert!(root.join("wrangler.toml").is_file());
    }
}
