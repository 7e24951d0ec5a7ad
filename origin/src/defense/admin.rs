//! The operator socket: `heady-origin keys ...` and `bans ...` reach a running daemon through a
//! Unix socket (mode 0600, so file permissions decide who is an operator), because DuckDB lets
//! one process write its file and in-process bans live in the daemon. When no daemon answers,
//! the CLI runs the same operations itself ([`execute`] against a [`Defense`] it opens).
//!
//! Protocol: one JSON [`AdminOp`] per line in, one JSON [`AdminReply`] line out.

use super::keys::{CreatedKey, KeyRecord};
use super::limiter::BanEntry;
use super::Defense;
use heady_shared::{Classification, Tier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminOp {
    CreateKey {
        user: String,
        tier: Tier,
        clearance: Classification,
    },
    AddKey {
        key: String,
        user: String,
        tier: Tier,
        clearance: Classification,
    },
    ListKeys,
    RevokeKey {
        id: String,
    },
    ListBans,
    LiftBan {
        subject: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminReply {
    Created(CreatedKey),
    Added(KeyRecord),
    Keys(Vec<KeyRecord>),
    Revoked(KeyRecord),
    Bans(Vec<BanEntry>),
    Lifted { subject: String, was_banned: bool },
    Error { message: String },
}

fn now_secs() -> i64 {
    (super::limiter::now_ms() / 1000) as i64
}

/// Runs one operation. Key operations are blocking DuckDB work and run on the blocking pool.
pub async fn execute(defense: &Arc<Defense>, op: AdminOp) -> AdminReply {
    let blocking = |f: Box<dyn FnOnce(&Defense) -> AdminReply + Send>| {
        let d = defense.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&d))
                .await
                .unwrap_or_else(|e| AdminReply::Error {
                    message: format!("task failed: {e}"),
                })
        }
    };
    match op {
        AdminOp::CreateKey {
            user,
            tier,
            clearance,
        } => {
            blocking(Box::new(move |d| {
                match d.keys.create(&user, tier, clearance, now_secs()) {
                    Ok(k) => {
                        tracing::info!(id = %k.record.id, user = %k.record.user, tier = %tier, clearance = %clearance, "api key created");
                        AdminReply::Created(k)
                    }
                    Err(e) => AdminReply::Error {
                        message: e.to_string(),
                    },
                }
            }))
            .await
        }
        AdminOp::AddKey {
            key,
            user,
            tier,
            clearance,
        } => {
            blocking(Box::new(move |d| {
                match d.keys.add(&key, &user, tier, clearance, now_secs()) {
                    Ok(k) => {
                        tracing::info!(id = %k.record.id, user = %k.record.user, "api key added");
                        AdminReply::Added(k.record)
                    }
                    Err(e) => AdminReply::Error {
                        message: e.to_string(),
                    },
                }
            }))
            .await
        }
        AdminOp::ListKeys => {
            blocking(Box::new(|d| match d.keys.list() {
                Ok(k) => AdminReply::Keys(k),
                Err(e) => AdminReply::Error {
                    message: e.to_string(),
                },
            }))
            .await
        }
        AdminOp::RevokeKey { id } => {
            blocking(Box::new(move |d| match d.keys.revoke(&id, now_secs()) {
                Ok(Some(r)) => {
                    tracing::info!(id = %r.id, user = %r.user, "api key revoked");
                    AdminReply::Revoked(r)
                }
                Ok(None) => AdminReply::Error {
                    message: format!("no key with id {id:?} (see `heady-origin keys list`)"),
                },
                Err(e) => AdminReply::Error {
                    message: e.to_string(),
                },
            }))
            .await
        }
        AdminOp::ListBans => match defense.limiter.bans().await {
            Ok(b) => AdminReply::Bans(b),
            Err(e) => AdminReply::Error {
                message: format!("listing bans: {e}"),
            },
        },
        // The operator may give any spelling of the subject (a full IPv6 address): the ban is
        // on its normal form.
        AdminOp::LiftBan { subject } => match subject.parse::<heady_shared::Subject>() {
            Err(e) => AdminReply::Error {
                message: format!("subject {subject:?}: {e}"),
            },
            Ok(parsed) => lift(defense, parsed.to_string()).await,
        },
    }
}

async fn lift(defense: &Defense, subject: String) -> AdminReply {
    match defense.limiter.lift(&subject).await {
        Ok(was_banned) => {
            tracing::info!(%subject, was_banned, "ban lifted by an operator");
            AdminReply::Lifted {
                subject,
                was_banned,
            }
        }
        Err(e) => AdminReply::Error {
            message: format!("lifting the ban: {e}"),
        },
    }
}

/// Binds the socket (replacing a stale file, refusing when another daemon answers on it) and
/// serves it in `background` until shutdown, which also removes the file.
pub async fn serve(
    path: &Path,
    defense: Arc<Defense>,
    background: &crate::lifecycle::Background,
) -> anyhow::Result<()> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "admin socket {}: another heady-origin is serving it (same data_dir?)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("admin socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("admin socket {}: {e}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| anyhow::anyhow!("admin socket {}: {e}", path.display()))?;
    }
    let remove = SocketFile(path.to_path_buf());
    let connections = background.clone();
    background.spawn("admin socket", async move {
        let _remove = remove;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let d = defense.clone();
            connections.spawn("admin connection", async move {
                if let Err(e) = serve_one(stream, d).await {
                    tracing::debug!(error = %e, "admin connection failed");
                }
            });
        }
    });
    Ok(())
}

async fn serve_one(stream: UnixStream, defense: Arc<Defense>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let n = BufReader::new(r.take(MAX_LINE as u64))
        .read_line(&mut line)
        .await?;
    let reply = if n == 0 {
        return Ok(());
    } else {
        match serde_json::from_str::<AdminOp>(line.trim()) {
            Ok(op) => execute(&defense, op).await,
            Err(e) => AdminReply::Error {
                message: format!("bad admin request: {e}"),
            },
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

use tokio::io::AsyncReadExt as _;

/// Removes the socket file when the serving task ends.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends one operation to a running daemon. `Ok(None)`: nothing is listening there.
pub async fn request(path: &Path, op: &AdminOp) -> anyhow::Result<Option<AdminReply>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => anyhow::bail!("admin socket {}: {e}", path.display()),
    };
    let (r, mut w) = stream.into_split();
    let mut msg = serde_json::to_vec(op)?;
    msg.push(b'\n');
    w.write_all(&msg).await?;
    let mut line = String::new();
    BufReader::new(r.take(16 * 1024 * 1024))
        .read_line(&mut line)
        .await?;
    Ok(Some(serde_json::from_str(line.trim()).map_err(|e| {
        anyhow::anyhow!("admin socket {}: unreadable reply: {e}", path.display())
    })?))
}
