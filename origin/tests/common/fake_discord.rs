//! A fake of the parts of Discord's API Heady uses, on 127.0.0.1, speaking its wire format:
//! the OAuth2 code exchange (`POST /oauth2/token`, form-encoded, with the client's id, secret
//! and redirect checked), `GET /users/@me` with the access token, the interaction webhook
//! (`PATCH /webhooks/{app}/{token}/messages/@original`, `POST /webhooks/{app}/{token}`) and
//! command registration (`PUT /applications/{app}/commands`, `Authorization: Bot <token>`),
//! with Discord's error bodies. It records every request, and can be told to fail the next
//! ones (a 429 with `retry_after`, a 5xx). Plus what Discord sends the other way: interactions
//! signed with Ed25519 by PyNaCl (an independent implementation), as Discord signs them.

use super::FakeBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

pub const APPLICATION_ID: &str = "123456789012345678";
pub const CLIENT_SECRET: &str = "fake-client-secret";
pub const BOT_TOKEN: &str = "fake.bot-token";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub raw: String,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.raw).unwrap_or(Value::Null)
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.raw.as_bytes())
            .into_owned()
            .collect()
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// code -> (id, username) of the user who authorized.
    codes: BTreeMap<String, (String, String)>,
    /// access token -> (id, username).
    tokens: BTreeMap<String, (String, String)>,
    failures: VecDeque<(u16, Value)>,
    next: u64,
}

pub struct FakeDiscord {
    /// `http://127.0.0.1:PORT/api/v10`: what `discord.api_base` is set to.
    pub api_base: String,
    pub redirect_uri: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, v: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

fn unauthorized() -> Response<FakeBody> {
    reply(401, &json!({"message": "401: Unauthorized", "code": 0}))
}

impl FakeDiscord {
    /// A fake that accepts the client secret and bot token above, and OAuth2 redirects to
    /// `redirect_uri`.
    pub async fn start(redirect_uri: &str) -> FakeDiscord {
        let state = Arc::new(Mutex::new(State::default()));
        let (st, redirect) = (state.clone(), redirect_uri.to_string());
        let (port, task) =
            super::serve_loopback(move |req| serve(req, st.clone(), redirect.clone())).await;
        FakeDiscord {
            api_base: format!("http://127.0.0.1:{port}/api/v10"),
            redirect_uri: redirect_uri.to_string(),
            state,
            task,
        }
    }

    /// A code Discord would hand the browser after `user` authorized the application.
    pub fn authorize(&self, user_id: &str, username: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let code = format!("code{}x{user_id}", s.next);
        s.codes
            .insert(code.clone(), (user_id.to_string(), username.to_string()));
        code
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, method: &str, path_start: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(path_start))
            .collect()
    }

    /// The webhook messages of an interaction token: (method, content), in order.
    pub fn messages(&self, token: &str) -> Vec<(String, String)> {
        let prefix = format!("/api/v10/webhooks/{APPLICATION_ID}/{token}");
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(&prefix))
            .map(|r| {
                let content = r.json()["content"].as_str().unwrap_or("").to_string();
                (r.method, content)
            })
            .collect()
    }

    /// Waits (up to 20 s) until the token's webhook has had `n` messages.
    pub async fn wait_messages(&self, token: &str, n: usize) -> Vec<(String, String)> {
        for _ in 0..400 {
            let m = self.messages(token);
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "the webhook of {token} got {:?}, not {n} messages",
            self.messages(token)
        );
    }

    /// The next request is answered with `status` and `body` instead.
    pub fn fail_next(&self, status: u16, body: Value) {
        self.state
            .lock()
            .unwrap()
            .failures
            .push_back((status, body));
    }
}

