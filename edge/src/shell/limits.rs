//! Defense I/O against KV (binding `HEADY_KV`): session cache (known and refused keys, bearer
//! and PQC),
//! failed-authentication counts per client address, ban list, and the sliding-window limiter
//! with coalesced writes. The rules are in `crate::defense` and
//! heady-shared's `SubjectPolicy`.

use super::entry::Call;
use super::{respond, tunnel};
use crate::defense::{
    self, BanRecord, CachedKey, CachedPqKey, CachedSession, Flush, Session, SignedRequest,
    WriteSlot, BAN_CACHE_MS, MIN_KV_WRITE_INTERVAL_MS,
};
use heady_shared::http_sig::PublicKey;
use heady_shared::limiter::{BanPolicy, LimitOutcome, SubjectPolicy, SubjectState, WindowState};
use heady_shared::{ApiError, ErrorCode, Subject};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;
use worker::{console_error, Date, Delay, KvStore, Response};

const KV_BINDING: &str = "HEADY_KV";
/// Per-isolate memory bound: above this many subjects, idle ones are dropped.
const MAX_LOCAL_SUBJECTS: usize = 10_000;

/// What this isolate remembers per subject. Isolates are single-threaded.
#[derive(Default)]
struct Local {
    state: SubjectState,
    slot: WriteSlot,
    /// (checked at ms, entry then)
    ban: Option<(u64, Option<BanRecord>)>,
    /// When KV's copy of the limiter state was last merged in.
    last_read_ms: Option<u64>,
}

thread_local! {
    static LOCAL: RefCell<HashMap<Subject, Local>> = RefCell::new(HashMap::new());
    /// Session-cache key -> (trusted until ms, entry): KV is read at most every
    /// SESSION_CACHE_MS per known key (never past the session's own expiry), and
    /// REFUSED_KEY_CACHE_SECS per refused one.
    static SESSIONS: RefCell<HashMap<String, (u64, CachedKey)>> = RefCell::new(HashMap::new());
    /// PQC API key id -> (trusted until ms, its session and parsed public key, or the
    /// origin's refusal), under the same rules as SESSIONS.
    static PQ_KEYS: RefCell<HashMap<String, (u64, PqKey)>> = RefCell::new(HashMap::new());
    /// Client address -> its failed-authentication count.
    static FAILED_AUTH: RefCell<HashMap<Subject, FailedAuth>> = RefCell::new(HashMap::new());
}

/// A PQC API key's session and parsed public key, or the origin's refusal of it.
type PqKey = Result<(Session, PublicKey), ApiError>;

/// One address's failed authentications as this isolate knows them.
#[derive(Default)]
struct FailedAuth {
    window: WindowState,
    slot: WriteSlot,
    last_read_ms: Option<u64>,
}

fn kv(call: &Call) -> Result<KvStore, ApiError> {
    call.env.kv(KV_BINDING).map_err(|_| {
        ApiError::new(
            ErrorCode::ConfigError,
            format!("the {KV_BINDING} KV binding is missing"),
        )
    })
}

fn failed_auth_limit(call: &Call) -> u32 {
    call.env
        .var("FAILED_AUTH_LIMIT")
        .ok()
        .and_then(|v| v.to_string().parse().ok())
        .unwrap_or(defense::DEFAULT_FAILED_AUTH_LIMIT)
}

