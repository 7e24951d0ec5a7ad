//! The one writer connection, and group commit for appends.
//!
//! Appends queue up while the writer is busy, and whoever takes the writer next appends every
//! queued batch for the same table in one transaction. A transaction has a fixed cost
//! (appender, plan, commit, WAL sync) that 120-row batches paid ~800 times per 100,000 rows. If
//! a group fails, its batches are retried one by one, so each caller still gets its own
//! all-or-nothing outcome.

use super::DbError;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Most rows one group commit appends (a single larger batch still goes alone).
pub const GROUP_ROWS: usize = 8192;

/// A batch waiting for the writer.
struct AppendJob {
    table: &'static str,
    batch: RecordBatch,
    result: Mutex<Option<Result<(), String>>>,
}

pub struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<VecDeque<Arc<AppendJob>>>,
    /// When the last append finished; the checkpointer waits for appends to pause.
    last_append: Mutex<Option<Instant>>,
    commits: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    pub fn new(conn: Connection) -> Self {
        Writer {
            conn: Mutex::new(conn),
            queue: Mutex::new(VecDeque::new()),
            last_append: Mutex::new(None),
            commits: AtomicU64::new(0),
        }
    }

    /// The writer connection, exclusively.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    pub fn last_append(&self) -> Option<Instant> {
        *lock(&self.last_append)
    }

    /// Transactions that appends have committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Appends `batch` to `table` atomically, possibly in one transaction with other callers'.
    pub fn append(&self, table: &'static str, batch: RecordBatch) -> Result<(), DbError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let job = Arc::new(AppendJob {
            table,
            batch,
            result: Mutex::new(None),
        });
        lock(&self.queue).push_back(Arc::clone(&job));
        {
            let conn = self.lock();
            // Jobs leave the queue only under the writer lock and get their result before it
            // is released: while ours has none, it is still queued.
            while lock(&job.result).is_none() {
                let group = self.take_group();
                self.write_group(&conn, &group);
            }
        }
        let outcome = lock(&job.result)
            .take()
            .unwrap_or_else(|| Err("write lost".into()));
        outcome.map_err(DbError::Append)?;
        *lock(&self.last_append) = Some(Instant::now());
        Ok(())
    }

    /// The queued jobs from the front for the first one's table, at least one, up to
    /// `GROUP_ROWS` rows.
    fn take_group(&self) -> Vec<Arc<AppendJob>> {
        let mut queue = lock(&self.queue);
        let mut group: Vec<Arc<AppendJob>> = Vec::new();
        let mut rows = 0;
        while let Some(j) = queue.front() {
            if let Some(first) = group.first() {
                if j.table != first.table || rows + j.batch.num_rows() > GROUP_ROWS {
                    break;
                }
            }
            rows += j.batch.num_rows();
            group.extend(queue.pop_front());
        }
        group
    }

    /// Appends a group in one transaction; on failure, each job alone. Sets every result.
    fn write_group(&self, conn: &Connection, group: &[Arc<AppendJob>]) {
        let Some(first) = group.first() else { return };
        let append = |jobs: &[Arc<AppendJob>]| -> Result<(), String> {
            // One appender flush is one transaction: DuckDB rolls it back whole on error
            // (e.g. a duplicate id). GROUP_ROWS and memory.max_batch keep it below the
            // appender's auto-flush size.
            (|| -> duckdb::Result<()> {
                let mut app = conn.appender(first.table)?;
                for j in jobs {
                    app.append_record_batch(j.batch.clone())?;
                }
                app.flush()
            })()
            .map_err(|e| e.to_string())?;
            self.commits.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        let set = |j: &AppendJob, r: Result<(), String>| *lock(&j.result) = Some(r);
        match append(group) {
            Ok(()) => group.iter().for_each(|j| set(j, Ok(()))),
            Err(e) if group.len() == 1 => set(first, Err(e)),
            Err(_) => {
                for j in group {
                    set(j, append(std::slice::from_ref(j)));
                }
            }
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        lock(&self.queue).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{ArrayRef, Int64Array};
    use duckdb::arrow::datatypes::{DataType, Field, Schema};
    use std::time::Duration;

    fn writer() -> Arc<Writer> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE a (id BIGINT PRIMARY KEY); CREATE TABLE b (id BIGINT PRIMARY KEY);",
        )
        .unwrap();
        Arc::new(Writer::new(conn))
    }

    fn ids(range: impl IntoIterator<Item = i64>) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let col: ArrayRef = Arc::new(Int64Array::from_iter_values(range));
        RecordBatch::try_new(Arc::new(schema), vec![col]).unwrap()
    }

    fn stored(w: &Writer, table: &str) -> Vec<i64> {
        let conn = w.lock();
        let mut st = conn
            .prepare(&format!("SELECT id FROM {table} ORDER BY id"))
            .unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// Holds the writer until `n` appends are queued behind it, then lets them go: they share
    /// the next transactions, and each still gets its own answer.
    fn while_writer_busy<T: Send>(
        w: &Arc<Writer>,
        n: usize,
        appends: impl FnOnce() -> T + Send,
    ) -> T {
        std::thread::scope(|s| {
            let conn = w.lock();
            let handle = s.spawn(appends);
            let deadline = Instant::now() + Duration::from_secs(10);
            while w.queued() < n {
                assert!(Instant::now() < deadline, "appends never queued");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(conn);
            handle.join().unwrap()
        })
    }

    #[test]
    fn queued_appends_commit_in_one_transaction() {
        let w = writer();
        let results = while_writer_busy(&w, 8, || {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..8i64)
                    .map(|t| {
                        let w = &w;
                        s.spawn(move || w.append("a", ids(t * 10..t * 10 + 10)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            })
        });
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(stored(&w, "a"), (0..80).collect::<Vec<_>>());
        assert_eq!(w.commits(), 1, "eight appends, one transaction");
        assert!(w.last_append().is_some());
    }

    #[test]
    fn a_refused_batch_fails_alone_and_the_rest_of_its_group_is_stored() {
        let w = writer();
        w.append("a", ids([1000])).unwrap();
        let results = while_writer_busy(&w, 3, || {
            std::thread::scope(|s| {
                let ok1 = s.spawn(|| w.append("a", ids(0..5)));
                let dup = s.spawn(|| w.append("a", ids([5, 6, 1000])));
                let ok2 = s.spawn(|| w.append("a", ids(10..15)));
                [ok1, dup, ok2].map(|h| h.join().unwrap().is_ok())
            })
        });
        assert_eq!(results, [true, false, true]);
        let mut expect: Vec<i64> = (0..5).chain(10..15).collect();
        expect.push(1000);
        assert_eq!(stored(&w, "a"), expect, "nothing of the refused batch");
    }

    #[test]
    fn a_group_holds_one_table_and_at_most_group_rows() {
        let w = writer();
        let big = GROUP_ROWS as i64;
        let results = while_writer_busy(&w, 4, || {
            std::thread::scope(|s| {
                let hs = [
                    s.spawn(|| w.append("a", ids(0..big))),
                    s.spawn(|| w.append("a", ids(big..big + 5))),
                    s.spawn(|| w.append("b", ids(0..5))),
                    s.spawn(|| w.append("b", ids(5..10))),
                ];
                hs.map(|h| h.join().unwrap().is_ok())
            })
        });
        assert_eq!(results, [true; 4]);
        assert_eq!(stored(&w, "a").len(), GROUP_ROWS + 5);
        assert_eq!(stored(&w, "b"), (0..10).collect::<Vec<_>>());
        // The queue's order decides the groups; whatever it was, no group mixed tables or
        // went past GROUP_ROWS, so at least three transactions ran.
        assert!((3..=4).contains(&w.commits()), "{} commits", w.commits());
    }

    #[test]
    fn an_empty_batch_is_a_no_op() {
        let w = writer();
        w.append("a", ids([])).unwrap();
        assert_eq!(w.commits(), 0);
        assert!(stored(&w, "a").is_empty());
    }
}
