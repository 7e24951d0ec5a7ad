//! `/api/memory/*`: insertVector (single and batch), similaritySearch, getZoneForQuery,
//! getStats, the caller's sessions, and deletion.
//!
//! Every route acts for the caller's account (`Identity::account`): an anonymous caller has
//! no memory and gets 403 `memory_unavailable`. A RESTRICTED operator may search another
//! owner's rows, or every owner's, only by asking (`owner`, `all_owners`), and each such
//! search is logged.

use super::require_json;
use super::{Ctx, Reply};
use crate::app::App;
use crate::defense::Identity;
use crate::error::{parse_json, Error, ErrorCode};
use crate::memory::embedder::EmbedError;
use crate::memory::{id_of, new_key, Doomed, MemoryError, NewRow, Scope};
use crate::rt::blocking;
use base64::Engine as _;
use heady_shared::{AccountId, Classification};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const ROLES: [&str; 4] = ["user", "assistant", "system", "tool"];

/// An embedding as sent: a JSON array of numbers, or a string holding the base64 of its
/// little-endian float32 bytes (what OpenAI's embeddings API returns with
/// `encoding_format: "base64"`, so its output can be stored as it comes).
///
/// Numbers are read straight into `f32` while serde_json parses the body (no `Vec<f64>` in
/// between); the first one outside f32's finite range is remembered for the error message.
#[derive(Debug)]
pub enum EmbeddingInput {
    Floats {
        values: Vec<f32>,
        out_of_range: Option<(usize, f64)>,
    },
    Base64(String),
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an array of numbers, or a base64 string of little-endian float32 values",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(384).min(4096));
                let mut out_of_range = None;
                loop {
                    let i = values.len();
                    let x = match seq.next_element::<f64>() {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(e) => {
                            return Err(serde::de::Error::custom(format_args!(
                                "embedding element {i}: {e}"
                            )))
                        }
                    };
                    let f = x as f32;
                    if !f.is_finite() && out_of_range.is_none() {
                        out_of_range = Some((i, x));
                    }
                    values.push(f);
                }
                Ok(EmbeddingInput::Floats {
                    values,
                    out_of_range,
                })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(EmbeddingInput::Base64(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertRequest {
    pub content: String,
    pub embedding: Option<EmbeddingInput>,
    pub role: Option<String>,
    pub session_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub token_count: Option<u32>,
}

/// One pass over the body: either `items` (the batch form) or the fields of one item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InsertBody {
    items: Option<Vec<InsertRequest>>,
    content: Option<String>,
    embedding: Option<EmbeddingInput>,
    role: Option<String>,
    session_id: Option<String>,
    metadata: Option<serde_json::Value>,
    token_count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    embedding: Option<EmbeddingInput>,
    text: Option<String>,
    top_k: Option<usize>,
    session_id: Option<String>,
    /// An operator's search across every owner's rows.
    all_owners: Option<bool>,
    /// An operator's search of one named owner's rows.
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneRequest {
    text: String,
}

fn embed_error(e: EmbedError) -> Error {
    let code = match e {
        EmbedError::Dimension { .. } => ErrorCode::EmbedderDimension,
        _ => ErrorCode::EmbedderFailed,
    };
    Error::new(code, e.to_string())
}

/// The account whose memory a caller uses: `None` for anonymous callers, who have none.
pub fn memory_owner(identity: &Identity) -> Option<AccountId> {
    identity.account()
}

/// The account the caller acts for; anonymous callers have no memory.
pub fn owner_of(c: &Ctx) -> Result<AccountId, Error> {
    memory_owner(&c.identity).ok_or_else(|| {
        Error::forbidden(
            ErrorCode::MemoryUnavailable,
            "memory belongs to accounts: send an account's API key (Authorization: Bearer hk_...); anonymous callers have no memory",
        )
    })
}

/// A store error as the client sees it: a quota is the caller's to act on, the rest is ours.
fn store_error(what: &str, e: MemoryError) -> Error {
    match e {
        MemoryError::Quota { .. } => Error::forbidden(ErrorCode::QuotaExceeded, e.to_string()),
        e => Error::internal(format!("{what}: {e}")),
    }
}

fn invalid_embedding(message: String) -> Error {
    Error::new(ErrorCode::InvalidEmbedding, message)
}

/// Turns an embedding as sent into the stored `f32`s, then checks it (see `check_embedding`).
pub fn embedding_from_input(
    field: &str,
    input: EmbeddingInput,
    dim: usize,
) -> Result<Vec<f32>, Error> {
    let v = match input {
        EmbeddingInput::Floats {
            out_of_range: Some((i, x)),
            ..
        } => {
            return Err(invalid_embedding(format!(
                "{field}[{i}] is not a finite 32-bit float ({x})"
            )))
        }
        EmbeddingInput::Floats { values, .. } => values,
        EmbeddingInput::Base64(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| invalid_embedding(format!("{field} is not valid base64: {e}")))?;
            if bytes.len() % 4 != 0 {
                return Err(invalid_embedding(format!(
                    "{field} decodes to {} bytes, not a whole number of little-endian float32 values",
                    bytes.len()
                )));
            }
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
    };
    check_embedding(field, v, dim)
}

/// Checks an embedding: right length, every value finite, not all zero.
pub fn check_embedding(field: &str, v: Vec<f32>, dim: usize) -> Result<Vec<f32>, Error> {
    if v.len() != dim {
        return Err(Error::new(
            ErrorCode::WrongDimension,
            format!(
                "{field} has {} values; this database stores {dim}-dimensional embeddings",
                v.len()
            ),
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(invalid_embedding(format!(
            "{field}[{i}] is not a finite 32-bit float ({})",
            v[i]
        )));
    }
    if v.iter().all(|x| *x == 0.0) {
        return Err(invalid_embedding(format!(
            "{field} is all zeros; cosine similarity is undefined for it"
        )));
    }
    Ok(v)
}

fn check_session(field: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(Error::bad_request(format!(
            "{field} must be 1-128 characters without control characters"
        )));
    }
    Ok(())
}

/// Validates one item into a row; its embedding is filled later when it was not given.
fn validate_item(
    prefix: &str,
    it: InsertRequest,
    dim: usize,
    now: i64,
    owner: &AccountId,
) -> Result<(NewRow, bool), Error> {
    if it.content.trim().is_empty() {
        return Err(Error::bad_request(format!(
            "{prefix}content must not be empty"
        )));
    }
    let role = it.role.unwrap_or_else(|| "user".into());
    if !ROLES.contains(&role.as_str()) {
        return Err(Error::bad_request(format!(
            "{prefix}role must be one of user, assistant, system, tool (got {role:?})"
        )));
    }
    if let Some(s) = &it.session_id {
        check_session(&format!("{prefix}session_id"), s)?;
    }
    let metadata = match it.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        Some(_) => {
            return Err(Error::bad_request(format!(
                "{prefix}metadata must be a JSON object"
            )))
        }
    };
    let token_count = i32::try_from(it.token_count.unwrap_or(0))
        .map_err(|_| Error::bad_request(format!("{prefix}token_count is too large")))?;
    let (embedding, given) = match it.embedding {
        Some(e) => (
            embedding_from_input(&format!("{prefix}embedding"), e, dim)?,
            true,
        ),
        None => (Vec::new(), false),
    };
    Ok((
        NewRow {
            owner: owner.clone(),
            key: new_key(),
            ts: now,
            role,
            content: it.content,
            embedding,
            token_count,
            session_id: it.session_id,
            metadata,
        },
        given,
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Bodies up to this size are parsed on the async worker (tens of microseconds at most).
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// A validated insert request: rows to store, and which of them still need an embedding.
struct ParsedInsert {
    rows: Vec<NewRow>,
    to_embed: Vec<usize>,
    is_batch: bool,
}

/// Parses and validates an insert body. A bulk body is megabytes of numbers, so this runs on
/// a blocking thread rather than stalling the async workers.
fn parse_insert(
    body: &[u8],
    dim: usize,
    max_batch: usize,
    owner: &AccountId,
) -> Result<ParsedInsert, Error> {
    let body: InsertBody = parse_json(body)?;
    let is_batch = body.items.is_some();
    let (items, prefixes): (Vec<InsertRequest>, Vec<String>) = match body.items {
        Some(items) => {
            if body.content.is_some()
                || body.embedding.is_some()
                || body.role.is_some()
                || body.session_id.is_some()
                || body.metadata.is_some()
                || body.token_count.is_some()
            {
                return Err(Error::bad_request(
                    "give either items (a batch) or the fields of one item, not both",
                ));
            }
            if items.is_empty() {
                return Err(Error::bad_request("items must not be empty"));
            }
            if items.len() > max_batch {
                return Err(Error::new(
                    ErrorCode::BatchTooLarge,
                    format!(
                        "items has {} entries; the limit is {max_batch} (memory.max_batch)",
                        items.len(),
                    ),
                ));
            }
            let n = items.len();
            (items, (0..n).map(|i| format!("items[{i}].")).collect())
        }
        None => {
            let content = body
                .content
                .ok_or_else(|| Error::bad_request("invalid request: missing field `content`"))?;
            let one = InsertRequest {
                content,
                embedding: body.embedding,
                role: body.role,
                session_id: body.session_id,
                metadata: body.metadata,
                token_count: body.token_count,
            };
            (vec![one], vec![String::new()])
        }
    };
    let now = now_ms();
    let mut rows = Vec::with_capacity(items.len());
    let mut to_embed = Vec::new();
    for (i, (it, prefix)) in items.into_iter().zip(prefixes).enumerate() {
        let (row, given) = validate_item(&prefix, it, dim, now, owner)?;
        if !given {
            to_embed.push(i);
        }
        rows.push(row);
    }
    Ok(ParsedInsert {
        rows,
        to_embed,
        is_batch,
    })
}

/// `POST /api/memory/vectors`: one item -> `{id}`, or `{items:[...]}` -> `{ids:[...]}`.
/// All-or-nothing: any invalid item rejects the whole request and nothing is stored.
pub async fn insert(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let owner = owner_of(&c)?;
    require_json(&c)?;
    let (dim, max_batch) = (s.memory.dim(), s.config.memory.max_batch);
    // A chat turn is parsed in place; only a bulk body is worth a trip to a blocking thread.
    let parsed = if c.body.len() <= INLINE_PARSE_BYTES {
        parse_insert(&c.body, dim, max_batch, &owner)?
    } else {
        let body = c.body.clone();
        let owner = owner.clone();
        blocking(move || parse_insert(&body, dim, max_batch, &owner)).await??
    };
    let ParsedInsert {
        mut rows,
        to_embed,
        is_batch,
    } = parsed;
    if !to_embed.is_empty() {
        let texts: Vec<String> = to_embed.iter().map(|&i| rows[i].content.clone()).collect();
        let vectors = s.embedder.embed(&texts).await.map_err(embed_error)?;
        for (&i, v) in to_embed.iter().zip(vectors) {
            if v.iter().all(|x| *x == 0.0) {
                let prefix = if is_batch {
                    format!("items[{i}].")
                } else {
                    String::new()
                };
                return Err(Error::new(
                    ErrorCode::InvalidEmbedding,
                    format!(
                        "{prefix}content has nothing the {} embedder can embed; send an embedding",
                        s.embedder.name()
                    ),
                ));
            }
            rows[i].embedding = v;
        }
    }
    let ids: Vec<String> = rows.iter().map(|r| id_of(r.key)).collect();
    let memory = s.memory.clone();
    let quota = s.config.memory.max_rows.of(c.identity.tier);
    blocking(move || memory.insert_blocking(&rows, quota))
        .await?
        .map_err(|e| store_error("could not store", e))?;
    if is_batch {
        Reply::ok(&json!({ "ids": ids }))
    } else {
        Reply::ok(&json!({ "id": ids[0] }))
    }
}

/// Whose rows a search reads: the caller's, or (a RESTRICTED operator asking for it) one named
/// owner's or everyone's.
enum Searched {
    Own(AccountId),
    Named(AccountId),
    All,
}

fn searched(c: &Ctx, all_owners: bool, owner: Option<String>) -> Result<Searched, Error> {
    if !all_owners && owner.is_none() {
        return Ok(Searched::Own(owner_of(c)?));
    }
    if !c.identity.clearance.permits(Classification::Restricted) {
        return Err(Error::forbidden(
            ErrorCode::InsufficientClearance,
            format!(
                "searching other accounts' memory (all_owners, owner) is RESTRICTED; the caller's clearance is {}",
                c.identity.clearance
            ),
        ));
    }
    match (all_owners, owner) {
        (true, Some(_)) => Err(Error::bad_request(
            "give either all_owners or owner, not both",
        )),
        (_, Some(o)) => AccountId::parse(&o)
            .map(Searched::Named)
            .map_err(|e| Error::bad_request(format!("owner: {e}"))),
        _ => Ok(Searched::All),
    }
}

/// `POST /api/memory/search`: `{embedding | text, top_k, session_id?}` -> ranked results
/// among the caller's rows (an operator: `owner` or `all_owners`).
pub async fn search(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    require_json(&c)?;
    let req: SearchRequest = parse_json(&c.body)?;
    let target = searched(&c, req.all_owners.unwrap_or(false), req.owner)?;
    let max = s.config.memory.max_top_k;
    let top_k = req.top_k.unwrap_or(10);
    if top_k == 0 || top_k > max {
        return Err(Error::bad_request(format!(
            "top_k must be between 1 and {max} (got {top_k})"
        )));
    }
    if let Some(sid) = &req.session_id {
        check_session("session_id", sid)?;
    }
    let query = match (req.embedding, req.text) {
        (Some(e), None) => embedding_from_input("embedding", e, s.memory.dim())?,
        (None, Some(t)) => {
            if t.trim().is_empty() {
                return Err(Error::bad_request("text must not be empty"));
            }
            let v = s
                .embedder
                .embed(std::slice::from_ref(&t))
                .await
                .map_err(embed_error)?;
            let v = v.into_iter().next().unwrap_or_default();
            if v.iter().all(|x| *x == 0.0) {
                return Err(Error::new(
                    ErrorCode::InvalidEmbedding,
                    "text has nothing to embed",
                ));
            }
            v
        }
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                "give either embedding or text, not both",
            ))
        }
        (None, None) => return Err(Error::bad_request("give embedding or text")),
    };
    match &target {
        Searched::Own(_) => {}
        Searched::Named(o) => {
            tracing::info!(request_id = %c.request_id, key_id = c.identity.key_id.as_deref().unwrap_or("-"), subject = %c.identity.subject, owner = %o, "operator memory search of another owner")
        }
        Searched::All => {
            tracing::info!(request_id = %c.request_id, key_id = c.identity.key_id.as_deref().unwrap_or("-"), subject = %c.identity.subject, "operator memory search across all owners")
        }
    }
    let memory = s.memory.clone();
    let session = req.session_id;
    let (results, path) = blocking(move || {
        let scope = match &target {
            Searched::Own(o) | Searched::Named(o) => Scope::Owner(o),
            Searched::All => Scope::AllOwners,
        };
        memory.search_blocking(&scope, &query, top_k, session.as_deref())
    })
    .await?
    .map_err(|e| Error::internal(format!("search failed: {e}")))?;
    Reply::ok(&json!({ "results": results, "search": path }))
}

/// `POST /api/memory/zone`: `{text}` -> `{zone, coordinates}`.
/// Reads and stores no rows, so it needs no account.
pub async fn zone(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    require_json(&c)?;
    let req: ZoneRequest = parse_json(&c.body)?;
    if req.text.trim().is_empty() {
        return Err(Error::bad_request("text must not be empty"));
    }
    let v = s
        .embedder
        .embed(std::slice::from_ref(&req.text))
        .await
        .map_err(embed_error)?;
    let v = v.into_iter().next().unwrap_or_default();
    let z = heady_shared::zone::zone_of(&v).map_err(|e| Error::bad_request(e.to_string()))?;
    Reply::ok(&z)
}

/// `GET /api/memory/stats`: the caller's rows and sessions, and the index's state.
pub async fn stats(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let owner = owner_of(&c)?;
    let memory = s.memory.clone();
    let stats = blocking(move || memory.stats_blocking(&owner))
        .await?
        .map_err(|e| Error::internal(format!("stats failed: {e}")))?;
    let mut v = serde_json::to_value(&stats).map_err(|e| Error::internal(e.to_string()))?;
    v["embedder"] = json!(s.embedder.name());
    // The index holds every account's rows: its size would tell a caller how much others store.
    if !c.identity.clearance.permits(Classification::Restricted) {
        if let Some(index) = v.get_mut("index").and_then(|i| i.as_object_mut()) {
            index.remove("size");
            index.remove("memory_bytes");
        }
    }
    Reply::ok(&v)
}

/// `GET /api/memory/sessions`: the caller's sessions with row counts and first and last times.
pub async fn sessions(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let owner = owner_of(&c)?;
    let memory = s.memory.clone();
    let sessions = blocking(move || memory.sessions_blocking(&owner))
        .await?
        .map_err(|e| Error::internal(format!("listing sessions failed: {e}")))?;
    Reply::ok(&json!({ "sessions": sessions }))
}

/// `DELETE /api/memory/sessions/{id}`: every row of one of the caller's sessions.
pub async fn delete_session(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let owner = owner_of(&c)?;
    let raw = c
        .path
        .strip_prefix(SESSIONS_PREFIX)
        .unwrap_or_default()
        .to_string();
    let session = percent_encoding::percent_decode_str(&raw)
        .decode_utf8()
        .map_err(|_| Error::bad_request("the session id in the path is not UTF-8"))?
        .into_owned();
    check_session("session id", &session)?;
    let memory = s.memory.clone();
    let sid = session.clone();
    let deleted = blocking(move || memory.delete_blocking(&owner, Doomed::Session(&sid)))
        .await?
        .map_err(|e| store_error("deleting the session failed", e))?;
    if deleted == 0 {
        return Err(Error::not_found(format!(
            "no session {session:?} in this account's memory"
        )));
    }
    Reply::ok(&json!({ "session_id": session, "deleted": deleted }))
}

/// `DELETE /api/memory?confirm=true`: every row of the caller's account.
pub async fn delete_all(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let owner = owner_of(&c)?;
    let confirmed = c
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "confirm=true"));
    if !confirmed {
        return Err(Error::bad_request(
            "deleting all of the account's memory needs ?confirm=true",
        ));
    }
    let memory = s.memory.clone();
    let o = owner.clone();
    let deleted = blocking(move || memory.delete_blocking(&o, Doomed::All))
        .await?
        .map_err(|e| store_error("deleting memory failed", e))?;
    tracing::info!(request_id = %c.request_id, owner = %owner, rows = deleted, "memory of an account deleted at its request");
    Reply::ok(&json!({ "deleted": deleted }))
}

/// The path under which `DELETE /api/memory/sessions/{id}` names a session.
pub const SESSIONS_PREFIX: &str = "/api/memory/sessions/";
