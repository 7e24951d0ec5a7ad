#![allow(dead_code)]
//! Test support: an in-process daemon on a free port, and a child-process one.

pub mod certs;
pub mod fake_anthropic;
pub mod fake_discord;
pub mod fake_provider;
pub mod fake_stripe;

use heady_origin::app::App;
use heady_origin::config::{Config, Overrides};
use heady_shared::{Classification, Tier};
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
        add_key(
            &state,
            OWNER_KEY,
            OWNER_ACCOUNT,
            Tier::Enterprise,
            Classification::Internal,
        )
        .await;
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

/// The name of the account `owner_client()` acts for, and its key (added to every test
/// server).
pub const OWNER_ACCOUNT: &str = "owner";
pub const OWNER_KEY: &str = "hk_1111111111111111111111111111111111111111111111111111111111111111";

/// Stores `key` for the account named `name` (created with `tier` and `clearance` when there
/// is none); a key already stored is left as it is. Returns the account's id.
pub async fn add_key(
    app: &App,
    key: &str,
    name: &str,
    tier: Tier,
    clearance: Classification,
) -> heady_shared::AccountId {
    let accounts = &app.defense.accounts;
    let (account, _) = accounts
        .ensure_account(name, tier, clearance, 0)
        .await
        .unwrap();
    if let Err(e) = accounts
        .add_key(key, &account.id, Default::default(), 0)
        .await
    {
        assert!(e.to_string().contains("already"), "{e}");
    }
    account.id
}

/// Mints a key for the account named `name` (created when there is none): (key, account id).
pub async fn new_key(
    app: &App,
    name: &str,
    tier: Tier,
    clearance: Classification,
) -> (String, heady_shared::AccountId) {
    let accounts = &app.defense.accounts;
    let (account, _) = accounts
        .ensure_account(name, tier, clearance, 0)
        .await
        .unwrap();
    let created = accounts
        .create_key(&account.id, Default::default(), 0)
        .await
        .unwrap();
    (created.key, account.id)
}

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
    /// Speaks only TLS on `port`.
    tls: bool,
}