/// The session of the request: from its API key (isolate cache, KV cache, else the origin),
/// else anonymous. A key the origin refused is remembered for
/// [`defense::REFUSED_KEY_CACHE_SECS`]; every refused or malformed key counts against the
/// client's address, and past the limit its keys are refused with 429 unless already known
/// to be valid.
pub async fn identify(call: &Call, authorization: Option<&str>) -> Result<Session, ApiError> {
    let client = Session::anonymous(call.client_ip).subject;
    let key = match defense::parse_authorization(authorization) {
        Ok(None) => return Ok(Session::anonymous(call.client_ip)),
        Ok(Some(key)) => key,
        Err(malformed) => {
            if let Some(blocked) = failed_auth_blocked(call, &client).await {
                return Err(blocked);
            }
            failed_auth(call, &client);
            return Err(malformed);
        }
    };
    let kv = kv(call)?;
    let cache_key = key.session_key();
    let now = call.now_ms;
    let remember = |entry: &CachedKey| {
        let until = entry.isolate_until(now);
        SESSIONS.with(|s| {
            let mut map = s.borrow_mut();
            map.retain(|_, (until, _)| now < *until);
            map.insert(cache_key.clone(), (until, entry.clone()));
        })
    };
    let mut cached = SESSIONS.with(|s| {
        s.borrow()
            .get(&cache_key)
            .filter(|(until, _)| now < *until)
            .map(|(_, entry)| entry.clone())
    });
    if cached.is_none() {
        match kv.get(&cache_key).json::<CachedKey>().await {
            // A session past its own expiry is a miss: the origin is asked again.
            Ok(Some(CachedKey::Known(s))) if !s.is_fresh(now) => {}
            Ok(Some(entry)) => {
                remember(&entry);
                cached = Some(entry);
            }
            Ok(None) => {}
            Err(e) => console_error!("session cache read failed: {e}"),
        }
    }
    if let Some(CachedKey::Known(session)) = cached {
        return Ok(session.session());
    }
    if let Some(blocked) = failed_auth_blocked(call, &client).await {
        return Err(blocked);
    }
    if let Some(CachedKey::Refused { refused }) = cached {
        failed_auth(call, &client);
        return Err(refused);
    }
    let entry = match tunnel::identity(call, &key).await {
        Ok(Ok((session, ttl))) => (CachedKey::Known(CachedSession::new(session, now, ttl)), ttl),
        Ok(Err(refused)) if refused.status() == 429 => return Err(refused),
        Ok(Err(refused)) => (
            CachedKey::Refused { refused },
            defense::REFUSED_KEY_CACHE_SECS,
        ),
        // Origin unreachable: the key cannot be checked, so the request counts as anonymous
        // (edge work still answers; tunnelled work gets the 503 anyway).
        Err(e) => {
            console_error!("identity lookup failed: {}", e.message);
            return Ok(Session::anonymous(call.client_ip));
        }
    };
    let (entry, ttl) = entry;
    match kv.put(&cache_key, json_text(&entry)) {
        Ok(put) => {
            if let Err(e) = put.expiration_ttl(defense::kv_ttl(ttl)).execute().await {
                console_error!("session cache write failed: {e}");
            }
        }
        Err(e) => console_error!("session cache write failed: {e}"),
    }
    remember(&entry);
    match entry {
        CachedKey::Known(session) => Ok(session.session()),
        CachedKey::Refused { refused } => {
            failed_auth(call, &client);
            Err(refused)
        }
    }
}

/// The session of a request signed with a PQC API key: the edge checks the signature itself
/// (`defense::prepare_signed`, then the key's public key) and believes only a good one. As
/// at the origin, an address over the failed-authentication limit is refused before any
/// signature work (a keyid is public: naming a good one must not lift the throttle), and
/// every refused signature counts against it. The key's session and public key come from
/// the isolate, KV (`pq:<keyid>`, the TTLs of bearer keys), else the origin.
pub async fn identify_signed(call: &Call, req: &SignedRequest<'_>) -> Result<Session, ApiError> {
    let client = Session::anonymous(call.client_ip).subject;
    if let Some(blocked) = failed_auth_blocked(call, &client).await {
        return Err(blocked);
    }
    let prepared = match defense::prepare_signed(req, call.now_ms / 1000) {
        Ok(p) => p,
        Err(refused) => {
            failed_auth(call, &client);
            return Err(refused);
        }
    };
    let verdict = match pq_key(call, &prepared).await {
        Ok((session, key)) => prepared.accept(&session, &key),
        Err(refused) => Err(refused),
    };
    if let Err(refused) = &verdict {
        if defense::counts_as_failed_auth(refused) {
            failed_auth(call, &client);
        }
    }
    verdict
}

