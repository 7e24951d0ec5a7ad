//! The Linux-specific bits, in one place: scheduling classes for background threads and glibc's
//! allocator thresholds. Elsewhere these are no-ops.

/// A kernel thread id, as `gettid` returns it.
pub type Tid = i32;

thread_local! {
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The calling thread's kernel id (0 where there is none).
pub fn current_tid() -> Tid {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no arguments and cannot fail.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
fn set_policy(tid: Tid, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall on a thread of this process; param outlives the call.
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

/// Whether a thread of this process may leave SCHED_IDLE again. An unprivileged process needs
/// RLIMIT_NICE >= 20 for that (the systemd unit sets `LimitNICE=+0`); without it a background
/// thread could never be raised while it holds a lock, so it is never lowered in the first place.
fn idle_is_reversible() -> bool {
    static REVERSIBLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REVERSIBLE.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // Probe on a throwaway thread: if the way back is refused it stays idle and ends.
            let reversible = std::thread::spawn(|| {
                set_policy(0, libc::SCHED_IDLE) && set_policy(0, libc::SCHED_OTHER)
            })
            .join()
            .unwrap_or(false);
            if !reversible {
                tracing::info!(
                    "background threads stay at normal priority: SCHED_IDLE could not be left again (RLIMIT_NICE < 20)"
                );
            }
            reversible
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// Puts the calling thread in Linux's SCHED_IDLE class: it runs only on CPU that nothing else
/// wants, and any waking insert or search preempts it at once. (Nice 19 was not enough: a
/// waking writer could wait out the indexer's time slice.) Returns whether it did.
pub fn background_priority() -> bool {
    #[cfg(target_os = "linux")]
    if idle_is_reversible() && set_policy(0, libc::SCHED_IDLE) {
        BACKGROUND.with(|b| b.set(true));
        return true;
    }
    false
}

/// Runs `f` at normal priority when called from a background thread: a background thread that
/// holds a lock others wait for must not be preempted there (priority inversion).
pub fn urgent<T>(f: impl FnOnce() -> T) -> T {
    let background = BACKGROUND.with(|b| b.get());
    #[cfg(target_os = "linux")]
    if background {
        set_policy(0, libc::SCHED_OTHER);
    }
    let out = f();
    #[cfg(target_os = "linux")]
    if background {
        set_policy(0, libc::SCHED_IDLE);
    }
    out
}

/// Raises another thread of this process out of SCHED_IDLE: a thread about to wait on a lock
/// held by background threads lends them its priority until they let go.
pub fn boost(tid: Tid) {
    #[cfg(target_os = "linux")]
    if tid != 0 {
        set_policy(tid, libc::SCHED_OTHER);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tid;
}

/// Keeps glibc from handing DuckDB's append buffers back to the kernel after every insert.
///
/// A batch insert allocates and frees buffers of a few hundred KB; past glibc's mmap threshold
/// each one was an mmap, page faults on first touch and an munmap (13% of a bulk load's CPU in
/// the profile). With a 64 MiB mmap threshold and a 256 MiB trim threshold the memory is
/// reused: more stays resident, bounded by those figures. Process-wide and idempotent.
///
/// jemalloc and mimalloc as the global allocator (malloc overridden, so DuckDB's and usearch's
/// C++ too) were not faster on `bench_memory --insert-only --clients 4`: medians of three
/// alternating runs 9,143 and 8,984 vectors/s against 10,578 and 10,292 with this tuning. On
/// the CPU-bound pipeline (`deploy/bench-pipeline.sh`, instant fake provider) mimalloc gave
/// 11,456 req/s against 10,231 (medians of three alternating runs): within the run-to-run
/// spread, and the opposite way to bulk insert, so this tuning stays.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes glibc's allocation thresholds.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        });
    }
}

/// Raises this process's open-file limit (RLIMIT_NOFILE) from its soft value to its hard
/// one: every client connection is a descriptor, and the soft default (often 1024) would turn
/// a burst of slow clients into accept errors. Returns the limit now in force (`None` where
/// there is none to read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        // rlim_t is u64 on 64-bit Linux, narrower elsewhere.
        #[allow(clippy::unnecessary_cast)]
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}
