//! `heady-edge-config write|check [--strict]`: regenerate (or check) the wrangler.toml routes
//! and the edge landing pages from deploy/properties.toml. `check` also lists the deployment
//! settings (Worker variables) still to set and the properties an operator must complete;
//! with `--strict` (before `wrangler deploy`) anything still to set fails the check.

use heady_xtask::edge_config::{derive, load_properties, repo_root, settings};
use std::fs;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let strict = args.get(1).is_some_and(|a| a == "--strict");
    if !(mode == "write" && args.len() == 1 || mode == "check" && (args.len() == 1 || strict))
        || args.len() > 2
    {
        eprintln!("usage: heady-edge-config write | check [--strict]");
        return ExitCode::from(2);
    }
    let root = repo_root();
    let (files, extra) = match derive(&root) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("heady-edge-config: {e}");
            return ExitCode::from(1);
        }
    };
    let stale: Vec<_> = files.iter().filter(|f| f.stale).collect();
    if mode == "check" {
        for f in &stale {
            eprintln!("out of date: {}", f.path.display());
        }
        for p in &extra {
            eprintln!("not generated from deploy/properties.toml: {}", p.display());
        }
        if !(stale.is_empty() && extra.is_empty()) {
            eprintln!("run: cargo run -p heady-xtask --bin heady-edge-config -- write");
            return ExitCode::from(1);
        }
        println!("OK: wrangler.toml routes and edge/assets match deploy/properties.toml");
        return match still_to_set(&root) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) if strict => ExitCode::from(1),
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("heady-edge-config: {e}");
                ExitCode::from(1)
            }
        };
    }
    for f in stale {
        if let Some(dir) = f.path.parent() {
            if let Err(e) = fs::create_dir_all(dir) {
                eprintln!("{}: {e}", dir.display());
                return ExitCode::from(1);
            }
        }
        // Write to a temporary file and rename, so a reader never sees half a file.
        let tmp = f.path.with_extension("tmp-heady");
        if let Err(e) = fs::write(&tmp, &f.contents).and_then(|_| fs::rename(&tmp, &f.path)) {
            eprintln!("{}: {e}", f.path.display());
            return ExitCode::from(1);
        }
        println!("wrote {}", f.path.display());
    }
    for p in extra {
        if let Err(e) = fs::remove_file(&p) {
            eprintln!("{}: {e}", p.display());
            return ExitCode::from(1);
        }
        println!("removed {}", p.display());
    }
    ExitCode::SUCCESS
}

/// Prints what an operator still has to set or complete; returns how many things that is.
fn still_to_set(root: &std::path::Path) -> Result<usize, String> {
    let properties = load_properties(root)?;
    let wrangler_path = root.join("wrangler.toml");
    let wrangler = fs::read_to_string(&wrangler_path)
        .map_err(|e| format!("{}: {e}", wrangler_path.display()))?;
    let (to_set, ok) = settings(&properties, &wrangler)?;
    for setting in &ok {
        println!("set: {}", setting.var);
    }
    if !to_set.is_empty() {
        println!(
            "to set in wrangler.toml [vars] (or `wrangler deploy --var NAME:VALUE`) before deploying:"
        );
        for setting in &to_set {
            println!("  {}: {}", setting.var, setting.purpose);
        }
    }
    let pending: Vec<_> = properties.pending().filter(|p| p.edge).collect();
    for p in &pending {
        println!(
            "property {} ({}) is incomplete: {}",
            p.name,
            p.hostname,
            p.operator_todo.as_deref().unwrap_or_default()
        );
    }
    let parked = properties.pending().filter(|p| !p.edge).count();
    if parked > 0 {
        println!("{parked} parked placeholder properties (edge = false) wait for an operator");
    }
    Ok(to_set.len() + pending.len())
}
