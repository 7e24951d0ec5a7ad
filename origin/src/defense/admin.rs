//! The operator socket: `heady-origin accounts ...`, `keys ...` and `bans ...` reach a running
//! daemon through a Unix socket (mode 0600, so file permissions decide who is an operator),
//! because DuckDB lets one process write its file and in-process bans live in the daemon. When no daemon answers,
//! the CLI runs the same operations itself ([`execute`] against a [`Defense`] it opens).
//!
//! Protocol: one JSON [`AdminOp`] per line in, one JSON [`AdminReply`] line out.

use super::limiter::BanEntry;
use super::Defense;
use crate::accounts::{
    parse_expiry, Account, AccountChange, AccountError, CreatedKey, KeyOptions, KeyRecord,
};
use heady_shared::{AccountId, Classification, Tier};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const MAX_LINE: usize = 64 * 1024;

/// What a new key gets: its account (by id or name) or, with `user`, the account of that name
/// (made with `tier` and `clearance` when missing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub tier: Tier,
    pub clearance: Classification,
    #[serde(default)]
    pub label: Option<String>,
    /// `30d`, `12h`, `90m`, `3600s` or an RFC 3339 time.
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminOp {
    CreateAccount {
        name: String,
        tier: Tier,
        clearance: Classification,
    },
    ListAccounts,
    /// `account`: an id or a name.
    ShowAccount {
        account: String,
    },
    UpdateAccount {
        account: String,
        change: AccountChange,
    },
    CreateKey(KeySpec),
    AddKey {
        key: String,
        spec: KeySpec,
    },
    ListKeys {
        #[serde(default)]
        account: Option<String>,
    },
    RevokeKey {
        id: String,
    },
    /// An ML-DSA-65 public key (base64 of the FIPS 204 encoding) for an Enterprise account.
    RegisterPqKey {
        account: String,
        public_key: String,
        #[serde(default)]
        label: Option<String>,
    },
    ListBans,
    LiftBan {
        subject: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminReply {
    Account(Account),
    Accounts(Vec<Account>),
    AccountKeys {
        account: Account,
        keys: Vec<KeyRecord>,
    },
    Created {
        key: CreatedKey,
        account: Account,
    },
    Added(KeyRecord),
    Keys(Vec<KeyRecord>),
    Revoked(KeyRecord),
    Registered(KeyRecord),
    Bans(Vec<BanEntry>),
    Lifted {
        subject: String,
        was_banned: bool,
    },
    Error {
        message: String,
    },
}

fn now_secs() -> i64 {
    (super::limiter::now_ms() / 1000) as i64
}

impl From<AccountError> for AdminReply {
    fn from(e: AccountError) -> Self {
        AdminReply::Error {
            message: e.to_string(),
        }
    }
}

/// The account `text` names: an `acct_...` id, else a name.
pub async fn resolve(defense: &Defense, text: &str) -> Result<Account, AccountError> {
    let found = match AccountId::parse(text) {
        Ok(id) => defense.accounts.account(&id).await?,
        Err(_) => defense.accounts.account_by_name(text).await?,
    };
    found.ok_or_else(|| {
        AccountError::NotFound(format!(
            "no account {:?} (see `heady-origin accounts list`)",
            text.chars().take(64).collect::<String>()
        ))
    })
}

async fn key_target(
    defense: &Defense,
    spec: &KeySpec,
) -> Result<(Account, KeyOptions), AccountError> {
    let now = now_secs();
    let account = match (&spec.account, &spec.user) {
        (Some(a), None) => resolve(defense, a).await?,
        (None, Some(u)) => {
            let (a, created) = defense
                .accounts
                .ensure_account(u, spec.tier, spec.clearance, now)
                .await?;
            if created {
                tracing::info!(account = %a.id, name = %a.name, tier = %a.tier, clearance = %a.clearance, "account created");
            }
            a
        }
        _ => {
            return Err(AccountError::invalid(
                "account",
                "give either an account (--account) or a user name (--user)",
            ))
        }
    };
    let opts = KeyOptions {
        label: spec.label.clone(),
        expires_at: spec
            .expires
            .as_deref()
            .map(|e| parse_expiry(e, now))
            .transpose()?,
        models: spec.models.clone(),
    };
    Ok((account, opts))
}

async fn run(defense: &Arc<Defense>, op: AdminOp) -> Result<AdminReply, AccountError> {
    let store = &defense.accounts;
    Ok(match op {
        AdminOp::CreateAccount {
            name,
            tier,
            clearance,
        } => {
            let a = store
                .create_account(&name, tier, clearance, now_secs())
                .await?;
            tracing::info!(account = %a.id, name = %a.name, tier = %tier, clearance = %clearance, "account created");
            AdminReply::Account(a)
        }
        AdminOp::ListAccounts => AdminReply::Accounts(store.accounts().await?),
        AdminOp::ShowAccount { account } => {
            let account = resolve(defense, &account).await?;
            let keys = store.keys(Some(&account.id)).await?;
            AdminReply::AccountKeys { account, keys }
        }
        AdminOp::UpdateAccount { account, change } => {
            let id = resolve(defense, &account).await?.id;
            let a = store.update_account(&id, &change).await?;
            tracing::info!(account = %a.id, tier = %a.tier, clearance = %a.clearance, status = %a.status, "account changed");
            AdminReply::Account(a)
        }
        AdminOp::CreateKey(spec) => {
            let (account, opts) = key_target(defense, &spec).await?;
            let key = store.create_key(&account.id, opts, now_secs()).await?;
            tracing::info!(id = %key.record.id, account = %account.id, "api key created");
            AdminReply::Created { key, account }
        }
        AdminOp::AddKey { key, spec } => {
            let (account, opts) = key_target(defense, &spec).await?;
            let k = store.add_key(&key, &account.id, opts, now_secs()).await?;
            tracing::info!(id = %k.record.id, account = %account.id, "api key added");
            AdminReply::Added(k.record)
        }
        AdminOp::ListKeys { account } => {
            let id = match account {
                Some(a) => Some(resolve(defense, &a).await?.id),
                None => None,
            };
            AdminReply::Keys(store.keys(id.as_ref()).await?)
        }
        AdminOp::RevokeKey { id } => {
            let r = store
                .revoke_key(&id, now_secs())
                .await
                .map_err(|e| match e {
                    AccountError::NotFound(_) => AccountError::NotFound(format!(
                        "no key with id {id:?} (see `heady-origin keys list`)"
                    )),
                    e => e,
                })?;
            tracing::info!(id = %r.id, account = %r.account_id, "api key revoked");
            AdminReply::Revoked(r)
        }
        AdminOp::RegisterPqKey {
            account,
            public_key,
            label,
        } => {
            let account = resolve(defense, &account).await?;
            let public =
                heady_shared::http_sig::PublicKey::from_raw_or_base64(public_key.as_bytes())
                    .map_err(|e| AccountError::invalid("public_key", e))?;
            let k = store
                .register_pq_key(&account.id, &public, label, now_secs())
                .await?;
            tracing::info!(id = %k.id, account = %account.id, "ML-DSA-65 key registered");
            AdminReply::Registered(k)
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
    })
}

/// Runs one operation.
pub async fn execute(defense: &Arc<Defense>, op: AdminOp) -> AdminReply {
    run(defense, op).await.unwrap_or_else(AdminReply::from)
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
