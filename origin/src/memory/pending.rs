//! Acknowledged rows not yet in the HNSW graph. Every insert queues its rows here once they are
//! durable; searches scan the queue exactly (so an insert is searchable at once), and the
//! indexer thread moves rows from its front into the graph.
//!
//! The queue holds whole inserts (chunks): it only grows at the back and shrinks at the front,
//! so no step under its lock costs more than O(1) (a flat buffer had to shift every queued
//! vector each time the indexer took some). A scan works on a snapshot of the chunk list, so
//! an insert never waits for a scan.

use crate::db::Wakeup;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One insert's rows: keys, owners (interned), vectors (flat, `dim` each) and their inverse
/// norms.
pub struct PendingChunk {
    pub keys: Vec<u64>,
    pub owners: Vec<u32>,
    pub inv_norms: Vec<f32>,
    pub vectors: Vec<f32>,
}

impl PendingChunk {
    pub fn with_capacity(rows: usize, dim: usize) -> Self {
        PendingChunk {
            keys: Vec::with_capacity(rows),
            owners: Vec::with_capacity(rows),
            inv_norms: Vec::with_capacity(rows),
            vectors: Vec::with_capacity(rows * dim),
        }
    }

    /// Adds a row; a zero vector gets inverse norm 0 (it then matches nothing).
    pub fn push(&mut self, key: u64, owner: u32, v: &[f32]) {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        self.keys.push(key);
        self.owners.push(owner);
        self.inv_norms.push(if n > 0.0 { 1.0 / n } else { 0.0 });
        self.vectors.extend_from_slice(v);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Default)]
struct Chunks {
    chunks: VecDeque<Arc<PendingChunk>>,
    rows: usize,
}

/// The queue, and the signals between inserters and the indexer.
#[derive(Default)]
pub struct PendingQueue {
    chunks: RwLock<Chunks>,
    /// Rows arrived: the indexer waits on it.
    pub arrived: Wakeup,
    drained: (Mutex<()>, Condvar),
}

