//! PostgreSQL over TLS: a throw-away cluster of this machine's PostgreSQL binaries (`initdb`,
//! `postgres`) in a temp dir, `ssl = on` with certificates made here and only `hostssl ...
//! cert` lines for TCP in pg_hba.conf, so a client certificate from the test CA is the only
//! way in. The origin's pool connects with `sslmode=verify-full`; a wrong CA, a wrong host
//! name, a missing or foreign client certificate are refused.

mod common;

use common::certs::{write, Ca};
use common::TestServer;
use heady_origin::config::{DatabaseUrl, TlsFiles};
use heady_origin::pg::PgTarget;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The newest installed PostgreSQL's program `name`.
fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    found.sort_by_key(|p| {
        p.iter()
            .nth(3)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .or_else(|| {
            // Elsewhere (not Debian's layout): on PATH.
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let p = String::from_utf8(out.stdout).ok()?;
            (!p.trim().is_empty()).then(|| PathBuf::from(p.trim()))
        })
        .unwrap_or_else(|| panic!("PostgreSQL's server programs are installed ({name} not found)"))
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user.
fn run_as() -> Option<(u32, u32)> {
    (id(&["-u"]) == 0).then(|| (id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

struct Files {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
    other_cert: PathBuf,
    other_key: PathBuf,
}

struct PgCluster {
    child: Child,
    port: u16,
    /// Holds the data directory, the socket and the certificates.
    _dir: tempfile::TempDir,
    files: Files,
}

impl PgCluster {
    fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let owner = run_as();
        let ca = Ca::new("heady test PostgreSQL CA");
        let server = ca.server(&["localhost", "127.0.0.1"]);
        // `cert` authentication: the certificate's CN is the user.
        let client = ca.client("postgres");
        let other = Ca::new("another CA");
        let stranger = other.client("postgres");
        let server_cert = write(d, "server.pem", &server.cert);
        let server_key = write(d, "server.key", &server.key);
        let files = Files {
            ca: write(d, "ca.pem", &ca.pem),
            client_cert: write(d, "client.pem", &client.cert),
            client_key: write(d, "client.key", &client.key),
            other_ca: write(d, "other-ca.pem", &other.pem),
            other_cert: write(d, "other-client.pem", &stranger.cert),
            other_key: write(d, "other-client.key", &stranger.key),
        };
        let sock = d.join("sock");
        std::fs::create_dir(&sock).unwrap();
        if let Some((uid, gid)) = owner {
            for p in [d, &sock, &server_cert, &server_key, &files.ca] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        let data = d.join("data");
        let out = as_owner(&mut Command::new(pg_bin("initdb")), owner)
            .args([
                "-D",
                s(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ])
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Over TCP only TLS with a client certificate the CA signed.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n",
        )
        .unwrap();
        let port = common::free_port();
        let log = std::fs::File::create(d.join("postgres.log")).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(d.join("postgres.log"), Some(uid), Some(gid)).unwrap();
        }
        let setting = |k: &str, v: &Path| format!("{k}={}", v.display());
        let mut child = as_owner(&mut Command::new(pg_bin("postgres")), owner)
            .args(["-D", s(&data), "-p", &port.to_string(), "-k", s(&sock)])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "ssl=on",
                "-c",
                "fsync=off",
            ])
            .args(["-c", &setting("ssl_cert_file", &server_cert)])
            .args(["-c", &setting("ssl_key_file", &server_key)])
            .args(["-c", &setting("ssl_ca_file", &files.ca)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        for _ in 0..300 {
            let up = Command::new(pg_bin("pg_isready"))
                .args(["-q", "-h", s(&sock), "-p", &port.to_string()])
                .status()
                .unwrap()
                .success();
            if up {
                return PgCluster {
                    child,
                    port,
                    _dir: dir,
                    files,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(d.join("postgres.log")).unwrap_or_default();
                panic!("postgres exited ({status}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("postgres did not start on port {port}");
    }

    /// `postgres://postgres@host:port/postgres` with `query` appended.
    fn url(&self, host: &str, query: &str) -> DatabaseUrl {
        DatabaseUrl::parse(&format!(
            "postgres://postgres@{host}:{}/postgres?{query}",
            self.port
        ))
        .unwrap()
    }

    fn tls(&self, ca: &Path, cert: Option<(&Path, &Path)>) -> TlsFiles {
        TlsFiles {
            ca: Some(ca.to_path_buf()),
            cert: cert.map(|(c, _)| c.to_path_buf()),
            key: cert.map(|(_, k)| k.to_path_buf()),
        }
    }

    fn good(&self) -> TlsFiles {
        let f = &self.files;
        self.tls(&f.ca, Some((&f.client_cert, &f.client_key)))
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (its children go with it).
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection from a pool built as the origin builds it; the error as text.
async fn connect(url: &DatabaseUrl, tls: &TlsFiles) -> Result<deadpool_postgres::Object, String> {
    let target = PgTarget::new(url, tls).map_err(|e| e.to_string())?;
    let pool = target.pool(1, Duration::from_secs(5))?;
    pool.get()
        .await
        .map_err(|e| heady_origin::pg::with_causes(&e))
}

/// (TLS in use, the client certificate's DN as the server saw it).
async fn session(c: &deadpool_postgres::Object) -> (bool, String) {
    let row = c
        .query_one(
            "SELECT ssl, coalesce(client_dn, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_with_a_client_certificate_connects_and_the_wrong_ones_are_refused() {
    let pg = PgCluster::start();
    let f = &pg.files;

    for host in ["localhost", "127.0.0.1"] {
        let c = connect(&pg.url(host, "sslmode=verify-full"), &pg.good())
            .await
            .unwrap();
        let (ssl, dn) = session(&c).await;
        assert!(ssl, "{host}: not TLS");
        assert!(dn.contains("CN=postgres"), "{host}: {dn}");
    }
    // The same through the URL's libpq parameters instead of [database_tls].
    let q = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        s(&f.ca),
        s(&f.client_cert),
        s(&f.client_key)
    );
    let c = connect(&pg.url("localhost", &q), &TlsFiles::default())
        .await
        .unwrap();
    assert!(session(&c).await.0);

    // A server certificate the CA did not sign.
    let e = connect(
        &pg.url("localhost", "sslmode=verify-full"),
        &pg.tls(&f.other_ca, Some((&f.client_cert, &f.client_key))),
    )
    .await
    .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A host name the certificate does not carry (the address is right): refused under
    // verify-full, accepted under verify-ca, which checks only the chain.
    let e = connect(
        &pg.url("db.invalid", "sslmode=verify-full&hostaddr=127.0.0.1"),
        &pg.good(),
    )
    .await
    .unwrap_err();
    assert!(e.contains("not valid for name \"db.invalid\""), "{e}");
    let c = connect(
        &pg.url("db.invalid", "sslmode=verify-ca&hostaddr=127.0.0.1"),
        &pg.good(),
    )
    .await
    .unwrap();
    assert!(session(&c).await.0);
    // No client certificate: refused (the server ends the handshake).
    assert!(connect(
        &pg.url("localhost", "sslmode=verify-full"),
        &pg.tls(&f.ca, None),
    )
    .await
    .is_err());
    // A client certificate from another CA: refused in the handshake.
    assert!(connect(
        &pg.url("localhost", "sslmode=verify-full"),
        &pg.tls(&f.ca, Some((&f.other_cert, &f.other_key))),
    )
    .await
    .is_err());
    // Plain TCP has no pg_hba.conf line.
    let e = connect(
        &pg.url("localhost", "sslmode=disable"),
        &TlsFiles::default(),
    )
    .await
    .unwrap_err();
    assert!(e.contains("no encryption"), "{e}");
    drop(pg);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_origin_keeps_accounts_in_postgres_over_verify_full() {
    let pg = PgCluster::start();
    let url = pg.url("localhost", "sslmode=verify-full");
    let tls = pg.good();
    // TestServer::start adds an account and a key: migrations and writes over TLS.
    let s = TestServer::start(move |c| {
        c.database_url = Some(url);
        c.database_tls = tls;
    })
    .await;
    let (st, _, body) = common::call("GET", &s.url("/ready"), None, None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["checks"]["accounts"], "postgres", "{body}");
    common::new_key(
        &s.state,
        "over-tls",
        heady_shared::Tier::Pro,
        heady_shared::Classification::Public,
    )
    .await;
    // The rows are in the throw-away cluster.
    let c = connect(&pg.url("127.0.0.1", "sslmode=verify-full"), &pg.good())
        .await
        .unwrap();
    let row = c
        .query_one(
            "SELECT count(*) FROM accounts WHERE name IN ('owner', 'over-tls')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    s.stop().await;
}
