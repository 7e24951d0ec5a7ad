//! Waking a plain thread (not a task) when a `CancellationToken` is cancelled, so a background
//! thread that waits on a condvar stops at once instead of at its next timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A flag and a condvar: `notify` sets the flag and wakes the waiter; `wait` returns once the
/// flag is set (and clears it) or the timeout passes.
#[derive(Default)]
pub struct Wakeup {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wakeup {
    pub fn notify(&self) {
        *self.flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Whether it was notified (rather than timed out).
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut flag = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        while !*flag {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            flag = self
                .cv
                .wait_timeout(flag, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *flag = false;
        true
    }
}

/// Calls `on_cancel` when the token is cancelled, for as long as the watch lives. No runtime
/// needed: the token's future is polled once with a waker that runs `on_cancel`, and the
/// cancelling thread calls that waker.
pub struct CancelWatch {
    _registered: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl CancelWatch {
    pub fn new(token: &CancellationToken, on_cancel: impl Fn() + Send + Sync + 'static) -> Self {
        struct OnCancel<F>(F);
        impl<F: Fn() + Send + Sync + 'static> Wake for OnCancel<F> {
            fn wake(self: Arc<Self>) {
                (self.0)()
            }
        }
        let on_cancel = Arc::new(OnCancel(on_cancel));
        let waker = Waker::from(on_cancel.clone());
        let mut registered = Box::pin(token.clone().cancelled_owned());
        if registered
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            (on_cancel.0)();
        }
        CancelWatch {
            _registered: registered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_thread_wakes_when_the_token_is_cancelled() {
        let token = CancellationToken::new();
        let wakeup = Arc::new(Wakeup::default());
        let w = wakeup.clone();
        let _watch = CancelWatch::new(&token, move || w.notify());
        let waiter = {
            let wakeup = wakeup.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let woken = wakeup.wait(Duration::from_secs(30));
                (woken, t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        token.cancel();
        let (woken, waited) = waiter.join().unwrap();
        assert!(woken);
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    }

    #[test]
    fn a_token_cancelled_before_the_watch_still_notifies() {
        let token = CancellationToken::new();
        token.cancel();
        let wakeup = Arc::new(Wakeup::default());
        let w = wakeup.clone();
        let _watch = CancelWatch::new(&token, move || w.notify());
        assert!(wakeup.wait(Duration::from_millis(1)));
    }

    #[test]
    fn wait_times_out_without_a_notification() {
        let wakeup = Wakeup::default();
        assert!(!wakeup.wait(Duration::from_millis(20)));
        wakeup.notify();
        assert!(wakeup.wait(Duration::from_millis(20)));
        assert!(
            !wakeup.wait(Duration::from_millis(1)),
            "a wait clears the flag"
        );
    }
}
