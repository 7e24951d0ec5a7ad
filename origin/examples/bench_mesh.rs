//! The mesh listener against the plain public listener of the same daemon, in one run, over
//! loopback TCP:
//!
//! - full mutual-TLS 1.3 handshakes per second (a new connection each, client certificate
//!   checked), the client offering X25519MLKEM768 (negotiated) vs X25519 only;
//! - requests per second and p50/p99 on kept-alive connections: `GET /mesh/health` over the
//!   mesh vs `GET /health` over plain HTTP, with the ratio.
//!
//!   cargo run --release -p heady-origin --example bench_mesh [-- --handshakes N --requests N --conns N]

mod common;

use heady_origin::app::App;
use heady_origin::config::{Config, Overrides};
use heady_origin::mesh::ca;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn client_config(
    dir: &std::path::Path,
    provider: rustls::crypto::CryptoProvider,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(dir.join("certs/bench-client.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("certs/bench-client.key")).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

/// Handshakes per second, one after another, and the group negotiated.
async fn handshakes(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    n: usize,
) -> (f64, String) {
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let mut group = String::new();
    let t = Instant::now();
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        // The server checks the client's certificate after the client's Finished: a request
        // and its answer make the handshake complete on both sides.
        tls.write_all(b"GET /mesh/health HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        group = format!(
            "{:?}",
            tls.get_ref()
                .1
                .negotiated_key_exchange_group()
                .unwrap()
                .name()
        );
    }
    (n as f64 / t.elapsed().as_secs_f64(), group)
}

/// One kept-alive HTTP/1.1 connection sending `n` requests; the latency of each.
async fn keepalive<S>(stream: S, path: &str, n: usize) -> Vec<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut s = BufReader::new(stream);
    let req = format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n");
    let mut lat = Vec::with_capacity(n);
    let mut line = String::new();
    for _ in 0..n {
        let t = Instant::now();
        s.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            s.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
            {
                len = v.parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        lat.push(t.elapsed());
    }
    lat
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn load<F, Fut>(conns: usize, open: F) -> Run
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<Duration>> + Send + 'static,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..conns).map(|_| tokio::spawn(open())).collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    all.sort();
    Run {
        rps: all.len() as f64 / secs,
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

fn main() {
    let n_handshakes = common::arg("--handshakes", 1000);
    let n_requests = common::arg("--requests", 100_000);
    let conns = common::arg("--conns", 32);
    let dir = tempfile::tempdir().unwrap();
    ca::init(
        &dir.path().join("ca"),
        "bench-ca",
        Duration::from_secs(86_400),
    )
    .unwrap();
    for name in ["bench-origin", "bench-client"] {
        let issued = ca::issue(
            &dir.path().join("ca"),
            &ca::NodeSpec {
                name: name.into(),
                ips: vec!["127.0.0.1".parse().unwrap()],
                validity: Duration::from_secs(86_400),
                ..Default::default()
            },
        )
        .unwrap();
        ca::write_issued(&dir.path().join("certs"), &issued).unwrap();
    }
    let mut cfg = Config::load(None, &[], &Overrides::default()).unwrap();
    cfg.data_dir = dir.path().join("data");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.defense.enabled = false;
    cfg.log_format = heady_origin::config::LogFormat::Text;
    cfg.mesh.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.mesh.ca = Some(dir.path().join("ca/ca.pem"));
    cfg.mesh.cert = Some(dir.path().join("certs/bench-origin.pem"));
    cfg.mesh.key = Some(dir.path().join("certs/bench-origin.key"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = listener.local_addr().unwrap();
        let app = tokio::task::spawn_blocking(move || App::open(cfg))
            .await
            .unwrap()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(heady_origin::http::run(
            listener,
            app.clone(),
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        let mesh = loop {
            if let Some(a) = app.mesh_addr.get() {
                break *a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        println!("bench_mesh: {n_handshakes} handshakes each way, {n_requests} requests over {conns} kept-alive connections each way, loopback, 2 cores shared with the client");

        let hybrid = client_config(dir.path(), heady_pq_kx::provider());
        let classical = client_config(dir.path(), heady_pq_kx::classical_provider());
        // Warm up both, then measure them in turn twice, keeping the better of each.
        handshakes(mesh, hybrid.clone(), 50).await;
        handshakes(mesh, classical.clone(), 50).await;
        let (mut h_rate, mut c_rate) = (0f64, 0f64);
        let (mut h_group, mut c_group) = (String::new(), String::new());
        for _ in 0..2 {
            let (r, g) = handshakes(mesh, hybrid.clone(), n_handshakes / 2).await;
            h_rate = h_rate.max(r);
            h_group = g;
            let (r, g) = handshakes(mesh, classical.clone(), n_handshakes / 2).await;
            c_rate = c_rate.max(r);
            c_group = g;
        }
        println!("mTLS handshakes/s  {h_group}: {h_rate:.0}   {c_group}: {c_rate:.0}   ratio hybrid/classical: {:.2}", h_rate / c_rate);

        let per_conn = n_requests / conns;
        let connector = tokio_rustls::TlsConnector::from(hybrid.clone());
        let over_mesh = load(conns, || {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(mesh).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
                let tls = connector.connect(name, tcp).await.unwrap();
                keepalive(tls, "/mesh/health", per_conn).await
            }
        })
        .await;
        let over_plain = load(conns, || async move {
            let tcp = tokio::net::TcpStream::connect(plain).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            keepalive(tcp, "/health", per_conn).await
        })
        .await;
        for (what, r) in [("mesh (mTLS, /mesh/health)", &over_mesh), ("plain HTTP (/health)", &over_plain)] {
            println!(
                "{what:<28} {:>8.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us",
                r.rps,
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6
            );
        }
        println!("ratio mesh/plain req/s: {:.2}", over_mesh.rps / over_plain.rps);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}