/// The session and public key of a signed request's key, or the origin's refusal of it (also
/// 503 when the origin cannot be asked: the signature cannot be checked).
async fn pq_key(
    call: &Call,
    prepared: &defense::PreparedSignature,
) -> Result<(Session, PublicKey), ApiError> {
    let now = call.now_ms;
    let keyid = prepared.keyid().to_string();
    let remember = |until: u64, entry: &PqKey| {
        PQ_KEYS.with(|k| {
            let mut map = k.borrow_mut();
            map.retain(|_, (until, _)| now < *until);
            map.insert(keyid.clone(), (until, entry.clone()));
        })
    };
    let cached = PQ_KEYS.with(|k| {
        k.borrow()
            .get(&keyid)
            .filter(|(until, _)| now < *until)
            .map(|(_, entry)| entry.clone())
    });
    if let Some(entry) = cached {
        return entry;
    }
    let kv = kv(call)?;
    let cache_key = prepared.session_key();
    match kv.get(&cache_key).json::<CachedPqKey>().await {
        // A session past its own expiry is a miss: the origin is asked again.
        Ok(Some(CachedPqKey::Known { session, .. })) if !session.is_fresh(now) => {}
        Ok(Some(entry)) => {
            if let Some(opened) = open(&entry) {
                remember(entry.isolate_until(now), &opened);
                return opened;
            }
        }
        Ok(None) => {}
        Err(e) => console_error!("session cache read failed: {e}"),
    }
    let (entry, opened, ttl) = match tunnel::pq_key(call, &keyid).await? {
        Ok((session, key, ttl)) => (
            CachedPqKey::known(CachedSession::new(session.clone(), now, ttl), &key),
            Ok((session, key)),
            ttl,
        ),
        Err(refused) if refused.status() == 429 => return Err(refused),
        Err(refused) => (
            CachedPqKey::Refused {
                refused: refused.clone(),
            },
            Err(refused),
            defense::REFUSED_KEY_CACHE_SECS,
        ),
    };
    match kv.put(&cache_key, json_text(&entry)) {
        Ok(put) => {
            if let Err(e) = put.expiration_ttl(defense::kv_ttl(ttl)).execute().await {
                console_error!("session cache write failed: {e}");
            }
        }
        Err(e) => console_error!("session cache write failed: {e}"),
    }
    remember(entry.isolate_until(now), &opened);
    opened
}

/// A cached PQC key entry as the isolate keeps it; `None` when its public key does not read
/// back (then the origin is asked again).
fn open(entry: &CachedPqKey) -> Option<PqKey> {
    match entry {
        CachedPqKey::Known {
            session,
            public_key,
        } => PublicKey::from_raw_or_base64(public_key.as_bytes())
            .ok()
            .map(|key| Ok((session.session(), key))),
        CachedPqKey::Refused { refused } => Some(Err(refused.clone())),
    }
}

/// `Some(429)` when `client` has used up its failed authentications. KV's count (other
/// isolates') is merged in at most once a second per address.
async fn failed_auth_blocked(call: &Call, client: &Subject) -> Option<ApiError> {
    let now = call.now_ms;
    let limit = failed_auth_limit(call);
    let window = defense::failed_auth_window(limit);
    let due = FAILED_AUTH.with(|f| {
        f.borrow()
            .get(client)
            .and_then(|e| e.last_read_ms)
            .is_none_or(|at| now >= at + MIN_KV_WRITE_INTERVAL_MS)
    });
    let stored = if due {
        match kv(call) {
            Ok(kv) => kv
                .get(&defense::failed_auth_key(client))
                .json::<WindowState>()
                .await
                .unwrap_or_else(|e| {
                    console_error!("failed-auth count read failed: {e}");
                    None
                }),
            Err(_) => None,
        }
    } else {
        None
    };
    FAILED_AUTH.with(|f| {
        let mut map = f.borrow_mut();
        if map.len() > MAX_LOCAL_SUBJECTS {
            map.retain(|_, e| {
                e.slot.scheduled
                    || e.window.window_start_ms + 2 * defense::FAILED_AUTH_WINDOW_MS > now
            });
        }
        let entry = map.entry(client.clone()).or_default();
        if due {
            entry.last_read_ms = Some(now);
            if let Some(stored) = stored {
                entry.window = defense::merge_window(
                    &entry.window,
                    &stored,
                    defense::FAILED_AUTH_WINDOW_MS,
                    now,
                );
            }
        }
        if window.fits(&mut entry.window, now, 1) {
            None
        } else {
            let reset = entry.window.window_start_ms + defense::FAILED_AUTH_WINDOW_MS - now;
            Some(defense::too_many_failed_auth(limit, reset.div_ceil(1000)))
        }
    })
}