impl PendingQueue {
    /// Rows queued.
    pub fn len(&self) -> usize {
        self.chunks.read().unwrap_or_else(|p| p.into_inner()).rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a chunk (an empty one is dropped) and wakes the indexer.
    pub fn push(&self, chunk: PendingChunk) {
        if chunk.is_empty() {
            return;
        }
        {
            let mut q = self.chunks.write().unwrap_or_else(|p| p.into_inner());
            q.rows += chunk.len();
            q.chunks.push_back(Arc::new(chunk));
        }
        self.arrived.notify();
    }

    /// The oldest chunks, at least one, up to about `max_rows` rows. They stay queued (and
    /// searched) until `pop_front`.
    pub fn front(&self, max_rows: usize) -> Vec<Arc<PendingChunk>> {
        let q = self.chunks.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut rows = 0;
        for c in &q.chunks {
            if !out.is_empty() && rows + c.len() > max_rows {
                break;
            }
            rows += c.len();
            out.push(Arc::clone(c));
        }
        out
    }

    /// Drops the `n` oldest chunks (now in the graph) and wakes whoever waits for the queue
    /// to shrink.
    pub fn pop_front(&self, n: usize) {
        {
            let mut q = self.chunks.write().unwrap_or_else(|p| p.into_inner());
            for _ in 0..n {
                if let Some(c) = q.chunks.pop_front() {
                    q.rows -= c.len();
                }
            }
        }
        self.notify_drained();
    }

    /// Empties the queue (the graph will not take its rows: searches use exact scans).
    pub fn clear(&self) {
        {
            let mut q = self.chunks.write().unwrap_or_else(|p| p.into_inner());
            q.chunks.clear();
            q.rows = 0;
        }
        self.notify_drained();
    }

    /// Every queued chunk, for a scan.
    pub fn snapshot(&self) -> Vec<Arc<PendingChunk>> {
        self.chunks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .chunks
            .iter()
            .cloned()
            .collect()
    }

    /// Wakes `wait_until` callers to check their condition again.
    pub fn notify_drained(&self) {
        let _guard = self.drained.0.lock().unwrap_or_else(|p| p.into_inner());
        self.drained.1.notify_all();
    }

    /// Waits until `done()` holds, checking it whenever the queue shrinks (and every `poll`),
    /// or until `timeout` (`None`: no limit). Returns whether `done()` held.
    pub fn wait_until(
        &self,
        timeout: Option<Duration>,
        poll: Duration,
        done: impl Fn() -> bool,
    ) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut guard = self.drained.0.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if now >= d => return false,
                Some(d) => poll.min(d - now),
                None => poll,
            };
            guard = self
                .drained
                .1
                .wait_timeout(guard, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(keys: std::ops::Range<u64>) -> PendingChunk {
        let mut c = PendingChunk::with_capacity(keys.clone().count(), 2);
        for k in keys {
            c.push(k, 0, &[k as f32, 1.0]);
        }
        c
    }

    fn keys(chunks: &[Arc<PendingChunk>]) -> Vec<u64> {
        chunks.iter().flat_map(|c| c.keys.clone()).collect()
    }

    #[test]
    fn the_indexer_takes_whole_inserts_oldest_first() {
        let q = PendingQueue::default();
        q.push(chunk(0..3));
        q.push(chunk(3..4));
        q.push(chunk(4..10));
        q.push(chunk(10..10));
        assert_eq!(q.len(), 10, "an empty insert queues nothing");
        assert_eq!(keys(&q.front(4)), vec![0, 1, 2, 3]);
        assert_eq!(
            keys(&q.front(1)),
            vec![0, 1, 2],
            "at least one insert, even past max_rows"
        );
        assert_eq!(keys(&q.front(100)), (0..10).collect::<Vec<_>>());
        q.pop_front(2);
        assert_eq!(q.len(), 6);
        assert_eq!(keys(&q.front(100)), (4..10).collect::<Vec<_>>());
        q.pop_front(5);
        assert!(q.is_empty());
        assert!(q.front(100).is_empty());
    }

    #[test]
    fn a_scan_keeps_its_snapshot_while_the_indexer_drains() {
        let q = PendingQueue::default();
        q.push(chunk(0..5));
        let snap = q.snapshot();
        q.pop_front(1);
        q.push(chunk(5..6));
        assert_eq!(keys(&snap), (0..5).collect::<Vec<_>>());
        assert_eq!(keys(&q.snapshot()), vec![5]);
    }

    #[test]
    fn a_zero_vector_gets_no_norm() {
        let mut c = PendingChunk::with_capacity(2, 2);
        c.push(1, 0, &[3.0, 4.0]);
        c.push(2, 0, &[0.0, 0.0]);
        assert_eq!(c.inv_norms, vec![0.2, 0.0]);
    }

    #[test]
    fn a_push_wakes_the_indexer() {
        let q = PendingQueue::default();
        assert!(!q.arrived.wait(Duration::from_millis(1)));
        q.push(chunk(0..1));
        assert!(q.arrived.wait(Duration::from_millis(1)));
    }

    #[test]
    fn a_waiting_inserter_goes_on_when_the_indexer_drains_the_queue() {
        let q = Arc::new(PendingQueue::default());
        for i in 0..10 {
            q.push(chunk(i * 10..i * 10 + 10));
        }
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let ok = q.wait_until(
                    Some(Duration::from_secs(30)),
                    Duration::from_secs(30),
                    || q.len() <= 50,
                );
                (ok, t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        q.pop_front(3);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "70 rows still queued");
        q.pop_front(2);
        let (ok, waited) = waiter.join().unwrap();
        assert!(ok);
        assert!(
            waited < Duration::from_secs(10),
            "woken by the drain, not the poll"
        );
        assert!(!q.wait_until(
            Some(Duration::from_millis(10)),
            Duration::from_millis(1),
            || false
        ));
    }
}
