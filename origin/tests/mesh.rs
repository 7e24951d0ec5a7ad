//! The mesh against real processes and sockets: a CA and certificates made by the CLI
//! (`mesh ca init`, `mesh issue`), origins with mesh listeners, clients over real TLS.
//!
//! - Only certificates of the mesh CA get in: none, another CA's, an expired one and a revoked
//!   one are each refused at the handshake (and counted by outcome); X25519MLKEM768 is what a
//!   client offering it gets.
//! - `/mesh/admin` is for `mesh.operators` only; the CLI's `--remote` runs commands through it.
//! - A key revoked on one origin is refused at once by a peer told through the mesh (no Redis,
//!   a 300 s key cache).
//! - The public listener serves HTTPS with `[tls]`.

mod common;

use common::*;
use heady_origin::config::Config;
use heady_origin::mesh::ca;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_heady-origin")
}

/// Runs the CLI; (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .env_remove("HEADY_DATABASE_URL")
        .env_remove("HEADY_REDIS_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A mesh CA and the certificates the tests use, made by the CLI; plus another CA's and an
/// expired one, made with the library.
struct Pki {
    dir: tempfile::TempDir,
    revoked_serial: String,
    origin_a_serial: String,
}

impl Pki {
    fn make() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
        let (code, out, err) = cli(&["mesh", "ca", "init", "--dir", &p("ca")]);
        assert_eq!(code, 0, "{out}{err}");
        let mut serials = std::collections::HashMap::new();
        for name in ["origin-a", "origin-b", "ops", "stranger", "revoked-node"] {
            let (code, out, err) = cli(&[
                "mesh",
                "issue",
                "--name",
                name,
                "--ca-dir",
                &p("ca"),
                "--out",
                &p("certs"),
                "--ip",
                "127.0.0.1",
                "--days",
                "30",
            ]);
            assert_eq!(code, 0, "{out}{err}");
            let serial = out
                .lines()
                .find_map(|l| l.strip_prefix("serial:"))
                .unwrap()
                .trim()
                .to_string();
            serials.insert(name, serial);
        }
        // A second issue of a name refuses to overwrite its files.
        let (code, _, err) = cli(&[
            "mesh",
            "issue",
            "--name",
            "ops",
            "--ca-dir",
            &p("ca"),
            "--out",
            &p("certs"),
        ]);
        assert_ne!(code, 0);
        assert!(err.contains("exists"), "{err}");
        // Another CA, and a certificate of ours that expired yesterday.
        ca::init(
            &dir.path().join("other-ca"),
            "other-ca",
            Duration::from_secs(86_400),
        )
        .unwrap();
        let intruder = ca::issue(
            &dir.path().join("other-ca"),
            &ca::NodeSpec {
                name: "ops".into(),
                validity: Duration::from_secs(86_400),
                ..Default::default()
            },
        )
        .unwrap();
        ca::write_issued(&dir.path().join("other"), &intruder).unwrap();
        let expired = ca::issue(
            &dir.path().join("ca"),
            &ca::NodeSpec {
                name: "expired-node".into(),
                not_before: Some(SystemTime::now() - Duration::from_secs(3 * 86_400)),
                validity: Duration::from_secs(2 * 86_400),
                ..Default::default()
            },
        )
        .unwrap();
        ca::write_issued(&dir.path().join("certs"), &expired).unwrap();
        Pki {
            dir,
            revoked_serial: serials["revoked-node"].clone(),
            origin_a_serial: serials["origin-a"].clone(),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca").join(ca::CA_CERT)
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join("certs").join(format!("{name}.pem"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join("certs").join(format!("{name}.key"))
    }

    /// `[mesh]` for node `name`, listening on a free port.
    fn node(&self, c: &mut Config, name: &str) {
        self.node_config(&mut c.mesh, name);
    }

    fn node_config(&self, m: &mut heady_origin::mesh::MeshConfig, name: &str) {
        m.listen = Some("127.0.0.1:0".parse().unwrap());
        m.ca = Some(self.ca());
        m.cert = Some(self.cert(name));
        m.key = Some(self.key(name));
        m.operators = vec!["ops".into()];
        m.revoked = vec![self.revoked_serial.clone()];
    }
}

/// The mesh listener's address, once `App::start` has bound it.
async fn mesh_addr(s: &TestServer) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = s.state.mesh_addr.get() {
            return *a;
        }
        assert!(
            Instant::now() < deadline,
            "the mesh listener never listened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn mesh_url(s: &TestServer) -> String {
    format!("https://{}", mesh_addr(s).await)
}

/// A TLS 1.3 client trusting `ca`, presenting `cert`/`key` when given, with our provider.
fn tls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(heady_origin::tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// GET `path` on the mesh listener over one TLS connection: the response text (or the error)
/// and the key exchange group negotiated.
async fn mesh_get(
    s: &TestServer,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
) -> (Result<String, String>, Option<String>, Option<String>) {
    let addr = mesh_addr(s).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let mut tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(e) => return (Err(e.to_string()), None, None),
    };
    let group = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()));
    let kind = tls.get_ref().1.handshake_kind().map(|k| format!("{k:?}"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(req.as_bytes()).await {
        return (Err(e.to_string()), group, kind);
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    match read {
        Ok(Ok(_)) if !buf.is_empty() => {
            (Ok(String::from_utf8_lossy(&buf).into_owned()), group, kind)
        }
        Ok(Ok(_)) => (Err("closed without an answer".into()), group, kind),
        Ok(Err(e)) => (Err(e.to_string()), group, kind),
        Err(_) => (Err("no answer within 5 s".into()), group, kind),
    }
}

async fn handshakes(s: &TestServer, outcome: &str) -> f64 {
    let line = format!("heady_mesh_handshakes_total{{outcome=\"{outcome}\"}}");
    s.state
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(&line))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits (up to 3 s) for the server to count a handshake outcome: it counts after the client
/// has seen the alert.
async fn wait_counted(s: &TestServer, outcome: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while handshakes(s, outcome).await < at_least {
        assert!(
            Instant::now() < deadline,
            "no {outcome} handshake counted: {}",
            s.state.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_listener_admits_only_certificates_of_its_ca() {
    let pki = Pki::make();
    let a = TestServer::start(|c| pki.node(c, "origin-a")).await;
    let ok = tls_client(
        &pki.ca(),
        Some((&pki.cert("stranger"), &pki.key("stranger"))),
    );
    let (resp, group, kind) = mesh_get(&a, &ok, "/mesh/health").await;
    assert_eq!(kind.as_deref(), Some("Full"));
    let resp = resp.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""caller":"stranger""#), "{resp}");
    assert!(resp.contains(r#""node":"origin-a""#), "{resp}");
    assert_eq!(group.as_deref(), Some("X25519MLKEM768"));
    wait_counted(&a, "accepted", 1.0).await;

    // Sessions are not resumed: a second connection of the same client (whose config would
    // resume if offered a ticket) is a full handshake, its certificate checked again.
    let (resp, _, kind) = mesh_get(&a, &ok, "/mesh/nothing").await;
    assert!(resp.unwrap().starts_with("HTTP/1.1 404"));
    assert_eq!(kind.as_deref(), Some("Full"));
    wait_counted(&a, "accepted", 2.0).await;

    // A client that has revoked the origin's own certificate refuses the origin.
    let mut node = heady_origin::mesh::MeshConfig::default();
    pki.node_config(&mut node, "stranger");
    node.revoked = vec![pki.origin_a_serial.clone()];
    let distrusting = heady_origin::mesh::MeshTls::load(&node).unwrap();
    let connector = tokio_rustls::TlsConnector::from(distrusting.client.clone());
    let (resp, _, _) = mesh_get(&a, &connector, "/mesh/health").await;
    let err = resp.unwrap_err();
    assert!(err.to_lowercase().contains("revoked"), "{err}");

    type Identity = Option<(PathBuf, PathBuf)>;
    let cases: [(&str, Identity, &str); 4] = [
        ("no certificate", None, "no_certificate"),
        (
            "another CA's",
            Some((
                pki.dir.path().join("other/ops.pem"),
                pki.dir.path().join("other/ops.key"),
            )),
            "unknown_issuer",
        ),
        (
            "expired",
            Some((pki.cert("expired-node"), pki.key("expired-node"))),
            "expired",
        ),
        (
            "revoked",
            Some((pki.cert("revoked-node"), pki.key("revoked-node"))),
            "revoked",
        ),
    ];
    for (what, identity, outcome) in cases {
        let client = tls_client(
            &pki.ca(),
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        );
        let (resp, _, _) = mesh_get(&a, &client, "/mesh/health").await;
        assert!(resp.is_err(), "{what}: {resp:?}");
        wait_counted(&a, outcome, 1.0).await;
    }
    // A server certificate the client does not trust is refused by the client, too.
    let other_ca = pki.dir.path().join("other-ca").join(ca::CA_CERT);
    let distrustful = tls_client(&other_ca, Some((&pki.cert("ops"), &pki.key("ops"))));
    let (resp, _, _) = mesh_get(&a, &distrustful, "/mesh/health").await;
    assert!(resp.is_err(), "{resp:?}");
    a.stop().await;
}

#[test]
fn a_node_certificate_the_mesh_would_refuse_stops_the_start() {
    let pki = Pki::make();
    for (cert, key, why) in [
        (
            pki.dir.path().join("other/ops.pem"),
            pki.dir.path().join("other/ops.key"),
            "not valid under mesh.ca",
        ),
        (
            pki.cert("expired-node"),
            pki.key("expired-node"),
            "not valid under mesh.ca",
        ),
        (
            pki.cert("revoked-node"),
            pki.key("revoked-node"),
            "mesh.revoked lists",
        ),
        (pki.cert("ops"), pki.key("stranger"), "mesh.cert / mesh.key"),
    ] {
        let mut m = heady_origin::mesh::MeshConfig::default();
        pki.node_config(&mut m, "origin-a");
        m.cert = Some(cert);
        m.key = Some(key);
        let e = heady_origin::mesh::MeshTls::load(&m)
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{why}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_act_on_a_remote_origin_and_peers_drop_a_revoked_key_at_once() {
    let pki = Pki::make();
    let pg = FreshPg::create().await;
    let a = TestServer::start(|c| {
        pki.node(c, "origin-a");
        c.database_url = Some(pg.database_url());
        c.defense.enabled = true;
        c.defense.key_cache_secs = 300;
    })
    .await;
    let a_mesh = mesh_url(&a).await;
    let b = TestServer::start(|c| {
        pki.node(c, "origin-b");
        c.database_url = Some(pg.database_url());
        c.defense.enabled = true;
        c.defense.key_cache_secs = 300;
        c.mesh.peers = vec![a_mesh.clone()];
    })
    .await;
    let b_mesh = mesh_url(&b).await;
    let ca_path = pki.ca().to_string_lossy().into_owned();
    let as_node = |name: &str| {
        vec![
            "--mesh-cert".to_string(),
            pki.cert(name).to_string_lossy().into_owned(),
            "--mesh-key".to_string(),
            pki.key(name).to_string_lossy().into_owned(),
            "--mesh-ca".to_string(),
            ca_path.clone(),
        ]
    };
    let remote = |url: &str, who: &str, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--remote".to_string(), url.to_string()]);
        all.extend(as_node(who));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        cli(&refs)
    };
    let (code, out, err) = remote(
        &a_mesh,
        "ops",
        &["accounts", "create", "--name", "mesh-user", "--tier", "pro"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = remote(
        &a_mesh,
        "ops",
        &["keys", "create", "--account", "mesh-user"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let key = out.lines().next().unwrap().trim().to_string();
    let key_id = err
        .split_whitespace()
        .skip_while(|w| *w != "key")
        .nth(1)
        .unwrap()
        .to_string();
    // A node that is not an operator is refused, and says so.
    let (code, out, err) = remote(&a_mesh, "stranger", &["accounts", "list"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("403") && err.contains("mesh.operators"),
        "{err}"
    );
    // A client of another CA does not get that far.
    let (code, _, err) = cli(&[
        "accounts",
        "list",
        "--remote",
        &a_mesh,
        "--mesh-cert",
        &pki.dir.path().join("other/ops.pem").to_string_lossy(),
        "--mesh-key",
        &pki.dir.path().join("other/ops.key").to_string_lossy(),
        "--mesh-ca",
        &ca_path,
    ]);
    assert_ne!(code, 0);
    assert!(!err.is_empty());

    // The key works on A, which now holds it in its cache for 300 s.
    let account = |s: &TestServer| {
        let url = s.url("/api/account");
        let key = key.clone();
        async move {
            client()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(account(&a).await, 200);
    assert_eq!(account(&b).await, 200);
    // Revoked through B: B tells A through the mesh before it answers.
    let (code, out, err) = remote(&b_mesh, "ops", &["keys", "revoke", &key_id]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(account(&a).await, 401);
    assert_eq!(account(&b).await, 401);
    let served = a.state.metrics.encode().lines().any(|l| {
        l.starts_with("heady_mesh_requests_total{route=\"/mesh/invalidate\",status=\"200\"}")
    });
    assert!(served, "A served an invalidation from B");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_https_with_tls_set() {
    let pki = Pki::make();
    let a = TestServer::start(|c| {
        c.tls.cert = Some(pki.cert("origin-a"));
        c.tls.key = Some(pki.key("origin-a"));
    })
    .await;
    let https = a.base.replace("http://", "https://");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on a TLS listener gets no answer.
    assert!(reqwest::Client::new()
        .get(format!("{}/health", a.base))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
        .eq(&false));
    a.stop().await;
}
