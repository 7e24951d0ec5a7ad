//! Bounded parallelism for provider calls: `max` slots, a priority queue of waiters (service
//! group weight first, then arrival), a cap on the queue and on the wait.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `queue_max_len` requests are already waiting.
    QueueFull,
    /// No slot came free within the wait.
    TimedOut,
}

struct Waiter {
    priority: u64,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        self.priority == o.priority && self.seq == o.seq
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    fn cmp(&self, o: &Self) -> Ordering {
        // Max-heap: the heavier group first; within a group, who came first.
        self.priority.cmp(&o.priority).then(o.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct State {
    in_use: usize,
    waiters: BinaryHeap<Waiter>,
    seq: u64,
}

pub struct Admission {
    max: usize,
    max_queue: usize,
    state: Mutex<State>,
}

/// A slot; given back on drop (to the best waiter, if any).
pub struct Permit {
    admission: Arc<Admission>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release();
    }
}

impl Admission {
    pub fn new(max: usize, max_queue: usize) -> Self {
        Admission {
            max: max.max(1),
            max_queue,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    /// Waits up to `max_wait` for a slot; `weight` (the service group's) orders the queue.
    pub async fn acquire(
        self: &Arc<Self>,
        weight: f64,
        max_wait: Duration,
    ) -> Result<Permit, Refused> {
        let mut rx = {
            let mut st = self.lock();
            if st.in_use < self.max && st.waiters.is_empty() {
                st.in_use += 1;
                return Ok(Permit {
                    admission: self.clone(),
                });
            }
            if st.waiters.len() >= self.max_queue || max_wait.is_zero() {
                return Err(Refused::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let seq = st.seq;
            let priority = (weight.clamp(0.0, 1_000.0) * 1e6) as u64;
            st.waiters.push(Waiter { priority, seq, tx });
            rx
        };
        match tokio::time::timeout(max_wait, &mut rx).await {
            Ok(Ok(())) => Ok(Permit {
                admission: self.clone(),
            }),
            Ok(Err(_)) => Err(Refused::TimedOut),
            Err(_) => {
                // A release hands slots over under the lock: decide under it whether one came.
                let mut st = self.lock();
                if rx.try_recv().is_ok() {
                    return Ok(Permit {
                        admission: self.clone(),
                    });
                }
                drop(rx);
                st.waiters.retain(|w| !w.tx.is_closed());
                Err(Refused::TimedOut)
            }
        }
    }

    fn release(&self) {
        let mut st = self.lock();
        while let Some(w) = st.waiters.pop() {
            if w.tx.send(()).is_ok() {
                return; // the slot passes to the waiter; in_use is unchanged
            }
        }
        st.in_use = st.in_use.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_then_queue_then_refused() {
        let a = Arc::new(Admission::new(2, 1));
        let p1 = a.acquire(1.0, Duration::from_millis(10)).await.unwrap();
        let _p2 = a.acquire(1.0, Duration::from_millis(10)).await.unwrap();
        assert_eq!(
            a.acquire(1.0, Duration::from_millis(20)).await.err(),
            Some(Refused::TimedOut)
        );
        let a2 = a.clone();
        let waiter =
            tokio::spawn(async move { a2.acquire(1.0, Duration::from_secs(5)).await.ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.acquire(1.0, Duration::from_secs(1)).await.err(),
            Some(Refused::QueueFull)
        );
        drop(p1);
        let handed = waiter.await.unwrap();
        assert!(handed.is_some());
        assert_eq!(a.in_use(), 2, "the freed slot went to the waiter");
        drop(handed);
        assert_eq!(a.in_use(), 1);
    }

    #[tokio::test]
    async fn heavier_groups_go_first() {
        let a = Arc::new(Admission::new(1, 10));
        let held = a.acquire(1.0, Duration::from_millis(10)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, w) in [("ops", 0.3), ("reasoning", 1.0), ("vision", 0.5)] {
            let (a, order) = (a.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = a.acquire(w, Duration::from_secs(5)).await.unwrap();
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(p);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["reasoning", "vision", "ops"]);
    }
}