/// Counts one failed authentication against `client` and schedules its KV write (at most
/// one a second per address).
fn failed_auth(call: &Call, client: &Subject) {
    let now = call.now_ms;
    let window = defense::failed_auth_window(failed_auth_limit(call));
    let (state, flush) = FAILED_AUTH.with(|f| {
        let mut map = f.borrow_mut();
        let entry = map.entry(client.clone()).or_default();
        window.decide(&mut entry.window, now, 1);
        (entry.window, entry.slot.plan(now))
    });
    let Ok(kv) = kv(call) else { return };
    let key = defense::failed_auth_key(client);
    let ttl = defense::kv_ttl(2 * defense::FAILED_AUTH_WINDOW_MS / 1000);
    match flush {
        Flush::Now => {
            call.ctx
                .wait_until(write_json(kv, key, Some(state), ttl, "failed-auth count"))
        }
        Flush::After(ms) => {
            let client = client.clone();
            call.ctx.wait_until(async move {
                Delay::from(Duration::from_millis(ms)).await;
                let latest = FAILED_AUTH.with(|f| {
                    f.borrow_mut().get_mut(&client).map(|e| {
                        e.slot.delayed_write_done(Date::now().as_millis());
                        e.window
                    })
                });
                write_json(kv, key, latest, ttl, "failed-auth count").await;
            });
        }
        Flush::Pending => {}
    }
}

/// `Some(403)` when the subject is on the ban list. KV is read at most every
/// [`BAN_CACHE_MS`] per subject per isolate.
pub async fn banned(call: &Call, subject: &Subject) -> Option<ApiError> {
    let now = call.now_ms;
    let cached = LOCAL.with(|l| {
        l.borrow()
            .get(subject)
            .and_then(|e| e.ban.clone())
            .filter(|(at, _)| now < at + BAN_CACHE_MS)
            .map(|(_, ban)| ban)
    });
    let ban = match cached {
        Some(ban) => ban,
        None => {
            let read = match kv(call) {
                Ok(kv) => kv
                    .get(&defense::ban_key(subject))
                    .json::<BanRecord>()
                    .await
                    .unwrap_or_else(|e| {
                        console_error!("ban list read failed: {e}");
                        None
                    }),
                Err(_) => None,
            };
            LOCAL.with(|l| {
                l.borrow_mut().entry(subject.clone()).or_default().ban = Some((now, read.clone()))
            });
            read
        }
    };
    let ban = ban?;
    let secs = ban.retry_after_secs(now)?;
    Some(
        ApiError::new(
            ErrorCode::Banned,
            format!("this client is banned for {secs} more seconds after too many requests"),
        )
        .with_retry_after(secs),
    )
}

