//! A fake of the parts of Stripe's API billing uses, on 127.0.0.1, speaking its wire format:
//! form-encoded requests with bracketed keys, `Authorization: Bearer <secret key>`,
//! `Idempotency-Key` (a repeated key with the same parameters replays the first answer with
//! `Idempotent-Replayed: true`; with other parameters it is a 400 `idempotency_error`), its
//! JSON objects (`customer`, `checkout.session`, `billing_portal.session`,
//! `billing.meter_event`) and its error object `{"error":{"type","message","code","param"}}`.
//! It records every request so tests can assert the fields and headers that were sent, and
//! can be told to fail the next requests. Plus what Stripe sends the other way: events, and
//! their `Stripe-Signature` (computed here from the documented scheme, independently of the
//! daemon's code).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body as sent.
    pub raw: String,
    /// The form fields, decoded, in order.
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    customers: BTreeMap<String, Value>,
    /// identifier -> the meter event (counted once, as Stripe deduplicates identifiers).
    meter_events: BTreeMap<String, Value>,
    /// key -> (method + path + body, status, answer)
    idempotent: HashMap<String, (String, u16, Value)>,
    /// Answers to give instead of the next requests' (status, error body).
    failures: VecDeque<(u16, Value)>,
    next: u64,
}

pub struct FakeStripe {
    /// `http://127.0.0.1:PORT`: what `billing.api_base` is set to.
    pub base_url: String,
    pub key: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

fn reply(status: u16, v: &Value, replayed: bool) -> Response<FakeBody> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", "req_fake");
    if replayed {
        b = b.header("idempotent-replayed", "true");
    }
    b.body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

/// Stripe's error object.
pub fn stripe_error(kind: &str, message: &str, code: Option<&str>, param: Option<&str>) -> Value {
    json!({"error": {
        "type": kind, "message": message, "code": code, "param": param,
        "doc_url": code.map(|c| format!("https://stripe.com/docs/error-codes/{c}")),
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_fake",
    }})
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `metadata[k]=v` fields as an object.
fn nested(form: &[(String, String)], prefix: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in form {
        if let Some(rest) = k.strip_prefix(&format!("{prefix}[")) {
            if let Some(name) = rest.strip_suffix(']').filter(|n| !n.contains('[')) {
                out.insert(name.to_string(), Value::String(v.clone()));
            }
        }
    }
    out
}

impl FakeStripe {
    /// A fake that accepts the secret key `key`.
    pub async fn start(key: &str) -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let (st, k) = (state.clone(), key.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, k) = (st.clone(), k.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, st.clone(), k.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeStripe {
            base_url: format!("http://127.0.0.1:{port}"),
            key: key.to_string(),
            state,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests to `path` (e.g. `/v1/checkout/sessions`).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    pub fn customers(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().customers.clone()
    }

    /// The meter events Stripe would count: one per identifier.
    pub fn meter_events(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .meter_events
            .values()
            .cloned()
            .collect()
    }

    /// A customer made elsewhere (the Dashboard, another integration), with its metadata.
    pub fn add_customer(&self, id: &str, metadata: Value) {
        self.state.lock().unwrap().customers.insert(
            id.to_string(),
            json!({"id": id, "object": "customer", "created": unix_now(), "livemode": false, "metadata": metadata}),
        );
    }

    pub fn delete_customer(&self, id: &str) {
        self.state.lock().unwrap().customers.insert(
            id.to_string(),
            json!({"id": id, "object": "customer", "deleted": true}),
        );
    }

    /// The next request is answered with `status` and Stripe's error object instead (nothing
    /// is done or remembered for its idempotency key, as when Stripe fails before acting).
    pub fn fail_next(&self, status: u16, error: Value) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push_back((status, error));
    }
}

async fn serve(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    key: String,
) -> Result<Response<FakeBody>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let raw = req
        .into_body()
        .collect()
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
        .unwrap_or_default();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        raw: raw.clone(),
        form: form.clone(),
    });
    if headers.get("authorization") != Some(&format!("Bearer {key}")) {
        let shown = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(|k| {
                let tail: String = k
                    .chars()
                    .rev()
                    .take(4)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!(
                    "{}{}{tail}",
                    &k[..k.len().min(8)],
                    "*".repeat(k.len().saturating_sub(12))
                )
            })
            .unwrap_or_default();
        return Ok(reply(
            401,
            &stripe_error(
                "invalid_request_error",
                &format!("Invalid API Key provided: {shown}"),
                Some("api_key_invalid"),
                None,
            ),
            false,
        ));
    }
    if let Some((status, error)) = st.failures.pop_front() {
        return Ok(reply(status, &error, false));
    }
    if method == "POST"
        && headers.get("content-type").map(String::as_str)
            != Some("application/x-www-form-urlencoded")
    {
        return Ok(reply(
            400,
            &stripe_error(
                "invalid_request_error",
                "Invalid request: bodies must be application/x-www-form-urlencoded",
                None,
                None,
            ),
            false,
        ));
    }
    let fingerprint = format!("{method} {path} {raw}");
    let idem = headers.get("idempotency-key").cloned();
    if let Some(k) = &idem {
        if let Some((seen, status, answer)) = st.idempotent.get(k) {
            if *seen == fingerprint {
                return Ok(reply(*status, answer, true));
            }
            return Ok(reply(
                400,
                &stripe_error(
                    "idempotency_error",
                    &format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."),
                    None,
                    None,
                ),
                false,
            ));
        }
    }
    let (status, answer) = act(&mut st, &method, &path, &form);
    if let Some(k) = idem {
        st.idempotent
            .insert(k, (fingerprint, status, answer.clone()));
    }
    Ok(reply(status, &answer, false))
}

