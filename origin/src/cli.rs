//! The `heady-origin` command line.

use crate::config::{Config, Overrides};
use crate::server;
use crate::state::AppState;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

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
        listen: Option<String>,
        /// Data directory (DuckDB file, HNSW index).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the effective configuration (after env and flags) and exit; exit 1 when invalid.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Cloudflare Tunnel config: render it from deploy/properties.toml, validate one, match a URL.
    #[command(subcommand)]
    Tunnel(crate::tunnel_config::TunnelCommand),
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

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let cfg =
                match Config::load(config.as_deref(), env_var, &Overrides { listen, data_dir }) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("heady-origin: invalid configuration: {e}");
                        return 2;
                    }
                };
            init_tracing(cfg.log_format == "json");
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
        Command::Tunnel(cmd) => crate::tunnel_config::run(cmd),
        Command::CheckConfig { config } => {
            match Config::load(config.as_deref(), env_var, &Overrides::default()) {
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

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let addr = cfg.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen {addr}: {e}"))?;
    let state = tokio::task::spawn_blocking(move || AppState::open(cfg)).await??;
    server::serve(
        listener,
        state,
        server::shutdown_signal(),
        Duration::from_secs(30),
    )
    .await
}
