//! A client for the parts of Stripe's API billing uses, speaking its wire format: requests are
//! `application/x-www-form-urlencoded` with nested keys spelled as Stripe's libraries spell
//! them (`metadata[heady_account]`, `line_items[0][price]`), authenticated with
//! `Authorization: Bearer <secret key>`; every POST carries an `Idempotency-Key`, so a retry
//! (of a failed connection, a 409, 429 or 5xx, unless Stripe says `Stripe-Should-Retry:
//! false`) never creates a second object. Stripe's errors
//! (`{"error":{"type","message","code","param"}}`) become [`StripeError::Api`]; nothing this
//! module returns or logs holds the secret key.

use crate::error::{Error, ErrorCode};
use crate::metrics::StripeLabels;
use crate::settings::Secret;
use heady_shared::AccountId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Retries after the first attempt (Stripe's libraries default to 2 as well).
const MAX_RETRIES: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A form body, fields in order. Nested parameters are written with brackets, as Stripe
/// expects: `metadata[heady_account]`, `line_items[0][price]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn new() -> Form {
        Form::default()
    }

    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Form {
        self.0.push((key.into(), value.into()));
        self
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.0
    }

    /// `application/x-www-form-urlencoded`, with brackets left as they are, as Stripe's
    /// libraries send them (`line_items[0][price]=price_1`).
    pub fn encode(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            s.append_pair(k, v);
        }
        s.finish().replace("%5B", "[").replace("%5D", "]")
    }
}

/// A Stripe customer (what billing reads of one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A deleted customer is answered as `{"id", "object": "customer", "deleted": true}`.
    #[serde(default)]
    pub deleted: bool,
}

/// A Checkout Session: where to send the customer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: Option<String>,
}

/// A Billing Portal session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortalSession {
    pub id: String,
    pub url: String,
}

/// A meter event as Stripe acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MeterEvent {
    pub event_name: String,
    pub identifier: String,
    pub timestamp: i64,
    #[serde(default)]
    pub payload: BTreeMap<String, String>,
}

/// What a subscription Checkout needs.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    pub customer: &'a str,
    pub price: &'a str,
    pub account: &'a AccountId,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with its error object.
    #[error("Stripe answered {status}: {kind}: {message}{}", detail(.code, .param))]
    Api {
        status: u16,
        /// Stripe's `type`: `invalid_request_error`, `card_error`, `api_error`, ...
        kind: String,
        message: String,
        code: Option<String>,
        param: Option<String>,
    },
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    #[error("Stripe's answer could not be read: {0}")]
    Malformed(String),
}

fn detail(code: &Option<String>, param: &Option<String>) -> String {
    match (code, param) {
        (Some(c), Some(p)) => format!(" (code {c}, param {p})"),
        (Some(c), None) => format!(" (code {c})"),
        (None, Some(p)) => format!(" (param {p})"),
        (None, None) => String::new(),
    }
}

impl StripeError {
    /// Stripe said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StripeError::Api { status: 404, .. })
    }

    /// 502 `stripe_failed` naming Stripe's error type and message (the key never appears:
    /// messages are scrubbed when the error is made).
    pub fn into_error(self) -> Error {
        Error::new(ErrorCode::StripeFailed, self.to_string())
    }
}

/// Replaces anything shaped like a Stripe secret or restricted key with `<redacted>`.
pub fn scrub(text: &str) -> String {
    const PREFIXES: [&str; 4] = ["sk_live_", "sk_test_", "rk_live_", "rk_test_"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for p in PREFIXES {
            if rest.starts_with(p) {
                let tail = &rest[p.len()..];
                let n = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '*'))
                    .unwrap_or(tail.len());
                out.push_str("<redacted>");
                rest = &tail[n..];
                continue 'outer;
            }
        }
        let ch = rest.chars().next().unwrap_or(' ');
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

fn clip(text: &str) -> String {
    let t: String = text.chars().take(500).collect();
    scrub(&t)
}

