//! The `heady-origin` command line.

use crate::accounts::AccountChange;
use crate::app::App;
use crate::config::{heady_env, Config, LogFormat, Overrides};
use crate::defense::admin::{AdminOp, AdminReply, KeySpec};
use crate::http;
use clap::{Parser, Subcommand};
use heady_shared::{Classification, Tier};
use std::path::PathBuf;
use std::time::Duration;

pub mod discord;
pub mod memory;
pub mod tunnel;

#[derive(Debug, Parser)]
#[command(
    name = "heady-origin",
    version,
    about = "Heady origin daemon: conductor, vector memory, HTTP API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP daemon.
    Serve {
        /// TOML config file (HEADY_* environment variables and flags override it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Data directory (DuckDB file, HNSW index).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the effective configuration (after env and flags) and exit; exit 1 when invalid.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the configuration reference (markdown: every key, its variable, default and
    /// meaning), generated from the code.
    ConfigReference {
        /// Instead, replace the generated part of this file (e.g. docs/config.md).
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (what `/openapi.json` serves).
    Openapi,
    /// Cloudflare Tunnel config: render it from deploy/properties.toml, validate one, match a URL.
    #[command(subcommand)]
    Tunnel(tunnel::TunnelCommand),
    /// Accounts: create, list, show, set-tier, set-clearance, set-semantic-cache, disable,
    /// enable.
    Accounts {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// API keys: create (prints the key once), add, list, revoke; create-pq and register-pq
    /// for ML-DSA-65 keys that sign requests (Enterprise).
    Keys {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Sign a request with an ML-DSA-65 key (from `keys create-pq`): prints the
    /// Content-Digest, Signature-Input and Signature headers to send, one per line (for
    /// `curl -H @FILE`).
    SignRequest {
        /// The private key file `keys create-pq` wrote (PEM, PKCS#8 with the seed).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// GET, POST, ...
        #[arg(long, value_name = "M")]
        method: String,
        /// The URL as the client sends it (its host is the signed @authority).
        #[arg(long, value_name = "URL")]
        url: String,
        /// The request body, exactly as sent.
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
    },
    /// Bans imposed by the abuse rule: list, lift.
    Bans {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: BansCommand,
    },
    /// The mesh's CA and certificates: `mesh ca init`, `mesh issue`.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Vector memory: `memory reembed` (with the daemon stopped).
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// The Discord bot: `discord register-commands`.
    #[command(subcommand)]
    Discord(discord::DiscordCommand),
}

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// The mesh CA.
    #[command(subcommand)]
    Ca(MeshCaCommand),
    /// Make a node's (or an operator's) key and certificate, signed by the CA: writes
    /// NAME.pem and NAME.key (mode 0600) into --out; prints the serial number and expiry.
    Issue {
        /// The node's name: its certificate's CN (what `mesh.operators` lists) and a DNS name.
        #[arg(long)]
        name: String,
        /// The CA's directory (from `mesh ca init`).
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// Where to write NAME.pem and NAME.key.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// More DNS names peers reach this node by, comma-separated.
        #[arg(long, value_name = "A,B", value_delimiter = ',')]
        dns: Vec<String>,
        /// IP addresses peers reach this node at, comma-separated.
        #[arg(long, value_name = "IP,IP", value_delimiter = ',')]
        ip: Vec<std::net::IpAddr>,
        /// Validity in days (then issue a new one; the old one can go to mesh.revoked).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=825))]
        days: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum MeshCaCommand {
    /// Make the CA's key (ca.key, mode 0600) and certificate (ca.pem) in --dir; refuses to
    /// overwrite an existing CA.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA certificate's name (CN).
        #[arg(long, default_value = "heady-mesh-ca")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u64).range(1..=7300))]
        days: u64,
    },
}

/// Which daemon (or database) an operator command acts on.
#[derive(Debug, clap::Args)]
pub struct AdminTarget {
    /// The daemon's TOML config (finds data_dir, admin_socket, database_url and redis_url).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The daemon's data directory.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Instead: the mesh listener of the origin to run the command on (`https://host:port`),
    /// reached with an operator's mesh certificate (`--mesh-cert`, `--mesh-key`, `--mesh-ca`,
    /// or `[mesh]` of `--config`).
    #[arg(long, value_name = "URL", global = true)]
    remote: Option<String>,
    /// With --remote: the operator's certificate from the mesh CA.
    #[arg(long, value_name = "FILE", global = true)]
    mesh_cert: Option<PathBuf>,
    /// With --remote: its private key.
    #[arg(long, value_name = "FILE", global = true)]
    mesh_key: Option<PathBuf>,
    /// With --remote: the mesh CA's certificate.
    #[arg(long, value_name = "FILE", global = true)]
    mesh_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account.
    Create {
        /// Unique name (letters, digits, . _ @ -).
        #[arg(long, value_parser = parse_user)]
        name: String,
        /// free, pro or enterprise.
        #[arg(long, default_value = "free", value_parser = parse_tier)]
        tier: Tier,
        /// public, internal, proprietary or restricted.
        #[arg(long, default_value = "public", value_parser = parse_clearance)]
        clearance: Classification,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One account (by id or name) with its keys.
    Show {
        #[arg(value_name = "ACCOUNT")]
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Change an account's tier.
    SetTier {
        #[arg(value_name = "ACCOUNT")]
        account: String,
        #[arg(value_name = "TIER", value_parser = parse_tier)]
        tier: Tier,
    },
    /// Change an account's clearance.
    SetClearance {
        #[arg(value_name = "ACCOUNT")]
        account: String,
        #[arg(value_name = "CLEARANCE", value_parser = parse_clearance)]
        clearance: Classification,
    },
    /// Let an account's requests be answered from the semantic cache (on), or not (off, the
    /// default).
    SetSemanticCache {
        #[arg(value_name = "ACCOUNT")]
        account: String,
        #[arg(value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set, required = true)]
        on: bool,
    },
    /// Disable an account: its keys get 401 account_disabled.
    Disable {
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
}

/// Whose key, and what it may do.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The account (id or name) the key belongs to.
    #[arg(
        long,
        value_name = "ACCOUNT",
        conflicts_with = "user",
        required_unless_present = "user"
    )]
    account: Option<String>,
    /// Instead of --account: the account of this name, created with --tier and --clearance
    /// when there is none.
    #[arg(long, value_parser = parse_user)]
    user: Option<String>,
    /// free, pro or enterprise (with --user, for a new account).
    #[arg(long, default_value = "free", value_parser = parse_tier)]
    tier: Tier,
    /// public, internal, proprietary or restricted (with --user, for a new account).
    #[arg(long, default_value = "public", value_parser = parse_clearance)]
    clearance: Classification,
    /// Expiry: 30d, 12h, 90m, 3600s, or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    expires: Option<String>,
    /// The only models the key may use, comma-separated (the first is the default).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// A note for operators.
    #[arg(long)]
    label: Option<String>,
}

impl KeyArgs {
    fn spec(self) -> KeySpec {
        KeySpec {
            account: self.account,
            user: self.user,
            tier: self.tier,
            clearance: self.clearance,
            label: self.label,
            expires: self.expires,
            models: self.models,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Mint a key. The key is printed once on stdout; only its hash is stored.
    Create {
        #[command(flatten)]
        args: KeyArgs,
    },
    /// Store an existing key (made on another origin that keeps its own DuckDB). The secret is
    /// read from standard input, or from --key-file; never from the command line.
    Add {
        /// A file holding the key (hk_ + 64 hex digits).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        args: KeyArgs,
    },
    /// List keys (never the secrets).
    List {
        /// Only this account's (id or name).
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (from `keys list`); with Redis every origin refuses it at once,
    /// without, within defense.key_cache_secs.
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Make an ML-DSA-65 key pair for an Enterprise account: the private key goes to --out
    /// (mode 0600, PEM), the public key is registered; prints the key id (the `keyid`).
    CreatePq {
        /// The account (id or name).
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
        /// Where to write the private key (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A note for operators.
        #[arg(long)]
        label: Option<String>,
    },
    /// Register an ML-DSA-65 public key made elsewhere for an Enterprise account; prints the
    /// key id (the `keyid`).
    RegisterPq {
        /// The account (id or name).
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
        /// The 1,952-byte FIPS 204 public key encoding, raw or base64.
        #[arg(long, value_name = "FILE")]
        public_key_file: PathBuf,
        /// A note for operators.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BansCommand {
    /// Subjects banned now, with the seconds left.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Lift a ban (and forget the subject's offences), e.g. `bans lift ip:203.0.113.7`.
    Lift {
        #[arg(value_name = "SUBJECT")]
        subject: String,
    },
}

fn parse_user(s: &str) -> Result<String, String> {
    heady_shared::subject::UserName::new(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// The key for `keys add`: the first line of `file`, or of standard input.
fn read_secret(file: Option<&std::path::Path>) -> Result<String, String> {
    use std::io::Read;
    let text = match file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| format!("--key-file {}: {e}", f.display()))?
        }
        None => {
            let mut t = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut t)
                .map_err(|e| format!("reading the key from standard input: {e}"))?;
            t
        }
    };
    let key = text.lines().next().unwrap_or("").trim().to_string();
    if !crate::accounts::well_formed(&key) {
        return Err(format!(
            "{}: expected a key (hk_ followed by 64 lowercase hex digits)",
            file.map_or("standard input".to_string(), |f| f.display().to_string())
        ));
    }
    Ok(key)
}

/// A public key file (raw or base64), as base64 for the admin operation.
fn read_public_key(file: &std::path::Path) -> Result<String, String> {
    use base64::Engine as _;
    let data =
        std::fs::read(file).map_err(|e| format!("--public-key-file {}: {e}", file.display()))?;
    let key = heady_shared::http_sig::PublicKey::from_raw_or_base64(&data)
        .map_err(|e| format!("--public-key-file {}: {e}", file.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
}

/// `keys create-pq`: the private key is written first (never a registered key whose private
/// half was lost) and removed again when the registration is refused.
fn create_pq(
    target: AdminTarget,
    account: String,
    out: &std::path::Path,
    label: Option<String>,
) -> i32 {
    use base64::Engine as _;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = heady_shared::http_sig::SigningKey::from_seed(rand::random());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .and_then(|mut f| {
            f.write_all(key.to_pem().as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        eprintln!("heady-origin: --out {}: {e}", out.display());
        return 2;
    }
    let op = AdminOp::RegisterPqKey {
        account,
        public_key: base64::engine::general_purpose::STANDARD.encode(key.public_key().as_bytes()),
        label,
    };
    let code = admin(target, op, false);
    if code != 0 {
        let _ = std::fs::remove_file(out);
    } else {
        eprintln!("the private key is in {} (mode 0600)", out.display());
    }
    code
}

/// `sign-request`: the headers that sign one request with the key in `key_file`, now.
fn sign_request(
    key_file: &std::path::Path,
    method: &str,
    url: &str,
    body_file: Option<&std::path::Path>,
) -> Result<Vec<(&'static str, String)>, String> {
    let pem = std::fs::read_to_string(key_file)
        .map_err(|e| format!("--key-file {}: {e}", key_file.display()))?;
    let key = heady_shared::http_sig::SigningKey::from_pem(&pem)
        .map_err(|e| format!("--key-file {}: {e}", key_file.display()))?;
    let body = match body_file {
        Some(f) => std::fs::read(f).map_err(|e| format!("--body-file {}: {e}", f.display()))?,
        None => Vec::new(),
    };
    let method = method.trim();
    ::http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("--method {method:?} is not an HTTP method"))?;
    let parsed = url::Url::parse(url).map_err(|e| format!("--url {url:?}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("--url {url:?} has no host"))?;
    // url gives no port when it is the scheme's default, as RFC 9421 wants @authority.
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}").to_ascii_lowercase(),
        None => host.to_ascii_lowercase(),
    };
    let req = heady_shared::http_sig::Request {
        method,
        authority: &authority,
        path: parsed.path(),
        query: parsed.query(),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let names = |h: &'static str| match h {
        heady_shared::http_sig::header::CONTENT_DIGEST => "Content-Digest",
        heady_shared::http_sig::header::SIGNATURE_INPUT => "Signature-Input",
        _ => "Signature",
    };
    Ok(
        heady_shared::http_sig::sign_request(&key, &req, &body, created, &rand::random())
            .into_iter()
            .map(|(h, v)| (names(h), v))
            .collect(),
    )
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse::<Tier>().map_err(|e| e.to_string())
}

fn parse_clearance(s: &str) -> Result<Classification, String> {
    s.parse::<Classification>().map_err(|e| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HEADY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let cfg = match Config::load(
                config.as_deref(),
                &heady_env(),
                &Overrides { listen, data_dir },
            ) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("heady-origin: invalid configuration: {e}");
                    return 2;
                }
            };
            init_tracing(cfg.log_format == LogFormat::Json);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("heady-origin: could not start the runtime: {e}");
                    return 1;
                }
            };
            match rt.block_on(serve(cfg)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "heady-origin stopped");
                    eprintln!("heady-origin: {e:#}");
                    1
                }
            }
        }
        Command::Tunnel(cmd) => tunnel::run(cmd),
        Command::Accounts { target, command } => {
            let update = |account, change| AdminOp::UpdateAccount { account, change };
            let (op, json) = match command {
                AccountsCommand::Create {
                    name,
                    tier,
                    clearance,
                } => (
                    AdminOp::CreateAccount {
                        name,
                        tier,
                        clearance,
                    },
                    false,
                ),
                AccountsCommand::List { json } => (AdminOp::ListAccounts, json),
                AccountsCommand::Show { account, json } => (AdminOp::ShowAccount { account }, json),
                AccountsCommand::SetTier { account, tier } => (
                    update(
                        account,
                        AccountChange {
                            tier: Some(tier),
                            ..Default::default()
                        },
                    ),
                    false,
                ),
                AccountsCommand::SetClearance { account, clearance } => (
                    update(
                        account,
                        AccountChange {
                            clearance: Some(clearance),
                            ..Default::default()
                        },
                    ),
                    false,
                ),
                AccountsCommand::SetSemanticCache { account, on } => (
                    update(
                        account,
                        AccountChange {
                            semantic_cache: Some(on),
                            ..Default::default()
                        },
                    ),
                    false,
                ),
                AccountsCommand::Disable { account } => (
                    update(
                        account,
                        AccountChange {
                            status: Some(heady_shared::AccountStatus::Disabled),
                            ..Default::default()
                        },
                    ),
                    false,
                ),
                AccountsCommand::Enable { account } => (
                    update(
                        account,
                        AccountChange {
                            status: Some(heady_shared::AccountStatus::Active),
                            ..Default::default()
                        },
                    ),
                    false,
                ),
            };
            admin(target, op, json)
        }
        Command::Keys { target, command } => {
            let (op, json) = match command {
                KeysCommand::Create { args } => (AdminOp::CreateKey(args.spec()), false),
                KeysCommand::Add { key_file, args } => match read_secret(key_file.as_deref()) {
                    Ok(key) => (
                        AdminOp::AddKey {
                            key,
                            spec: args.spec(),
                        },
                        false,
                    ),
                    Err(e) => {
                        eprintln!("heady-origin: {e}");
                        return 2;
                    }
                },
                KeysCommand::List { account, json } => (AdminOp::ListKeys { account }, json),
                KeysCommand::Revoke { id } => (AdminOp::RevokeKey { id }, false),
                KeysCommand::CreatePq {
                    account,
                    out,
                    label,
                } => return create_pq(target, account, &out, label),
                KeysCommand::RegisterPq {
                    account,
                    public_key_file,
                    label,
                } => match read_public_key(&public_key_file) {
                    Ok(public_key) => (
                        AdminOp::RegisterPqKey {
                            account,
                            public_key,
                            label,
                        },
                        false,
                    ),
                    Err(e) => {
                        eprintln!("heady-origin: {e}");
                        return 2;
                    }
                },
            };
            admin(target, op, json)
        }
        Command::SignRequest {
            key_file,
            method,
            url,
            body_file,
        } => match sign_request(&key_file, &method, &url, body_file.as_deref()) {
            Ok(headers) => {
                for (name, value) in headers {
                    println!("{name}: {value}");
                }
                0
            }
            Err(e) => {
                eprintln!("heady-origin: {e}");
                2
            }
        },
        Command::Bans { target, command } => {
            let (op, json) = match command {
                BansCommand::List { json } => (AdminOp::ListBans, json),
                BansCommand::Lift { subject } => (AdminOp::LiftBan { subject }, false),
            };
            admin(target, op, json)
        }
        Command::Mesh(cmd) => mesh(cmd),
        Command::Memory(cmd) => memory::run(cmd),
        Command::Discord(cmd) => discord::run(cmd),
        Command::ConfigReference { write } => config_reference(write.as_deref()),
        Command::Openapi => {
            println!(
                "{}",
                String::from_utf8_lossy(http::openapi::document_bytes())
            );
            0
        }
        Command::CheckConfig { config } => {
            match Config::load(config.as_deref(), &heady_env(), &Overrides::default()) {
                Ok(c) => {
                    println!("{c:#?}");
                    println!("OK");
                    0
                }
                Err(e) => {
                    eprintln!("heady-origin: invalid configuration: {e}");
                    1
                }
            }
        }
    }
}

fn config_reference(write: Option<&std::path::Path>) -> i32 {
    let generated = crate::config::reference_markdown();
    let Some(path) = write else {
        print!("{generated}");
        return 0;
    };
    let result = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|doc| {
            crate::config::splice(&doc, &generated).ok_or_else(|| {
                format!(
                    "has no generated part (a line {} ... a line {})",
                    crate::config::DOC_BEGIN,
                    crate::config::DOC_END
                )
            })
        })
        .and_then(|doc| std::fs::write(path, doc).map_err(|e| e.to_string()));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("heady-origin: {}: {e}", path.display());
            1
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let addr = cfg.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen {addr}: {e}"))?;
    let app = tokio::task::spawn_blocking(move || App::open(cfg)).await??;
    http::run(
        listener,
        app,
        http::shutdown_signal(),
        Duration::from_secs(30),
    )
    .await
}

