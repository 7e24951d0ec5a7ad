//! Every insert answered 200 survives `kill -9` of the real binary and a restart.

mod common;

use common::{client, client_with, clustered};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the daemon when the test ends, passing or not.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &std::path::Path, port: u16) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_heady-origin"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .env("HEADY_MEMORY_DIM", "16")
            .env("HEADY_DEFENSE", "off")
            .env("HEADY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// A key for an account, made with the CLI in the daemon's data directory (memory belongs to
/// accounts).
fn create_key(dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_heady-origin"))
        .args(["keys", "--data-dir"])
        .arg(dir)
        .args([
            "create",
            "--user",
            "durability",
            "--tier",
            "enterprise",
            "--clearance",
            "internal",
        ])
        .env("HEADY_MEMORY_DIM", "16")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client().get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemon not ready at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_inserts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let key = create_key(dir.path());
    let mut child = spawn(dir.path(), port);
    wait_ready(&base).await;

    // Writers run until the daemon dies under them; only 200s count as acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let base = base.clone();
        let stop = stop.clone();
        let key = key.clone();
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<(String, u64, u64)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = if i.is_multiple_of(5) {
                    let items: Vec<Value> = (0..20).map(|j| json!({"content": format!("w{w}-{i}-{j}"), "embedding": clustered(16, w, i * 100 + j), "session_id": format!("w{w}")})).collect();
                    json!({ "items": items })
                } else {
                    json!({"content": format!("w{w}-{i}"), "embedding": clustered(16, w, i * 100), "session_id": format!("w{w}")})
                };
                match client_with(&key).post(format!("{base}/api/memory/vectors")).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => break,
                        };
                        if let Some(ids) = v["ids"].as_array() {
                            for (j, id) in ids.iter().enumerate() {
                                acked.push((id.as_str().unwrap().to_string(), w, i * 100 + j as u64));
                            }
                        } else {
                            acked.push((v["id"].as_str().unwrap().to_string(), w, i * 100));
                        }
                    }
                    _ => break,
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.0.kill().unwrap(); // SIGKILL: no shutdown hook, no checkpoint.
    child.0.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 50,
        "only {} inserts were acknowledged before the kill",
        acked.len()
    );

    let _child = spawn(dir.path(), port);
    wait_ready(&base).await;
    let stats: Value = client_with(&key)
        .get(format!("{base}/api/memory/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total = stats["total_vectors"].as_u64().unwrap();
    assert!(
        total >= acked.len() as u64,
        "{total} rows after restart, {} were acknowledged",
        acked.len()
    );
    // Each acknowledged row is there: a session filter makes the search an exact scan.
    for (id, w, salt) in acked.iter().step_by(7) {
        let body: Value = client_with(&key)
            .post(format!("{base}/api/memory/search"))
            .json(&json!({"embedding": clustered(16, *w, *salt), "top_k": 1, "session_id": format!("w{w}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["results"][0]["id"].as_str(),
            Some(id.as_str()),
            "{body}"
        );
    }
}
