//! `heady-origin memory reembed`: the flags, and the run against a stopped daemon's database
//! (the work is `memory::reembed`).

use crate::config::{heady_env, Config, Overrides};
use crate::db::{Database, DbConfig, DbError};
use crate::memory::embedder::{self, Embedder, LexicalEmbedder};
use crate::memory::meta::{self, EmbedderRecord};
use crate::memory::reembed::{self, Outcome, Plan, Progress};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum MemoryCommand {
    /// Re-compute every stored row's vector with another embedder, then record it as the
    /// database's embedder (start the daemon with it afterwards). Run it with the daemon
    /// stopped. Batches commit one at a time and an interrupted run resumes where it stopped;
    /// the HNSW index is rebuilt at the next start.
    Reembed {
        /// The daemon's TOML config (finds data_dir, the model folder, memory.dim).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The daemon's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The embedder to re-embed with.
        #[arg(long, value_enum, default_value = "local")]
        to: Target,
        /// Rows per batch (one transaction each).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch: u64,
        /// Stop after this many batches, as an interruption would (tests of the resume).
        #[arg(long, hide = true)]
        stop_after_batches: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// all-MiniLM-L6-v2 from embedder.model_dir.
    Local,
    /// The built-in hashed n-grams.
    Lexical,
}

pub fn run(cmd: MemoryCommand) -> i32 {
    let MemoryCommand::Reembed {
        config,
        data_dir,
        to,
        batch,
        stop_after_batches,
    } = cmd;
    let cfg = match Config::load(
        config.as_deref(),
        &heady_env(),
        &Overrides {
            listen: None,
            data_dir,
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heady-origin: invalid configuration: {e}");
            return 2;
        }
    };
    match reembed_with(&cfg, to, batch as usize, stop_after_batches) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("heady-origin: memory reembed: {e:#}");
            1
        }
    }
}

fn reembed_with(
    cfg: &Config,
    to: Target,
    batch: usize,
    stop_after: Option<u64>,
) -> anyhow::Result<i32> {
    let dim = cfg.memory.dim;
    let target: Arc<dyn Embedder> = match to {
        Target::Local => embedder::start_local(&cfg.embedder, dim, &cfg.data_dir)?,
        Target::Lexical => Arc::new(LexicalEmbedder::new(dim)),
    };
    let db = Database::open(
        &cfg.data_dir,
        &DbConfig::from(&cfg.memory),
        Default::default(),
    )
    .map_err(|e| match e {
        e @ DbError::Open { .. } => {
            anyhow::anyhow!("{e} (stop the running heady-origin first: DuckDB has one writer)")
        }
        e => e.into(),
    })?;
    let wanted = EmbedderRecord::of(&*target);
    if meta::unfinished_reembed(&db)?.is_none()
        && meta::recorded(&db)?.is_some_and(|r| r.same(&wanted))
    {
        println!(
            "memory reembed: the vectors in {} are already {}; nothing to do",
            db.path().display(),
            wanted.describe()
        );
        return Ok(0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "memory reembed: {} to {}, {batch} rows per batch",
        db.path().display(),
        wanted.describe()
    );
    let mut report = |p: Progress| {
        let eta = p
            .eta_secs()
            .map_or_else(|| "?".to_string(), |s| format!("{:.0}s", s.ceil()));
        println!(
            "memory reembed: {}/{} rows ({:.1}%), {:.0} rows/s, ETA {eta}",
            p.done,
            p.total,
            if p.total == 0 {
                100.0
            } else {
                p.done as f64 * 100.0 / p.total as f64
            },
            p.rows_per_sec
        );
    };
    let plan = Plan {
        target: &*target,
        batch,
        stop_after,
    };
    let outcome = reembed::run(&db, &plan, rt.handle(), &mut report)?;
    db.close()?;
    match outcome {
        Outcome::Done { rows, resumed_at } => {
            println!(
                "memory reembed: done: {rows} rows hold {} vectors (resumed at row {resumed_at}); the database records it, and the HNSW index is rebuilt at the next start",
                wanted.describe()
            );
            Ok(0)
        }
        Outcome::Stopped { done, total } => {
            println!(
                "memory reembed: stopped at {done}/{total} rows as asked; run it again to resume"
            );
            Ok(3)
        }
    }
}
