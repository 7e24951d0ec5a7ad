#![allow(dead_code)]
//! Test support: an in-process daemon on a free port, and a child-process one.

pub mod fake_provider;

use heady_origin::app::App;
use heady_origin::config::{Config, Overrides};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub struct TestServer {
    pub base: String,
    pub state: Arc<App>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = Config::load(None, &[], &Overrides::default()).unwrap();
        cfg.data_dir = dir.path().to_path_buf();
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        // Memory and conductor tests are about those; tests/defense.rs turns defense on.
        cfg.defense.enabled = false;
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = tokio::task::spawn_blocking(move || App::open(cfg))
            .await
            .unwrap()
            .unwrap();
        // Memory belongs to accounts: every server knows the key `owner_client()` sends (a
        // restart in the same directory finds it stored already).
        if let Err(e) = state.defense.keys.add(
            OWNER_KEY,
            OWNER_ACCOUNT,
            heady_shared::Tier::Enterprise,
            heady_shared::Classification::Internal,
            0,
        ) {
            assert!(e.to_string().contains("already stored"), "{e}");
        }
        let (tx, rx) = oneshot::channel::<()>();
        let st = state.clone();
        let task = tokio::spawn(async move {
            heady_origin::http::run(
                listener,
                st,
                async {
                    let _ = rx.await;
                },
                Duration::from_secs(5),
            )
            .await
        });
        TestServer {
            base: format!("http://{addr}"),
            state,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits until the HNSW index is loaded and every stored row is in its graph.
    pub async fn wait_index(&self) {
        let m = self.state.memory.clone();
        let ok = tokio::task::spawn_blocking(move || m.wait_indexed(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(ok, "index never caught up");
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.dir
    }
}

/// The account `owner_client()` acts for, and its key (added to every test server).
pub const OWNER_ACCOUNT: &str = "acct_aaaaaaaaaaaaaaaaaaaaaaaa";
pub const OWNER_KEY: &str = "hk_1111111111111111111111111111111111111111111111111111111111111111";

/// A client that sends `key` with every request.
pub fn client_with(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A client acting for `OWNER_ACCOUNT` (Enterprise, INTERNAL): memory needs an account.
pub fn owner_client() -> reqwest::Client {
    client_with(OWNER_KEY)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A deterministic unit vector near one of `clusters` centres.
pub fn clustered(dim: usize, cluster: u64, salt: u64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..dim)
        .map(|i| {
            let c = heady_shared::zone::splitmix64(cluster * 1_000_003 + i as u64);
            let n = heady_shared::zone::splitmix64(salt.wrapping_mul(7_919) ^ (i as u64) << 20);
            (c >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                + 0.15 * ((n >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A private `redis-server` on a free port, stopped on drop (as redis-rs's own tests do).
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> RedisServer {
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (deploy/setup.sh installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return RedisServer { port, child };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, the way a
    /// hung Redis looks to a client.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} redis-server");
    }
}

/// A request as the edge Worker sends it: the envelope headers and an HMAC over the request
/// (`heady_shared::wire`), for `subject` on `tier`.
pub fn edge_signed(
    base: &str,
    path: &str,
    body: &[u8],
    subject: &str,
    tier: heady_shared::Tier,
    key: &str,
    nonce: &str,
) -> reqwest::RequestBuilder {
    use heady_shared::wire;
    let auth = wire::HmacSha256::new(key.as_bytes()).unwrap();
    let line = wire::RequestLine {
        method: "POST",
        path,
        query: "",
        body_sha256: wire::body_sha256(body),
    };
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let envelope = wire::Envelope {
        host: "headyapi.com".into(),
        subject: subject.into(),
        tier,
        clearance: heady_shared::Classification::Public,
        client_ip: "198.51.100.7".into(),
        timestamp,
        nonce: nonce.into(),
    };
    let mut req = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in wire::sign(&auth, &line, &envelope) {
        req = req.header(k, v);
    }
    req
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