fn missing(param: &str) -> (u16, Value) {
    (
        400,
        stripe_error(
            "invalid_request_error",
            &format!("Missing required param: {param}."),
            Some("parameter_missing"),
            Some(param),
        ),
    )
}

fn no_such_customer(id: &str, param: &str) -> (u16, Value) {
    (
        if param == "id" { 404 } else { 400 },
        stripe_error(
            "invalid_request_error",
            &format!("No such customer: '{id}'"),
            Some("resource_missing"),
            Some(param),
        ),
    )
}

fn act(st: &mut State, method: &str, path: &str, form: &[(String, String)]) -> (u16, Value) {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    st.next += 1;
    let n = st.next;
    let now = unix_now();
    match (method, path) {
        ("POST", "/v1/customers") => {
            let id = format!("cus_fake{n:06}");
            let c = json!({
                "id": id, "object": "customer", "created": now, "livemode": false,
                "description": get("description"), "email": get("email"), "name": get("name"),
                "metadata": nested(form, "metadata"),
            });
            st.customers.insert(id, c.clone());
            (200, c)
        }
        ("GET", p) if p.starts_with("/v1/customers/") => {
            let id = &p["/v1/customers/".len()..];
            match st.customers.get(id) {
                Some(c) => (200, c.clone()),
                None => no_such_customer(id, "id"),
            }
        }
        ("POST", "/v1/checkout/sessions") => {
            let Some(mode) = get("mode") else {
                return missing("mode");
            };
            if !["payment", "setup", "subscription"].contains(&mode.as_str()) {
                return (
                    400,
                    stripe_error(
                        "invalid_request_error",
                        "Invalid mode: must be one of payment, setup, or subscription",
                        None,
                        Some("mode"),
                    ),
                );
            }
            if get("line_items[0][price]").is_none() && mode != "setup" {
                return missing("line_items");
            }
            let Some(success_url) = get("success_url") else {
                return missing("success_url");
            };
            if let Some(c) = get("customer") {
                if !st.customers.contains_key(&c) {
                    return no_such_customer(&c, "customer");
                }
            }
            let id = format!("cs_test_fake{n:06}");
            (
                200,
                json!({
                    "id": id, "object": "checkout.session", "created": now, "livemode": false,
                    "mode": mode, "status": "open", "payment_status": "unpaid",
                    "customer": get("customer"), "client_reference_id": get("client_reference_id"),
                    "success_url": success_url, "cancel_url": get("cancel_url"),
                    "metadata": nested(form, "metadata"), "subscription": null,
                    "url": format!("https://checkout.stripe.com/c/pay/{id}"),
                }),
            )
        }
        ("POST", "/v1/billing_portal/sessions") => {
            let Some(customer) = get("customer") else {
                return missing("customer");
            };
            if !st.customers.contains_key(&customer) {
                return no_such_customer(&customer, "customer");
            }
            let id = format!("bps_fake{n:06}");
            (
                200,
                json!({
                    "id": id, "object": "billing_portal.session", "created": now, "livemode": false,
                    "customer": customer, "return_url": get("return_url"),
                    "url": format!("https://billing.stripe.com/p/session/test_{id}"),
                }),
            )
        }
        ("POST", "/v1/billing/meter_events") => {
            let Some(event_name) = get("event_name") else {
                return missing("event_name");
            };
            let payload = nested(form, "payload");
            if !payload.contains_key("stripe_customer_id") {
                return missing("payload[stripe_customer_id]");
            }
            let value_ok = payload
                .get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| v.parse::<i64>().is_ok());
            if !value_ok {
                return (
                    400,
                    stripe_error(
                        "invalid_request_error",
                        "payload[value] must be an integer",
                        None,
                        Some("payload[value]"),
                    ),
                );
            }
            let timestamp = match get("timestamp") {
                None => now,
                Some(t) => match t.parse::<i64>() {
                    Ok(t) if t >= now - 35 * 86_400 && t <= now + 300 => t,
                    _ => {
                        return (
                            400,
                            stripe_error(
                                "invalid_request_error",
                                "Timestamp must be within the past 35 calendar days and no more than 5 minutes in the future.",
                                None,
                                Some("timestamp"),
                            ),
                        )
                    }
                },
            };
            let identifier = get("identifier").unwrap_or_else(|| format!("fake_identifier_{n}"));
            let event = json!({
                "object": "billing.meter_event", "created": now, "livemode": false,
                "event_name": event_name, "identifier": identifier, "payload": payload,
                "timestamp": timestamp,
            });
            let counted = st
                .meter_events
                .entry(identifier)
                .or_insert(event)
                .clone();
            (200, counted)
        }
        _ => (
            404,
            stripe_error(
                "invalid_request_error",
                &format!("Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."),
                None,
                None,
            ),
        ),
    }
}