/// Runs the limiter: `Ok(RateLimit headers)` when admitted, `Err(response)` (429 or 403)
/// when not.
pub async fn admit(
    call: &Call,
    session: &Session,
) -> Result<Vec<(&'static str, String)>, Response> {
    let policy = SubjectPolicy::new(session.tier.limits(), BanPolicy::default())
        .map_err(|e| respond::error(&ApiError::new(ErrorCode::ConfigError, e.to_string()), &[]))?;
    let kv = kv(call).map_err(|e| respond::error(&e, &[]))?;
    let subject = session.subject.clone();
    let key = defense::limit_key(&subject);
    let now = call.now_ms;
    // This isolate's own counts are exact; KV adds what other isolates admitted, so it is
    // merged in at most once a second per subject.
    let due = LOCAL.with(|l| {
        l.borrow()
            .get(&subject)
            .and_then(|e| e.last_read_ms)
            .is_none_or(|at| now >= at + MIN_KV_WRITE_INTERVAL_MS)
    });
    let stored = if due {
        let read = kv
            .get(&key)
            .json::<SubjectState>()
            .await
            .unwrap_or_else(|e| {
                console_error!("limiter read failed: {e}");
                None
            });
        Some(read.unwrap_or_default())
    } else {
        None
    };
    let (outcome, state, flush) = LOCAL.with(|l| {
        let mut map = l.borrow_mut();
        if map.len() > MAX_LOCAL_SUBJECTS {
            // Forget subjects idle for two windows (nothing pending to write).
            let horizon = 2 * policy.window_ms();
            map.retain(|_, e| e.slot.scheduled || e.state.window.window_start_ms + horizon > now);
        }
        let local = map.entry(subject.clone()).or_default();
        let mut state = match &stored {
            Some(stored) => {
                local.last_read_ms = Some(now);
                defense::merge(&local.state, stored, policy.window_ms(), now)
            }
            None => local.state,
        };
        let outcome = policy.decide(&mut state, now, 1);
        local.state = state;
        let flush = local.slot.plan(now);
        (outcome, state, flush)
    });
    let ttl = defense::kv_ttl(2 * policy.window_ms() / 1000);
    match flush {
        Flush::Now => call
            .ctx
            .wait_until(write_state(kv.clone(), key.clone(), Some(state), ttl)),
        Flush::After(ms) => {
            let (kv, key, subject) = (kv.clone(), key.clone(), subject.clone());
            call.ctx.wait_until(async move {
                Delay::from(Duration::from_millis(ms)).await;
                let latest = LOCAL.with(|l| {
                    let mut map = l.borrow_mut();
                    map.get_mut(&subject).map(|e| {
                        e.slot.delayed_write_done(Date::now().as_millis());
                        e.state
                    })
                });
                write_state(kv, key, latest, ttl).await;
            });
        }
        Flush::Pending => {}
    }
    let headers = policy.headers(session.tier.as_str(), &outcome);
    match outcome {
        LimitOutcome::Allowed { .. } | LimitOutcome::Metered { .. } => Ok(headers),
        LimitOutcome::Limited { retry_after_ms, .. } => {
            let mut err = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "the {} tier allows {} requests per {} s",
                    session.tier,
                    policy.quota().map(|q| q.limit()).unwrap_or(0),
                    policy.window_ms() / 1000
                ),
            );
            if let Some(ms) = retry_after_ms {
                err.message
                    .push_str(&format!("; retry in {} s", ms.div_ceil(1000)));
            }
            // RateLimit headers already carry Retry-After when waiting helps.
            Err(respond::error(&err, &headers))
        }
        LimitOutcome::Banned {
            until_ms,
            retry_after_ms,
            newly,
        } => {
            let secs = retry_after_ms.div_ceil(1000);
            if newly {
                let record = BanRecord {
                    until_ms,
                    reason: format!("{} attempts in one window", state.window.attempts),
                };
                LOCAL.with(|l| {
                    if let Some(e) = l.borrow_mut().get_mut(&subject) {
                        e.ban = Some((now, Some(record.clone())));
                    }
                });
                let ban_key = defense::ban_key(&subject);
                call.ctx.wait_until(async move {
                    match kv.put(&ban_key, json_text(&record)) {
                        Ok(put) => {
                            if let Err(e) =
                                put.expiration_ttl(defense::kv_ttl(secs)).execute().await
                            {
                                console_error!("ban write failed: {e}");
                            }
                        }
                        Err(e) => console_error!("ban write failed: {e}"),
                    }
                });
            }
            let err = ApiError::new(
                ErrorCode::Banned,
                format!("too many requests: this client is banned for {secs} seconds"),
            )
            .with_retry_after(secs);
            let headers: Vec<_> = headers
                .into_iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("retry-after"))
                .collect();
            Err(respond::error(&err, &headers))
        }
    }
}

async fn write_state(kv: KvStore, key: String, state: Option<SubjectState>, ttl: u64) {
    write_json(kv, key, state, ttl, "limiter").await
}

async fn write_json<T: serde::Serialize>(
    kv: KvStore,
    key: String,
    value: Option<T>,
    ttl: u64,
    what: &str,
) {
    let Some(value) = value else { return };
    match kv.put(&key, json_text(&value)) {
        Ok(put) => {
            if let Err(e) = put.expiration_ttl(ttl).execute().await {
                console_error!("{what} write failed: {e}");
            }
        }
        Err(e) => console_error!("{what} write failed: {e}"),
    }
}

/// KV values are stored as JSON text (what `get().json()` reads back).
fn json_text<T: serde::Serialize>(value: &T) -> String {
    // Plain structs of numbers and strings: serialising them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}
