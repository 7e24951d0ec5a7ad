//! `GET /api/account/usage?from=YYYY-MM-DD&to=YYYY-MM-DD[&account=acct_...]`: an account's
//! usage by day and model, with totals. Callers read their own account's; operators
//! (RESTRICTED clearance) read any account's with `account`.

use super::{Ctx, Reply};
use crate::app::App;
use crate::defense::authentication_required;
use crate::error::{Error, ErrorCode};
use crate::usage::{report, UsageError};
use heady_shared::{AccountId, Classification};
use std::sync::Arc;

/// A usage error as the client sees it: bad input 400 naming the parameter; the store's own
/// failures are logged and answered 503 without their text.
pub fn error_of(e: UsageError) -> Error {
    match e {
        UsageError::Invalid { .. } => Error::bad_request(e.to_string()),
        e @ UsageError::Store(_) => {
            tracing::error!(error = %e, "usage store failed");
            Error::unavailable("the usage store is not answering; try again shortly")
        }
    }
}

#[derive(Default)]
struct Query {
    from: Option<String>,
    to: Option<String>,
    account: Option<String>,
}

fn query(text: Option<&str>) -> Result<Query, Error> {
    let mut q = Query::default();
    for (k, v) in url::form_urlencoded::parse(text.unwrap_or("").as_bytes()) {
        let slot = match k.as_ref() {
            "from" => &mut q.from,
            "to" => &mut q.to,
            "account" => &mut q.account,
            other => {
                return Err(Error::bad_request(format!(
                    "{}: not a parameter of this route (it takes from, to and account)",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        if slot.is_some() {
            return Err(Error::bad_request(format!("{k}: given more than once")));
        }
        *slot = Some(v.into_owned());
    }
    Ok(q)
}

/// `GET /api/account/usage`
pub async fn account_usage(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let Some(me) = c.identity.account() else {
        return Err(authentication_required("usage belongs to an account"));
    };
    let q = query(c.query.as_deref())?;
    let account = match q.account.as_deref() {
        None => me,
        Some(text) => {
            let id = AccountId::parse(text).map_err(|e| {
                Error::bad_request(format!(
                    "account: {:?} is not an account id ({e})",
                    text.chars().take(64).collect::<String>()
                ))
            })?;
            if id != me {
                if !c.identity.clearance.permits(Classification::Restricted) {
                    return Err(Error::forbidden(
                        ErrorCode::InsufficientClearance,
                        format!(
                            "reading another account's usage is RESTRICTED; the key's clearance is {}",
                            c.identity.clearance
                        ),
                    ));
                }
                s.defense
                    .accounts
                    .require_account(&id)
                    .await
                    .map_err(super::accounts::error_of)?;
                tracing::info!(
                    request_id = %c.request_id,
                    operator = %c.identity.subject,
                    key = c.identity.key_id.as_deref().unwrap_or("-"),
                    target = %id,
                    "admin API: read usage"
                );
            }
            id
        }
    };
    let today = crate::usage::recorder::day_of(crate::defense::limiter::now_ms());
    let (from, to) = report::range(q.from.as_deref(), q.to.as_deref(), today).map_err(error_of)?;
    // What this origin recorded and has not written yet is part of the answer.
    if let Err(e) = s.usage.flush().await {
        tracing::warn!(error = %e, "usage API: could not write recorded usage first");
    }
    let rows = s
        .usage
        .store
        .daily(&account, from, to)
        .await
        .map_err(error_of)?;
    Reply::ok(&report::report(account.as_str(), from, to, &rows))
}
