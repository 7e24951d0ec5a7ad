//! The checkpointer thread: folds DuckDB's WAL into the database file once appends pause.
//!
//! DuckDB checkpoints inside a commit once the WAL passes `checkpoint_threshold`, and a
//! checkpoint rewrites the table's last, partly filled row group whole. At the 16 MiB default a
//! 100,000-row bulk load rewrote that row group ten times and slowed from 25,000 to 5,000
//! rows/s; so the threshold is large (`memory.wal_limit_mb`) and this thread checkpoints when
//! the WAL holds more than `memory.idle_checkpoint_mb` and no append has come for 2 s.

use super::wakeup::{CancelWatch, Wakeup};
use super::writer::Writer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const QUIET: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(250);

/// Bytes in the WAL at `path` (0 when there is none).
pub fn wal_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Owns the thread: `stop` cancels its token and joins it.
pub struct Checkpointer {
    cancel: CancellationToken,
    thread: Mutex<Option<JoinHandle<()>>>,
    count: Arc<AtomicU64>,
}

impl Checkpointer {
    pub fn spawn(
        writer: Arc<Writer>,
        wal_path: PathBuf,
        idle_bytes: u64,
        cancel: CancellationToken,
    ) -> std::io::Result<Checkpointer> {
        let count = Arc::new(AtomicU64::new(0));
        let thread = {
            let (count, cancel) = (count.clone(), cancel.clone());
            std::thread::Builder::new()
                .name("duckdb-checkpoint".into())
                .spawn(move || run(&writer, &wal_path, idle_bytes, &cancel, &count))?
        };
        Ok(Checkpointer {
            cancel,
            thread: Mutex::new(Some(thread)),
            count,
        })
    }

    /// Checkpoints run since start.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Stops the thread and waits for it (it may be finishing a checkpoint).
    pub fn stop(&self) {
        self.cancel.cancel();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run(
    writer: &Writer,
    wal_path: &Path,
    idle_bytes: u64,
    cancel: &CancellationToken,
    count: &AtomicU64,
) {
    let wakeup = Arc::new(Wakeup::default());
    let _watch = {
        let w = wakeup.clone();
        CancelWatch::new(cancel, move || w.notify())
    };
    loop {
        wakeup.wait(POLL);
        if cancel.is_cancelled() {
            return;
        }
        let quiet = writer.last_append().is_none_or(|t| t.elapsed() >= QUIET);
        let wal = wal_bytes(wal_path);
        if !quiet || wal < idle_bytes {
            continue;
        }
        let t = Instant::now();
        let result = writer.lock().execute_batch("CHECKPOINT");
        match result {
            Ok(()) => {
                count.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    wal_bytes = wal,
                    secs = t.elapsed().as_secs_f64(),
                    "duckdb checkpoint (writes paused)"
                );
            }
            // Another write transaction was open: try again on the next pause.
            Err(e) => tracing::debug!(error = %e, "duckdb checkpoint skipped"),
        }
    }
}