/// `mesh ca init` and `mesh issue`.
fn mesh(cmd: MeshCommand) -> i32 {
    use crate::mesh::ca;
    const DAY: u64 = 86_400;
    let result = match cmd {
        MeshCommand::Ca(MeshCaCommand::Init { dir, name, days }) => {
            ca::init(&dir, &name, Duration::from_secs(days * DAY)).map(|cert| {
                println!("mesh CA: {}", cert.display());
                println!(
                    "its key is {} (mode 0600): keep it off the origins; every node trusts {}",
                    dir.join(ca::CA_KEY).display(),
                    cert.display()
                );
            })
        }
        MeshCommand::Issue {
            name,
            ca_dir,
            out,
            dns,
            ip,
            days,
        } => ca::issue(
            &ca_dir,
            &ca::NodeSpec {
                name,
                dns,
                ips: ip,
                not_before: None,
                validity: Duration::from_secs(days * DAY),
            },
        )
        .and_then(|issued| {
            let (cert, key) = ca::write_issued(&out, &issued)?;
            let expires = chrono::DateTime::<chrono::Utc>::from(issued.not_after)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            println!("certificate: {}", cert.display());
            println!("key:         {} (mode 0600)", key.display());
            println!("serial:      {}", issued.serial);
            println!("expires:     {expires}");
            Ok(())
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("heady-origin: {e}");
            1
        }
    }
}

/// An operator command on another origin, through its mesh listener.
async fn remote_admin(
    target: &AdminTarget,
    cfg: &Config,
    url: &str,
    op: &AdminOp,
) -> anyhow::Result<AdminReply> {
    let mut mesh = cfg.mesh.clone();
    if let Some(c) = &target.mesh_cert {
        mesh.cert = Some(c.clone());
    }
    if let Some(k) = &target.mesh_key {
        mesh.key = Some(k.clone());
    }
    if let Some(ca) = &target.mesh_ca {
        mesh.ca = Some(ca.clone());
    }
    if mesh.cert.is_none() || mesh.key.is_none() || mesh.ca.is_none() {
        anyhow::bail!("--remote needs a mesh certificate: --mesh-cert, --mesh-key and --mesh-ca (or [mesh] cert, key and ca in --config)");
    }
    let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--remote {url:?}: {e}"))?;
    if parsed.scheme() != "https" || parsed.host().is_none() {
        anyhow::bail!("--remote {url:?}: must be https://host:port (a mesh listener)");
    }
    let tls = crate::mesh::MeshTls::load(&mesh)?;
    crate::mesh::MeshClient::new(&tls, Duration::from_secs(30))?
        .admin(url, op)
        .await
}

/// A runtime for a command that does a few calls and exits; `None` (said on stderr) when
/// one cannot be made.
pub(crate) fn current_thread() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("heady-origin: could not start the runtime: {e}"))
        .ok()
}

