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

/// A deployment setting (a Worker variable) the edge needs and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub var: String,
    pub purpose: String,
}

/// What the deployment must set before the edge is complete, read from wrangler.toml's
/// top-level `[vars]` against the property list: each external property's `url_var` and,
/// when a Discord property is routed, `DISCORD_PUBLIC_KEY`. `Ok((to_set, ok))`: the settings
/// that are empty, and those that are set. A setting missing from `[vars]` altogether is an
/// error (the file and the property list disagree); a value that is set but invalid too.
pub fn settings(
    properties: &Properties,
    wrangler: &str,
) -> Result<(Vec<Setting>, Vec<Setting>), String> {
    let table: toml::Table = toml::from_str(wrangler).map_err(|e| format!("wrangler.toml: {e}"))?;
    let vars = table.get("vars").and_then(toml::Value::as_table);
    let mut needed: Vec<(Setting, Option<&Property>)> = Vec::new();
    for p in properties.iter().filter(|p| p.edge) {
        if let Some(var) = &p.url_var {
            let purpose = format!("the https URL {} ({}) redirects to", p.hostname, p.name);
            needed.push((
                Setting {
                    var: var.clone(),
                    purpose,
                },
                Some(p),
            ));
        }
    }
    if properties
        .iter()
        .any(|p| p.edge && p.kind == heady_shared::properties::Kind::Discord)
    {
        needed.push((
            Setting {
                var: "DISCORD_PUBLIC_KEY".into(),
                purpose: "the Discord application's public key (docs/discord.md)".into(),
            },
            None,
        ));
    }
    let (mut to_set, mut ok) = (Vec::new(), Vec::new());
    for (setting, property) in needed {
        let value = match vars.and_then(|v| v.get(&setting.var)) {
            None => {
                return Err(format!(
                    "wrangler.toml [vars] has no {} ({}): add `{} = \"\"`",
                    setting.var, setting.purpose, setting.var
                ))
            }
            Some(v) => v
                .as_str()
                .ok_or_else(|| format!("wrangler.toml [vars] {} must be a string", setting.var))?
                .trim()
                .to_owned(),
        };
        if value.is_empty() {
            to_set.push(setting);
            continue;
        }
        match property {
            Some(p) => {
                p.external_url(Some(&value))
                    .map_err(|why| format!("wrangler.toml [vars]: {why}"))?;
            }
            None => {
                heady_shared::discord::PublicKey::from_hex(&value)
                    .map_err(|why| format!("wrangler.toml [vars] {}: {why}", setting.var))?;
            }
        }
        ok.push(setting);
    }
    Ok((to_set, ok))
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

    fn props() -> Properties {
        load_properties(&repo_root()).expect("deploy/properties.toml")
    }

    #[test]
    fn the_settings_still_to_set_are_listed_and_bad_ones_refused() {
        let wrangler = fs::read_to_string(repo_root().join("wrangler.toml")).unwrap();
        let (to_set, _) = settings(&props(), &wrangler).expect("the committed file declares all");
        let names: Vec<_> = to_set.iter().map(|s| s.var.as_str()).collect();
        assert_eq!(
            names,
            [
                "SPACE_1_URL",
                "SPACE_2_URL",
                "SPACE_3_URL",
                "DISCORD_PUBLIC_KEY"
            ]
        );
        assert!(to_set[0].purpose.contains("space1.headysystems.com"));

        let set = |text: &str, var: &str, value: &str| {
            text.replace(&format!("{var} = \"\""), &format!("{var} = \"{value}\""))
        };
        let one = set(
            &wrangler,
            "SPACE_1_URL",
            "https://huggingface.co/spaces/heady/one",
        );
        let (to_set, ok) = settings(&props(), &one).unwrap();
        assert_eq!(to_set.len(), 3);
        assert_eq!(ok[0].var, "SPACE_1_URL");
        let bad = set(&wrangler, "SPACE_2_URL", "http://plain.example.org/");
        let err = settings(&props(), &bad).unwrap_err();
        assert!(
            err.contains("SPACE_2_URL") && err.contains("https://"),
            "{err}"
        );
        let bad_key = set(&wrangler, "DISCORD_PUBLIC_KEY", "abc");
        let err = settings(&props(), &bad_key).unwrap_err();
        assert!(err.contains("DISCORD_PUBLIC_KEY"), "{err}");
        let missing = wrangler.replace("SPACE_3_URL = \"\"", "");
        let err = settings(&props(), &missing).unwrap_err();
        assert!(err.contains("has no SPACE_3_URL"), "{err}");
    }

    #[test]
    fn repo_root_is_the_workspace_root() {
        let root = repo_root();
        let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
        assert!(manifest.contains("[workspace]"), "{}", root.display());
        assert!(root.join("deploy/properties.toml").is_file());
        assert!(root.join("wrangler.toml").is_file());
    }
}
