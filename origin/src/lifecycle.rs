//! Who owns background work: every task the daemon starts is spawned here, tracked (shutdown
//! waits for it) and, unless it must finish its job, stopped by one cancellation token.

use std::future::Future;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cheap to clone; every clone spawns into the same tracker under the same token.
#[derive(Clone, Default)]
pub struct Background {
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `fut` until it ends or shutdown cancels it (then it is dropped where it waits).
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => tracing::debug!(task = name, "stopped"),
                _ = fut => {}
            }
        });
    }

    /// Runs `fut` to its end: shutdown waits for it but does not cancel it (a response
    /// stream still being sent, a final flush).
    pub fn spawn_to_end<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Runs `fut` to its end, as [`Background::spawn_to_end`], and answers its handle: a
    /// caller that stops waiting (a request whose client left) does not stop the work.
    pub fn spawn_joinable<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(fut)
    }

    /// A token that fires at shutdown, for work that checks it itself (threads, loops).
    pub fn token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Cancels what can be cancelled and waits for every task to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_cancels_loops_and_waits_for_work_that_must_finish() {
        let bg = Background::new();
        bg.spawn("forever", std::future::pending());
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        bg.spawn_to_end(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            f.store(true, Ordering::SeqCst);
        });
        tokio::time::timeout(Duration::from_secs(5), bg.shutdown())
            .await
            .expect("shutdown ends");
        assert!(finished.load(Ordering::SeqCst));
        assert!(bg.token().is_cancelled());
    }
}