async fn serve(
    req: Request<hyper::body::Incoming>,
    st: Arc<Mutex<State>>,
    redirect: String,
) -> Result<Response<FakeBody>, Infallible> {
    let (method, path, headers, raw) = super::read_request(req).await;
    let rec = Recorded {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        raw,
    };
    let mut s = st.lock().unwrap();
    s.requests.push(rec.clone());
    if let Some((status, body)) = s.failures.pop_front() {
        return Ok(reply(status, &body));
    }
    let Some(rest) = path.strip_prefix("/api/v10") else {
        return Ok(reply(404, &json!({"message": "404: Not Found", "code": 0})));
    };
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let answer = match (method.as_str(), parts.as_slice()) {
        ("POST", ["oauth2", "token"]) => {
            let form = rec.form();
            let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
            if field("client_id") != APPLICATION_ID || field("client_secret") != CLIENT_SECRET {
                reply(401, &json!({"error": "invalid_client"}))
            } else if field("grant_type") != "authorization_code"
                || field("redirect_uri") != redirect
            {
                reply(
                    400,
                    &json!({"error": "invalid_request", "error_description": "Invalid \"redirect_uri\" in request."}),
                )
            } else {
                match s.codes.remove(field("code")) {
                    Some(user) => {
                        s.next += 1;
                        let token = format!("access{}", s.next);
                        s.tokens.insert(token.clone(), user);
                        reply(
                            200,
                            &json!({"access_token": token, "token_type": "Bearer", "expires_in": 604800, "refresh_token": "refresh", "scope": "identify"}),
                        )
                    }
                    None => reply(
                        400,
                        &json!({"error": "invalid_grant", "error_description": "Invalid \"code\" in request."}),
                    ),
                }
            }
        }
        ("GET", ["users", "@me"]) => {
            let token = headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("");
            match s.tokens.get(token) {
                Some((id, name)) => reply(
                    200,
                    &json!({"id": id, "username": name, "global_name": null, "discriminator": "0", "avatar": null}),
                ),
                None => unauthorized(),
            }
        }
        ("PATCH", ["webhooks", app, _token, "messages", "@original"])
        | ("POST", ["webhooks", app, _token]) => {
            if *app != APPLICATION_ID {
                reply(404, &json!({"message": "Unknown Webhook", "code": 10015}))
            } else {
                s.next += 1;
                let content = rec.json()["content"].clone();
                reply(
                    200,
                    &json!({"id": format!("{}", 900 + s.next), "type": 0, "content": content}),
                )
            }
        }
        ("PUT", ["applications", app, "commands"])
        | ("PUT", ["applications", app, "guilds", _, "commands"]) => {
            if headers.get("authorization").map(String::as_str) != Some(&format!("Bot {BOT_TOKEN}"))
            {
                unauthorized()
            } else if *app != APPLICATION_ID {
                reply(
                    404,
                    &json!({"message": "Unknown Application", "code": 10002}),
                )
            } else {
                match rec.json() {
                    Value::Array(cmds) => {
                        let out: Vec<Value> = cmds
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                let mut c = c.clone();
                                c["id"] = json!(format!("1000{i}"));
                                c["application_id"] = json!(APPLICATION_ID);
                                c
                            })
                            .collect();
                        reply(200, &Value::Array(out))
                    }
                    _ => reply(400, &json!({"message": "Invalid Form Body", "code": 50035})),
                }
            }
        }
        _ => reply(404, &json!({"message": "404: Not Found", "code": 0})),
    };
    Ok(answer)
}

/// Signs like Discord: Ed25519 over the timestamp and the body, by PyNaCl (not the code under
/// test). The key is made from `seed` (32 bytes, hex).
pub struct Signer {
    seed: String,
    pub public_key: String,
}

const SIGN_PY: &str = r#"
import sys
from nacl.signing import SigningKey
key = SigningKey(bytes.fromhex(sys.argv[1]))
if sys.argv[2] == "public":
    print(key.verify_key.encode().hex())
else:
    body = sys.stdin.buffer.read()
    print(key.sign(sys.argv[2].encode() + body).signature.hex())
"#;

fn python_nacl(args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(super::python())
        .arg("-c")
        .arg(SIGN_PY)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python with PyNaCl (deploy/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyNaCl signing failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Signer {
    pub fn new(seed_byte: u8) -> Signer {
        let seed = format!("{seed_byte:02x}").repeat(32);
        let public_key = python_nacl(&[&seed, "public"], b"");
        assert_eq!(public_key.len(), 64);
        Signer { seed, public_key }
    }

    /// The `X-Signature-Ed25519` of `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        python_nacl(&[&self.seed, timestamp], body)
    }
}
