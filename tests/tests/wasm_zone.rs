//! The vector zone is the same on wasm32 (what the edge runs) and x86_64 (the origin):
//! heady-shared is compiled to wasm32, run in Node, and compared bit for bit.

use std::path::PathBuf;
use std::process::Command;

fn native(dim: u32, salt: u32) -> Vec<u64> {
    let mut out = [0f64; 4];
    let rc = unsafe { heady_zone_probe::golden_zone(dim, salt, out.as_mut_ptr()) };
    assert_eq!(rc, 0);
    out.iter().map(|x| x.to_bits()).collect()
}

fn build_wasm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    // A target dir of its own: the outer cargo holds the main one while tests run.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-probe");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "heady-zone-probe",
            "--target",
            "wasm32-unknown-unknown",
            "--lib",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&root)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building heady-shared for wasm32 failed (is the wasm32-unknown-unknown target installed? deploy/setup.sh installs it)");
    target.join("wasm32-unknown-unknown/release/heady_zone_probe.wasm")
}

#[test]
fn zone_is_bit_identical_on_wasm32_and_native() {
    let wasm = build_wasm();
    let script = r#"
        const fs = await import('node:fs');
        const { instance } = await WebAssembly.instantiate(fs.readFileSync(process.argv[process.argv.length - 1]));
        const e = instance.exports;
        const out = [];
        for (const [dim, salt] of [[384, 0], [384, 1], [384, 2], [384, 3], [768, 9], [3, 5], [1, 1]]) {
          const p = e.out_buffer();
          if (e.golden_zone(dim, salt, p) !== 0) throw new Error('zone failed');
          const view = new DataView(e.memory.buffer, p, 32);
          out.push([0, 8, 16, 24].map(o => view.getBigUint64(o, true).toString()));
        }
        console.log(JSON.stringify(out));
    "#;
    let output = Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            &format!("(async () => {{ {script} }})()"),
            "--",
        ])
        .arg(&wasm)
        .output()
        .expect("node is installed (deploy/setup.sh)");
    assert!(
        output.status.success(),
        "node: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Vec<Vec<String>> = serde_json::from_slice(&output.stdout).unwrap();
    let want: Vec<Vec<String>> = [
        (384, 0),
        (384, 1),
        (384, 2),
        (384, 3),
        (768, 9),
        (3, 5),
        (1, 1),
    ]
    .iter()
    .map(|&(d, s)| native(d, s).iter().map(|b| b.to_string()).collect())
    .collect();
    assert_eq!(got, want);
}
