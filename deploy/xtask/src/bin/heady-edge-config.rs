//! `heady-edge-config write|check`: regenerate (or check) the wrangler.toml routes and the
//! edge landing pages from deploy/properties.toml.

use heady_xtask::edge_config::{derive, repo_root};
use std::fs;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode != "write" && mode != "check" {
        eprintln!("usage: heady-edge-config write|check");
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
        if stale.is_empty() && extra.is_empty() {
            println!("OK: wrangler.toml routes and edge/assets match deploy/properties.toml");
            return ExitCode::SUCCESS;
        }
        eprintln!("run: cargo run -p heady-xtask --bin heady-edge-config -- write");
        return ExitCode::from(1);
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