/// `{"error":{"type","message","code","param"}}`, or what there is of it.
fn api_error(status: u16, body: &[u8]) -> StripeError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        param: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => StripeError::Api {
            status,
            kind: clip(error.kind.as_deref().unwrap_or("api_error")),
            message: clip(error.message.as_deref().unwrap_or("(no message)")),
            code: error.code.map(|c| clip(&c)),
            param: error.param.map(|p| clip(&p)),
        },
        Err(_) => StripeError::Api {
            status,
            kind: "api_error".into(),
            message: clip(&format!(
                "an answer that is not Stripe's error JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            code: None,
            param: None,
        },
    }
}

/// Ids Stripe makes (`cus_...`): safe to put in a path.
fn check_id(what: &str, id: &str) -> Result<(), StripeError> {
    if id.is_empty()
        || id.len() > 255
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(StripeError::Malformed(format!(
            "{what} {:?} is not a Stripe id",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: Secret,
    calls: Family<StripeLabels, Counter>,
    backoff: Duration,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("base", &self.base)
            .field("key", &self.key)
            .finish()
    }
}

impl StripeClient {
    pub fn new(
        base: &str,
        key: Secret,
        timeout: Duration,
        calls: Family<StripeLabels, Counter>,
    ) -> anyhow::Result<StripeClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("heady-origin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("billing: HTTP client: {e}"))?;
        Ok(StripeClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            calls,
            backoff: FIRST_BACKOFF,
        })
    }

    /// `POST /v1/customers`: a customer whose metadata names the account. The key makes a
    /// repeated call (two checkouts at once, a retry) return the same customer.
    pub async fn create_customer(
        &self,
        account: &AccountId,
        description: &str,
        idempotency_key: &str,
    ) -> Result<Customer, StripeError> {
        let form = Form::new()
            .field("description", description)
            .field("metadata[heady_account]", account.as_str());
        self.post("customers.create", "/v1/customers", &form, idempotency_key)
            .await
    }

    /// `GET /v1/customers/{id}`: its metadata (`heady_account`), or `deleted`.
    pub async fn retrieve_customer(&self, id: &str) -> Result<Customer, StripeError> {
        check_id("customer", id)?;
        self.call(
            "customers.retrieve",
            reqwest::Method::GET,
            &format!("/v1/customers/{id}"),
            None,
            None,
        )
        .await
    }

    /// `POST /v1/checkout/sessions` in subscription mode for one price.
    pub async fn create_checkout_session(
        &self,
        r: &CheckoutRequest<'_>,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let form = Form::new()
            .field("mode", "subscription")
            .field("customer", r.customer)
            .field("client_reference_id", r.account.as_str())
            .field("line_items[0][price]", r.price)
            .field("line_items[0][quantity]", "1")
            .field("success_url", r.success_url)
            .field("cancel_url", r.cancel_url)
            .field("metadata[heady_account]", r.account.as_str())
            .field(
                "subscription_data[metadata][heady_account]",
                r.account.as_str(),
            );
        self.post(
            "checkout.sessions.create",
            "/v1/checkout/sessions",
            &form,
            idempotency_key,
        )
        .await
    }

    /// `POST /v1/billing_portal/sessions`.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<PortalSession, StripeError> {
        let form = Form::new()
            .field("customer", customer)
            .field("return_url", return_url);
        self.post(
            "billing_portal.sessions.create",
            "/v1/billing_portal/sessions",
            &form,
            idempotency_key,
        )
        .await
    }

    /// `POST /v1/billing/meter_events`: `value` units of `event_name` for the customer at
    /// `timestamp` (Unix s). `identifier` is the event's own idempotency (Stripe counts an
    /// identifier once within at least 24 h) and also the request's `Idempotency-Key`.
    pub async fn create_meter_event(
        &self,
        event_name: &str,
        stripe_customer_id: &str,
        value: u64,
        identifier: &str,
        timestamp: i64,
    ) -> Result<MeterEvent, StripeError> {
        let form = Form::new()
            .field("event_name", event_name)
            .field("payload[stripe_customer_id]", stripe_customer_id)
            .field("payload[value]", value.to_string())
            .field("identifier", identifier)
            .field("timestamp", timestamp.to_string());
        self.post(
            "billing.meter_events.create",
            "/v1/billing/meter_events",
            &form,
            &format!("meter-event-{identifier}"),
        )
        .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        call: &'static str,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> Result<T, StripeError> {
        self.call(
            call,
            reqwest::Method::POST,
            path,
            Some(form),
            Some(idempotency_key),
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        call: &'static str,
        method: reqwest::Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let result = self
            .attempts(method, path, form, idempotency_key)
            .await
            .and_then(|body| {
                serde_json::from_slice::<T>(&body)
                    .map_err(|e| StripeError::Malformed(clip(&e.to_string())))
            });
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StripeError::Api { status, .. }) if *status < 500 => "refused",
            Err(StripeError::Api { .. }) => "failed",
            Err(StripeError::Unreachable(_)) => "unreachable",
            Err(StripeError::Malformed(_)) => "malformed",
        };
        self.calls
            .get_or_create(&StripeLabels { call, outcome })
            .inc();
        if let Err(e) = &result {
            tracing::warn!(call, error = %e, "Stripe call failed");
        }
        result
    }

    /// Sends until an answer that is not worth retrying, at most `1 + MAX_RETRIES` times, with
    /// the same idempotency key each time. The body of a 2xx answer.
    async fn attempts(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<bytes::Bytes, StripeError> {
        let url = format!("{}{path}", self.base);
        let body = form.map(Form::encode);
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.expose());
            if let Some(b) = &body {
                req = req
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(b.clone());
            }
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            let (err, retryable) = match req.send().await {
                Err(e) => (
                    StripeError::Unreachable(clip(&transport_error(&e))),
                    // A request that may have been sent is retried only with a key.
                    idempotency_key.is_some() || method == reqwest::Method::GET,
                ),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let should_retry = resp
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    let bytes = resp
                        .bytes()
                        .await
                        .map_err(|e| StripeError::Unreachable(clip(&transport_error(&e))));
                    match bytes {
                        Ok(b) if (200..300).contains(&status) => return Ok(b),
                        Ok(b) => (
                            api_error(status, &b),
                            should_retry.unwrap_or(status == 409 || status == 429 || status >= 500),
                        ),
                        Err(e) => (e, true),
                    }
                }
            };
            if !retryable || attempt >= MAX_RETRIES {
                return Err(err);
            }
            tokio::time::sleep(self.backoff * 2u32.pow(attempt)).await;
            attempt += 1;
        }
    }
}

