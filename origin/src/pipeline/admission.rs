//! Bounded parallelism for provider calls: `max` slots, a priority queue of waiters (service
//! group weight first, then arrival), a cap on the queue and on the wait, and a fair share:
//! one subject holds at most its tier's `share` of the slots and waits for at most `share`
//! more, so one caller (six slow streams from one address) cannot shut the others out.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `queue_max_len` requests are already waiting.
    QueueFull,
    /// No slot came free within the wait.
    TimedOut,
    /// The subject already holds its share of the slots and has as many waiting.
    SubjectBusy,
}

/// Who asks for a slot, and how many it may hold at once.
#[derive(Debug, Clone)]
pub struct Claimant {
    pub subject: Arc<str>,
    pub share: usize,
}

struct Waiter {
    priority: u64,
    seq: u64,
    claimant: Claimant,
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
    /// Slots held per subject (absent: none).
    held: HashMap<Arc<str>, usize>,
}

impl State {
    fn held_by(&self, subject: &str) -> usize {
        self.held.get(subject).copied().unwrap_or(0)
    }

    fn take(&mut self, subject: &Arc<str>) {
        *self.held.entry(subject.clone()).or_insert(0) += 1;
    }

    fn give_back(&mut self, subject: &str) {
        if let Some(n) = self.held.get_mut(subject) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(subject);
            }
        }
    }
}

pub struct Admission {
    max: usize,
    max_queue: usize,
    state: Mutex<State>,
}

/// A slot; given back on drop (to the best waiter that may take it, if any).
pub struct Permit {
    admission: Arc<Admission>,
    subject: Arc<str>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.subject);
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

    /// Slots the subject holds now.
    pub fn held_by(&self, subject: &str) -> usize {
        self.lock().held_by(subject)
    }

    fn permit(self: &Arc<Self>, subject: Arc<str>) -> Permit {
        Permit {
            admission: self.clone(),
            subject,
        }
    }

    /// Waits up to `max_wait` for a slot; `weight` (the service group's) orders the queue. A
    /// claimant holding its share waits for one of its own slots; one that also has `share`
    /// requests waiting is refused at once.
    pub async fn acquire(
        self: &Arc<Self>,
        claimant: &Claimant,
        weight: f64,
        max_wait: Duration,
    ) -> Result<Permit, Refused> {
        let share = claimant.share.max(1);
        let mut rx = {
            let mut st = self.lock();
            let held = st.held_by(&claimant.subject);
            // With a slot free every waiter is one that may not take it (a release hands a
            // slot to the first waiter that may), so no one is passed over here.
            if st.in_use < self.max && held < share {
                st.in_use += 1;
                st.take(&claimant.subject);
                return Ok(self.permit(claimant.subject.clone()));
            }
            if max_wait.is_zero() || st.waiters.len() >= self.max_queue {
                return Err(Refused::QueueFull);
            }
            let waiting = st
                .waiters
                .iter()
                .filter(|w| w.claimant.subject == claimant.subject)
                .count();
            // A share below the whole pool also bounds the caller's place in the queue.
            if share < self.max && held >= share && waiting >= share {
                return Err(Refused::SubjectBusy);
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let seq = st.seq;
            let priority = (weight.clamp(0.0, 1_000.0) * 1e6) as u64;
            st.waiters.push(Waiter {
                priority,
                seq,
                claimant: Claimant {
                    subject: claimant.subject.clone(),
                    share,
                },
                tx,
            });
            rx
        };
        match tokio::time::timeout(max_wait, &mut rx).await {
            Ok(Ok(())) => Ok(self.permit(claimant.subject.clone())),
            Ok(Err(_)) => Err(Refused::TimedOut),
            Err(_) => {
                // A release hands slots over under the lock: decide under it whether one came.
                let mut st = self.lock();
                if rx.try_recv().is_ok() {
                    return Ok(self.permit(claimant.subject.clone()));
                }
                drop(rx);
                st.waiters.retain(|w| !w.tx.is_closed());
                Err(Refused::TimedOut)
            }
        }
    }

    fn release(&self, subject: &str) {
        let mut st = self.lock();
        st.give_back(subject);
        // The best waiter whose subject is under its share gets the slot; the others keep
        // their place.
        let mut passed_over = Vec::new();
        let mut handed = false;
        while let Some(w) = st.waiters.pop() {
            if st.held_by(&w.claimant.subject) >= w.claimant.share {
                passed_over.push(w);
                continue;
            }
            let subject = w.claimant.subject.clone();
            if w.tx.send(()).is_ok() {
                st.take(&subject);
                handed = true; // the slot passes to the waiter; in_use is unchanged
                break;
            }
        }
        st.waiters.extend(passed_over);
        if !handed {
            st.in_use = st.in_use.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(subject: &str, share: usize) -> Claimant {
        Claimant {
            subject: subject.into(),
            share,
        }
    }

    #[tokio::test]
    async fn bounded_then_queue_then_refused() {
        let a = Arc::new(Admission::new(2, 1));
        let p1 = a
            .acquire(&who("x", 100), 1.0, Duration::from_millis(10))
            .await
            .unwrap();
        let _p2 = a
            .acquire(&who("x", 100), 1.0, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(
            a.acquire(&who("x", 100), 1.0, Duration::from_millis(20))
                .await
                .err(),
            Some(Refused::TimedOut)
        );
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            a2.acquire(&who("x", 100), 1.0, Duration::from_secs(5))
                .await
                .ok()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.acquire(&who("x", 100), 1.0, Duration::from_secs(1))
                .await
                .err(),
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
        let held = a
            .acquire(&who("x", 100), 1.0, Duration::from_millis(10))
            .await
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, w) in [("ops", 0.3), ("reasoning", 1.0), ("vision", 0.5)] {
            let (a, order) = (a.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = a
                    .acquire(&who(name, 100), w, Duration::from_secs(5))
                    .await
                    .unwrap();
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

    #[tokio::test]
    async fn one_subject_holds_at_most_its_share() {
        let a = Arc::new(Admission::new(6, 100));
        let anon = who("ip:198.51.100.7", 2);
        let held: Vec<Permit> = vec![
            a.acquire(&anon, 1.0, Duration::from_millis(10))
                .await
                .unwrap(),
            a.acquire(&anon, 1.0, Duration::from_millis(10))
                .await
                .unwrap(),
        ];
        // Two more wait for the caller's own slots; the fifth is refused at once.
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let (a, anon) = (a.clone(), anon.clone());
            waiting.push(tokio::spawn(async move {
                a.acquire(&anon, 1.0, Duration::from_secs(5)).await.ok()
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            a.acquire(&anon, 1.0, Duration::from_secs(5)).await.err(),
            Some(Refused::SubjectBusy)
        );
        assert_eq!((a.in_use(), a.waiting()), (2, 2));
        // Another caller gets a free slot at once, though the queue is not empty.
        let pro = a
            .acquire(&who("key:pro", 4), 0.1, Duration::from_millis(10))
            .await
            .expect("a Pro caller is served beside the anonymous one");
        assert_eq!(a.held_by("key:pro"), 1);
        drop(pro);
        // A slot of the anonymous caller passes to its own waiter.
        drop(held);
        let mut got = Vec::new();
        for w in waiting {
            got.push(
                w.await
                    .unwrap()
                    .expect("a waiter got the caller's own slot"),
            );
        }
        assert_eq!(a.held_by("ip:198.51.100.7"), 2);
        drop(got);
        assert_eq!((a.in_use(), a.waiting()), (0, 0));
        assert_eq!(a.held_by("ip:198.51.100.7"), 0);
    }
}
