//! MCP sessions: an `Mcp-Session-Id` names the account that opened it and the revision it
//! negotiated. A session idle longer than `idle` is gone; an account holds at most
//! `per_account`, and opening one more closes its least recently used. Another account's id
//! is answered like an unknown one, so ids reveal nothing. Sessions live in this process: with
//! several origins, a client's requests must reach the one that opened its session.
//!
//! Time is a parameter (`now`), so expiry is tested without waiting.

use heady_shared::AccountId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long sessions live and how many an account may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub per_account: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::from_secs(30 * 60),
            per_account: 16,
        }
    }
}

struct Session {
    account: AccountId,
    version: &'static str,
    last_seen: Instant,
}

pub struct Sessions {
    limits: SessionLimits,
    open: Mutex<HashMap<String, Session>>,
}

/// A session opened: its id, and the one it closed when the account was at its cap.
#[derive(Debug)]
pub struct Opened {
    pub id: String,
    pub closed: Option<String>,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map whole (every change is one call).
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) > self.limits.idle
    }

    /// Opens a session for `account` at `version`: 128 random bits as 32 hex digits.
    pub fn open(&self, account: &AccountId, version: &'static str, now: Instant) -> Opened {
        let id: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut open = self.lock();
        open.retain(|_, s| !self.expired(s, now));
        let held = open.values().filter(|s| &s.account == account).count();
        let closed = if held >= self.limits.per_account.max(1) {
            open.iter()
                .filter(|(_, s)| &s.account == account)
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        } else {
            None
        };
        if let Some(k) = &closed {
            open.remove(k);
        }
        open.insert(
            id.clone(),
            Session {
                account: account.clone(),
                version,
                last_seen: now,
            },
        );
        Opened { id, closed }
    }

    /// The revision of `account`'s live session `id`, which counts as used now; `None` when
    /// there is no such session (unknown, expired, closed, or another account's).
    pub fn resume(&self, id: &str, account: &AccountId, now: Instant) -> Option<&'static str> {
        let mut open = self.lock();
        let s = open.get_mut(id)?;
        if &s.account != account {
            return None;
        }
        if self.expired(s, now) {
            open.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.version)
    }

    /// Closes `account`'s session `id`; `false` when it had none by that id.
    pub fn close(&self, id: &str, account: &AccountId, now: Instant) -> bool {
        let mut open = self.lock();
        match open.get(id) {
            Some(s) if &s.account == account => {
                let live = !self.expired(s, now);
                open.remove(id);
                live
            }
            _ => false,
        }
    }

    /// Sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(c: char) -> AccountId {
        AccountId::parse(&format!("acct_{}", c.to_string().repeat(24))).unwrap()
    }

    fn sessions(idle_secs: u64, per_account: usize) -> Sessions {
        Sessions::new(SessionLimits {
            idle: Duration::from_secs(idle_secs),
            per_account,
        })
    }

    #[test]
    fn a_session_belongs_to_the_account_that_opened_it() {
        let s = sessions(60, 4);
        let (a, b) = (account('a'), account('b'));
        let t0 = Instant::now();
        let opened = s.open(&a, "2025-06-18", t0);
        assert_eq!(opened.id.len(), 32);
        assert!(opened.id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(s.resume(&opened.id, &a, t0), Some("2025-06-18"));
        assert_eq!(s.resume(&opened.id, &b, t0), None);
        assert!(
            !s.close(&opened.id, &b, t0),
            "another account cannot close it"
        );
        assert_eq!(s.resume(&opened.id, &a, t0), Some("2025-06-18"));
        assert!(s.close(&opened.id, &a, t0));
        assert_eq!(s.resume(&opened.id, &a, t0), None);
        assert!(!s.close(&opened.id, &a, t0));
        assert_ne!(s.open(&a, "2025-11-25", t0).id, opened.id);
    }

    #[test]
    fn idle_sessions_expire_and_use_keeps_them_alive() {
        let s = sessions(60, 4);
        let a = account('a');
        let t0 = Instant::now();
        let kept = s.open(&a, "2025-11-25", t0).id;
        let idle = s.open(&a, "2025-11-25", t0).id;
        assert!(s.resume(&kept, &a, t0 + Duration::from_secs(50)).is_some());
        assert!(s.resume(&kept, &a, t0 + Duration::from_secs(100)).is_some());
        assert_eq!(s.resume(&idle, &a, t0 + Duration::from_secs(100)), None);
        // Opening sweeps what has expired.
        assert_eq!(s.len(), 1);
        s.open(&account('b'), "2025-11-25", t0 + Duration::from_secs(200));
        assert_eq!(s.len(), 1, "the kept session expired too by then");
    }

    #[test]
    fn an_account_at_its_cap_loses_its_least_recently_used_session() {
        let s = sessions(600, 2);
        let (a, b) = (account('a'), account('b'));
        let t0 = Instant::now();
        let first = s.open(&a, "2025-11-25", t0).id;
        let second = s.open(&a, "2025-11-25", t0 + Duration::from_secs(1)).id;
        let other = s.open(&b, "2025-11-25", t0).id;
        // The first is used again, so the second is now the least recently used.
        s.resume(&first, &a, t0 + Duration::from_secs(2)).unwrap();
        let third = s.open(&a, "2025-11-25", t0 + Duration::from_secs(3));
        assert_eq!(third.closed.as_deref(), Some(second.as_str()));
        let later = t0 + Duration::from_secs(4);
        assert!(s.resume(&first, &a, later).is_some());
        assert!(s.resume(&second, &a, later).is_none());
        assert!(s.resume(&third.id, &a, later).is_some());
        assert!(
            s.resume(&other, &b, later).is_some(),
            "other accounts keep theirs"
        );
        assert_eq!(s.len(), 3);
    }
}