/// reqwest's error without the URL's query (there is none) or anything else: kind and cause.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_encoded_as_stripe_reads_them() {
        let f = Form::new()
            .field("metadata[heady_account]", "acct_x")
            .field("line_items[0][price]", "price_1")
            .field(
                "success_url",
                "https://a.example/ok?s={CHECKOUT_SESSION_ID}&x=1",
            );
        let text = f.encode();
        assert_eq!(
            text,
            "metadata[heady_account]=acct_x&line_items[0][price]=price_1&success_url=https%3A%2F%2Fa.example%2Fok%3Fs%3D%7BCHECKOUT_SESSION_ID%7D%26x%3D1"
        );
        let back: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back, f.fields());
    }

    #[test]
    fn stripe_errors_are_read_and_keys_scrubbed() {
        let body = br#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_abc123XYZ","code":"api_key_invalid","param":null,"doc_url":"x"}}"#;
        let e = api_error(401, body);
        let text = e.to_string();
        assert_eq!(
            text,
            "Stripe answered 401: invalid_request_error: Invalid API Key provided: <redacted> (code api_key_invalid)"
        );
        let e = api_error(404, br#"{"error":{"type":"invalid_request_error","message":"No such customer: 'cus_1'","param":"id","code":"resource_missing"}}"#);
        assert!(e.is_not_found());
        assert!(e.to_string().ends_with("(code resource_missing, param id)"));
        let e = api_error(502, b"<html>bad gateway</html>");
        assert!(e.to_string().contains("not Stripe's error JSON"), "{e}");
        assert_eq!(
            scrub("a rk_live_9*** b sk_test_x, sk_other"),
            "a <redacted> b <redacted>, sk_other"
        );
        let err = api_error(400, body).into_error();
        assert_eq!((err.code, err.status()), (ErrorCode::StripeFailed, 502));
    }

    #[test]
    fn ids_in_paths_are_checked() {
        assert!(check_id("customer", "cus_N1aZ").is_ok());
        for bad in ["", "cus_1/../x", "cus 1", "cus_1?expand=x"] {
            assert!(check_id("customer", bad).is_err(), "{bad}");
        }
    }
}