/// Runs an operator command: on another origin through the mesh with `--remote`; else through
/// the daemon's admin socket when it answers, else against the database (and Redis) directly.
fn admin(target: AdminTarget, op: AdminOp, json: bool) -> i32 {
    let cfg = match Config::load(
        target.config.as_deref(),
        &heady_env(),
        &Overrides {
            listen: None,
            data_dir: target.data_dir.clone(),
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heady-origin: invalid configuration: {e}");
            return 2;
        }
    };
    let Some(rt) = current_thread() else {
        return 1;
    };
    let reply = rt.block_on(async {
        if let Some(url) = &target.remote {
            return remote_admin(&target, &cfg, url, &op).await;
        }
        if let Some(sock) = cfg.admin_socket_path() {
            if let Some(reply) = crate::defense::admin::request(&sock, &op).await? {
                return Ok(reply);
            }
        }
        let defense = open_defense(&cfg).await?;
        Ok::<_, anyhow::Error>(crate::defense::admin::execute(&defense, op).await)
    });
    match reply {
        Ok(reply) => print_reply(reply, json),
        Err(e) => {
            eprintln!("heady-origin: {e:#}");
            1
        }
    }
}

/// The defense pieces of a stopped daemon: its account store (its DuckDB file, or the
/// PostgreSQL database) and its Redis.
async fn open_defense(cfg: &Config) -> anyhow::Result<std::sync::Arc<crate::defense::Defense>> {
    use crate::db::{Database, DbConfig, DbError};
    let db = match &cfg.database_url {
        Some(_) => None,
        None => Some(
            Database::open(
                &cfg.data_dir,
                &DbConfig::from(&cfg.memory),
                Default::default(),
            )
            .map_err(|e| match e {
                e @ DbError::Open { .. } => anyhow::anyhow!(
                    "{e} (a running heady-origin holds this file; reach it through its admin socket)"
                ),
                e => e.into(),
            })?,
        ),
    };
    let redis = match &cfg.redis_url {
        Some(url) => Some(std::sync::Arc::new(crate::redis::Redis::open_with_files(
            url.as_str(),
            &cfg.redis_tls,
            Duration::from_millis(cfg.defense.redis_timeout_ms),
        )?)),
        None => None,
    };
    let pg = cfg
        .database_url
        .as_ref()
        .map(|url| crate::pg::PgTarget::new(url, &cfg.database_tls))
        .transpose()?;
    let accounts = crate::accounts::AccountStore::connect(
        pg.as_ref(),
        db,
        Duration::from_secs(cfg.defense.key_cache_secs),
        redis.clone(),
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if cfg.mesh.enabled() && !cfg.mesh.peers.is_empty() {
        let tls = crate::mesh::MeshTls::load(&cfg.mesh)?;
        accounts.set_peers(std::sync::Arc::new(crate::mesh::Peers::new(
            crate::mesh::MeshClient::new(&tls, Duration::from_secs(2))?,
            cfg.mesh.peers.clone(),
        )));
    }
    Ok(std::sync::Arc::new(crate::defense::Defense::new(
        &cfg.defense,
        std::sync::Arc::new(accounts),
        redis,
        std::sync::Arc::new(crate::metrics::Metrics::default()),
        crate::lifecycle::Background::new(),
    )?))
}

fn print_reply(reply: AdminReply, json: bool) -> i32 {
    if json {
        return match serde_json::to_string_pretty(&reply) {
            Ok(s) => {
                println!("{s}");
                if matches!(reply, AdminReply::Error { .. }) {
                    1
                } else {
                    0
                }
            }
            Err(e) => {
                eprintln!("heady-origin: {e}");
                1
            }
        };
    }
    let when = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| secs.to_string())
    };
    let print_keys = |keys: &[crate::accounts::KeyRecord]| {
        println!(
            "{:<16}  {:<9}  {:<29}  {:<20}  {:<20}  {:<20}  {:<16}  LABEL",
            "ID", "KIND", "ACCOUNT", "CREATED", "EXPIRES", "REVOKED", "MODELS"
        );
        for k in keys {
            println!(
                "{:<16}  {:<9}  {:<29}  {:<20}  {:<20}  {:<20}  {:<16}  {}",
                k.id,
                k.kind.as_str(),
                k.account_id,
                when(k.created_at),
                k.expires_at.map(when).unwrap_or_else(|| "-".into()),
                k.revoked_at.map(when).unwrap_or_else(|| "-".into()),
                k.models
                    .as_ref()
                    .map(|m| m.join(","))
                    .unwrap_or_else(|| "*".into()),
                k.label.as_deref().unwrap_or("")
            );
        }
    };
    let print_accounts = |accounts: &[crate::accounts::Account]| {
        println!(
            "{:<29}  {:<24}  {:<10}  {:<11}  {:<8}  {:<14}  CREATED",
            "ID", "NAME", "TIER", "CLEARANCE", "STATUS", "SEMANTIC_CACHE"
        );
        for a in accounts {
            println!(
                "{:<29}  {:<24}  {:<10}  {:<11}  {:<8}  {:<14}  {}",
                a.id,
                a.name,
                a.tier.to_string(),
                a.clearance.to_string(),
                a.status.to_string(),
                if a.semantic_cache { "on" } else { "off" },
                when(a.created_at)
            );
        }
    };
    match reply {
        AdminReply::Created { key, account } => {
            println!("{}", key.key);
            eprintln!(
                "created key {} for account {} ({}, tier {}, clearance {}). The key above is shown once; only its hash is stored.",
                key.record.id, account.id, account.name, account.tier, account.clearance
            );
            0
        }
        AdminReply::Added(k) => {
            println!("added key {} for account {}", k.id, k.account_id);
            0
        }
        AdminReply::Keys(keys) => {
            print_keys(&keys);
            0
        }
        AdminReply::Revoked(k) => {
            println!("revoked {} (account {})", k.id, k.account_id);
            0
        }
        AdminReply::Registered(k) => {
            println!("{}", k.id);
            eprintln!(
                "registered ML-DSA-65 key {} for account {}: sign requests with keyid=\"{}\"",
                k.id, k.account_id, k.id
            );
            0
        }
        AdminReply::Account(a) => {
            print_accounts(std::slice::from_ref(&a));
            0
        }
        AdminReply::Accounts(accounts) => {
            print_accounts(&accounts);
            0
        }
        AdminReply::AccountKeys { account, keys } => {
            print_accounts(std::slice::from_ref(&account));
            println!();
            print_keys(&keys);
            0
        }
        AdminReply::Bans(bans) => {
            if bans.is_empty() {
                eprintln!("no bans");
            }
            for b in bans {
                println!("{}\t{}s left", b.subject, b.retry_after_secs);
            }
            0
        }
        AdminReply::Lifted {
            subject,
            was_banned,
        } => {
            if was_banned {
                println!("lifted the ban on {subject}");
            } else {
                println!("{subject} was not banned (offences forgotten)");
            }
            0
        }
        AdminReply::Error { message } => {
            eprintln!("heady-origin: {message}");
            1
        }
    }
}