/// The PEM files of a TLS redis-server: its certificate and key, the CA its clients'
/// certificates must chain to, and a client certificate that does (to check it is up).
pub struct RedisTlsFiles {
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl RedisServer {
    /// Starts on a free port. The port is free when picked but another test's listener may take
    /// it before redis-server binds it, so the server counts as started only when it answers
    /// PING itself; if it exited (the port was taken), it is started again on another port.
    pub fn start() -> RedisServer {
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(server) = Self::try_start_on(port) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    pub fn start_on(port: u16) -> RedisServer {
        Self::try_start_on(port)
            .unwrap_or_else(|| panic!("redis-server did not start on port {port}"))
    }

    fn try_start_on(port: u16) -> Option<RedisServer> {
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
        for _ in 0..500 {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if answers_ping(port) {
                return Some(RedisServer {
                    port,
                    child,
                    tls: false,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// A redis-server with TLS only (`--port 0 --tls-port`), asking clients for a certificate
    /// from `files.ca` when `auth_clients`. Up once `redis-cli --tls` with the files' client
    /// certificate gets PONG (a TLS port does not answer a plain PING).
    pub fn start_tls(files: &RedisTlsFiles, auth_clients: bool) -> RedisServer {
        let port = free_port();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &path(&files.server_cert),
                "--tls-key-file",
                &path(&files.server_key),
                "--tls-ca-cert-file",
                &path(&files.ca),
                "--tls-auth-clients",
                if auth_clients { "yes" } else { "no" },
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
            let pong = std::process::Command::new("redis-cli")
                .args([
                    "--tls",
                    "--cacert",
                    &path(&files.ca),
                    "--cert",
                    &path(&files.client_cert),
                    "--key",
                    &path(&files.client_key),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "PING",
                ])
                .stderr(std::process::Stdio::null())
                .output()
                .expect("redis-cli is installed (with redis-server)");
            if String::from_utf8_lossy(&pong.stdout).trim() == "PONG" {
                return RedisServer {
                    port,
                    child,
                    tls: true,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server with TLS exited: {status} (is it built with TLS?)");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server with TLS did not answer PING on port {port}");
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
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

/// Whether a Redis server answers PING on `port` (not some other test's listener).
fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut sock) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    sock.write_all(b"PING\r\n").is_ok() && sock.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
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
    edge_request(
        EdgeCall {
            method: "POST",
            host: "headyapi.com",
            subject,
            tier,
            nonce,
        },
        base,
        path,
        body,
        key,
    )
    .header("content-type", "application/json")
}

/// What an edge-signed request vouches for besides the request line.
pub struct EdgeCall<'a> {
    pub method: &'a str,
    /// The property host (`x-heady-host`).
    pub host: &'a str,
    pub subject: &'a str,
    pub tier: heady_shared::Tier,
    pub nonce: &'a str,
}

/// `call` signed with the HMAC `key` as the edge signs it.
pub fn edge_request(
    call: EdgeCall<'_>,
    base: &str,
    path: &str,
    body: &[u8],
    key: &str,
) -> reqwest::RequestBuilder {
    use heady_shared::wire;
    let auth = wire::HmacSha256::new(key.as_bytes()).unwrap();
    let line = wire::RequestLine {
        method: call.method,
        path,
        query: "",
        body_sha256: wire::body_sha256(body),
    };
    let envelope = wire::Envelope {
        host: call.host.into(),
        subject: call.subject.into(),
        tier: call.tier,
        clearance: heady_shared::Classification::Public,
        client_ip: "198.51.100.7".into(),
        timestamp: unix_now(),
        nonce: call.nonce.into(),
    };
    let mut req = client().request(call.method.parse().unwrap(), format!("{base}{path}"));
    if !body.is_empty() {
        req = req.body(body.to_vec());
    }
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

/// A fresh database on the local PostgreSQL server (127.0.0.1:5432, user postgres, trust
/// auth), dropped with everything in it on drop. A missing server fails the test: the machine
/// has one.
pub struct FreshPg {
    pub name: String,
}

const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

async fn pg_admin(sql: String) {
    let (client, conn) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth)");
    let task = tokio::spawn(conn);
    client.batch_execute(&sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

/// One SQL statement on database `db` of the local server, through a connection of its own.
pub async fn pg_query(db: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let task = tokio::spawn(conn);
    let rows = c.query(sql, &[]).await.unwrap();
    drop(c);
    let _ = task.await;
    rows
}

impl FreshPg {
    pub async fn create() -> FreshPg {
        let name = format!("heady_test_{:012x}", rand::random::<u64>() >> 16);
        pg_admin(format!("CREATE DATABASE {name}")).await;
        FreshPg { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    pub fn database_url(&self) -> heady_origin::config::DatabaseUrl {
        heady_origin::config::DatabaseUrl::parse(&self.url()).unwrap()
    }

    /// The URL as the stores take it (no `[database_tls]`).
    pub fn target(&self) -> heady_origin::pg::PgTarget {
        heady_origin::pg::PgTarget::from_url(&self.database_url()).unwrap()
    }
}

impl Drop for FreshPg {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(pg_admin(sql))
        })
        .join();
    }
}

/// The Python of deploy/setup.sh's venv (or `HEADY_PYTHON`), with the official client
/// packages the peer tests drive (openai, stripe, mcp, the PQC libraries).
pub fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("HEADY_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::path::PathBuf::from(home).join(".cache/heady/venv/bin/python")
}

/// A fake's answer body.
pub type FakeBody =
    http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>;

/// Serves `handle` (HTTP/1 and HTTP/2) on a free loopback port until the task is aborted:
/// (port, task).
pub async fn serve_loopback<F, Fut>(handle: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<FakeBody>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (port, task)
}

/// A request as a fake reads it: method, path, headers (lower-case names) and the body as text.
pub async fn read_request(
    req: hyper::Request<hyper::body::Incoming>,
) -> (
    String,
    String,
    std::collections::BTreeMap<String, String>,
    String,
) {
    use http_body_util::BodyExt;
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let raw = req.into_body().collect().await.unwrap().to_bytes();
    (
        method,
        path,
        headers,
        String::from_utf8_lossy(&raw).to_string(),
    )
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Posts a handshake hello: the status and the body (a welcome, or a JSON error).
pub async fn post_hello(base: &str, hello: &[u8]) -> (u16, Vec<u8>) {
    let r = client()
        .post(format!(
            "{base}{}",
            heady_shared::api_paths::TUNNEL_HANDSHAKE
        ))
        .header("content-type", "application/octet-stream")
        .body(hello.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Opens a tunnel session at `base` as the edge with identity `edge` does, checking the
/// welcome against `pinned_origins`. `Err`: the origin's status and error code.
pub async fn open_session(
    base: &str,
    edge: &heady_shared::tunnel::Identity,
    pinned_origins: &[heady_shared::tunnel::Fingerprint],
) -> Result<heady_shared::tunnel::Session, (u16, String)> {
    use heady_shared::tunnel::{HelloRandomness, Initiator};
    let mut random = [0u8; HelloRandomness::BYTES];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
    let initiator =
        Initiator::start(edge, unix_now(), &HelloRandomness::from_bytes(&random)).unwrap();
    let (status, body) = post_hello(base, initiator.hello()).await;
    if status != 200 {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return Err((
            status,
            v["error"]["code"].as_str().unwrap_or("").to_string(),
        ));
    }
    Ok(initiator.finish(&body, pinned_origins).unwrap())
}

/// A request as the edge Worker sends it under a tunnel session: the envelope headers, the
/// session's ticket and a MAC under its key (`heady_shared::wire::SessionMac`).
pub fn session_signed(
    base: &str,
    path: &str,
    body: &[u8],
    subject: &str,
    tier: heady_shared::Tier,
    session: &heady_shared::tunnel::Session,
    nonce: &str,
) -> reqwest::RequestBuilder {
    use heady_shared::wire;
    let auth = wire::SessionMac::new(session.keys.mac_key, session.keys.id);
    let line = wire::RequestLine {
        method: "POST",
        path,
        query: "",
        body_sha256: wire::body_sha256(body),
    };
    let envelope = wire::Envelope {
        host: "headyapi.com".into(),
        subject: subject.into(),
        tier,
        clearance: heady_shared::Classification::Public,
        client_ip: "198.51.100.7".into(),
        timestamp: unix_now(),
        nonce: nonce.into(),
    };
    let mut req = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header(wire::header::SESSION, wire::hex_encode(&session.ticket))
        .body(body.to_vec());
    for (k, v) in wire::sign(&auth, &line, &envelope) {
        req = req.header(k, v);
    }
    req
}

/// A daemon started as a child process (`heady-origin serve`), killed on drop.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `base/ready` answers 200 (at most 60 s).
pub async fn wait_ready(base: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(r) = client().get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemon not ready at {base}");
}

/// One request, with an optional key and JSON body: (status, headers, body as JSON or text).
pub async fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = client().request(method.parse().unwrap(), url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, headers, v)
}

/// The `error.code` of an error body ("" when there is none).
pub fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// An OpenAI-compatible provider entry for a fake at `base_url`.
pub fn openai_provider(
    name: &str,
    base_url: &str,
) -> heady_origin::providers::config::ProviderConfig {
    heady_origin::providers::config::ProviderConfig {
        name: name.into(),
        kind: heady_origin::providers::config::ProviderKind::Openai,
        base_url: Some(base_url.to_string()),
        api_key: Some("sk-test".into()),
        account_id: None,
        model: None,
        groups: Vec::new(),
        weight: 1.0,
        priority: 0,
        timeout_ms: 5_000,
        anthropic_version: None,
        features: None,
    }
}

/// An HTTP answer read whole: status, headers, the text and its JSON (`Null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Answer {
    /// Sends `req` and reads the answer.
    pub async fn of(req: reqwest::RequestBuilder) -> Answer {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The daemon's `/metrics` text.
pub async fn metrics_text(s: &TestServer) -> String {
    owner_client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series (`name{labels}`) in a `/metrics` text; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