/// `Stripe-Signature` for `payload` as Stripe computes it: `t=<t>,v1=<hex HMAC-SHA256 of
/// "t.payload" keyed with the endpoint secret>`.
pub fn signature(payload: &[u8], secret: &str, t: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{t}.").as_bytes());
    m.update(payload);
    let hex: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

pub fn now() -> i64 {
    unix_now()
}

/// An event as Stripe sends it (API version 2024-06-20 shapes).
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": created,
        "livemode": false, "pending_webhooks": 1, "type": kind,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object},
    })
}

/// A subscription object with one item of `price`.
pub fn subscription(id: &str, customer: &str, status: &str, price: &str, period_end: i64) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": status,
        "cancel_at_period_end": false, "collection_method": "charge_automatically",
        "current_period_start": period_end - 30 * 86_400, "current_period_end": period_end,
        "livemode": false, "metadata": {},
        "items": {"object": "list", "has_more": false, "data": [{
            "id": format!("si_{id}"), "object": "subscription_item", "quantity": 1,
            "price": {"id": price, "object": "price", "active": true, "currency": "usd",
                      "recurring": {"interval": "month", "interval_count": 1}, "unit_amount": 2000},
        }]},
    })
}

/// A completed subscription Checkout Session.
pub fn checkout_session(id: &str, account: &str, customer: &str, subscription: &str) -> Value {
    json!({
        "id": id, "object": "checkout.session", "mode": "subscription", "status": "complete",
        "payment_status": "paid", "client_reference_id": account, "customer": customer,
        "subscription": subscription, "livemode": false, "metadata": {"heady_account": account},
    })
}

/// An invoice of `customer`'s subscription.
pub fn invoice(id: &str, customer: &str, subscription: &str, status: &str) -> Value {
    json!({
        "id": id, "object": "invoice", "customer": customer, "subscription": subscription,
        "status": status, "amount_due": 2000, "amount_paid": if status == "paid" { 2000 } else { 0 },
        "currency": "usd", "livemode": false,
    })
}
