//! The error every layer of the origin returns: a code from heady-shared's [`ErrorCode`] (one
//! spelling per meaning, shared with the edge), a message that says what to fix, and what a
//! client needs to act on it. Only `http::respond` turns one into a response.

pub use heady_shared::ErrorCode;

#[derive(Debug, Clone)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds until trying again helps: `error.retry_after` in the body and `Retry-After`.
    pub retry_after: Option<u64>,
    /// A status other than the code's default, where the meaning fits better.
    pub status: Option<u16>,
    /// Response headers that go with the error (RateLimit fields, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
    /// A provider's refusal passed on: its `type`, `param` and `code`.
    pub upstream: Option<Box<Upstream>>,
}

/// The fields of a provider's error object a client keeps (`error.type`, `error.param`,
/// `error.upstream_code`).
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub kind: Option<String>,
    pub param: Option<String>,
    pub code: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after: None,
            status: None,
            headers: Vec::new(),
            upstream: None,
        }
    }
    pub fn with_upstream(mut self, upstream: Upstream) -> Self {
        self.upstream = Some(Box::new(upstream));
        self
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }
    /// 401 with the challenge a client needs to know a key is expected.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, message)
            .with_status(401)
            .with_headers(vec![("www-authenticate", "Bearer realm=\"heady\"".into())])
    }
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, message).with_status(403)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidJson, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// The HTTP status to send.
    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.default_status())
    }

    pub fn is_server_error(&self) -> bool {
        self.status() >= 500
    }

    /// What the client is told. An internal failure's message holds what only the log may
    /// see (DuckDB or Redis error text, a worker thread's panic, an embedder's URL or answer):
    /// the client gets a plain sentence and the request id to quote instead.
    pub fn public_message(&self) -> &str {
        match self.code {
            ErrorCode::Internal => {
                "internal error: the server's log has the details under this request_id"
            }
            ErrorCode::Unavailable => {
                "a service this request needs is unavailable: the server's log has the details under this request_id"
            }
            ErrorCode::EmbedderFailed => {
                "the embedder failed: the server's log has the details under this request_id"
            }
            _ => self.message.as_str(),
        }
    }

    /// `{"error":{"code":..,"message":..,"retry_after"?:..,"request_id"?:..}}`, as heady-shared
    /// defines it, with the public message.
    pub fn body(&self, request_id: Option<&str>) -> heady_shared::ErrorBody {
        let mut error = heady_shared::ApiError::new(self.code, self.public_message());
        error.retry_after = self.retry_after;
        error.request_id = request_id.map(str::to_string);
        if let Some(u) = &self.upstream {
            error.kind = u.kind.clone();
            error.param = u.param.clone();
            error.upstream_code = u.code.clone();
        }
        heady_shared::ErrorBody { error }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// A body sent with a Content-Type must say JSON (`application/json`, any parameters); none
/// is taken as JSON.
pub fn require_json_content_type(headers: &http::HeaderMap) -> Result<()> {
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(Error::new(
                ErrorCode::UnsupportedMediaType,
                format!("Content-Type must be application/json (got {ct:?})"),
            ));
        }
    }
    Ok(())
}

/// Parses a JSON body into `T`, mapping serde's message (which names the field, line and
/// column) into a 400 the client can act on.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.is_empty() {
        return Err(Error::invalid_json(
            "request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::invalid_json(format!("malformed JSON: {e}"))
        } else {
            Error::bad_request(format!("invalid request: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_code_unless_overridden() {
        assert_eq!(Error::new(ErrorCode::RateLimited, "x").status(), 429);
        assert_eq!(
            Error::new(ErrorCode::UnknownAction, "x")
                .with_status(400)
                .status(),
            400
        );
        assert!(Error::internal("x").is_server_error());
        let e = Error::new(ErrorCode::Overloaded, "busy").with_retry_after(5);
        let body = serde_json::to_value(e.body(None)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "overloaded", "message": "busy", "retry_after": 5}})
        );
    }

    #[test]
    fn internal_text_stays_out_of_the_body() {
        let e = Error::internal("IO Error: could not open /var/lib/heady/heady.duckdb");
        let body = serde_json::to_value(e.body(Some("req-1"))).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(body["error"]["request_id"], "req-1");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            !msg.contains("duckdb") && msg.contains("request_id"),
            "{msg}"
        );
        let e = Error::new(
            ErrorCode::EmbedderFailed,
            "embedder openai could not be reached: error sending request for url (http://10.0.0.7:11434/v1/embeddings)",
        );
        assert!(!e.public_message().contains("10.0.0.7"));
        // What a client can act on stays.
        let e = Error::bad_request("\"top_k\" must be 1 to 100");
        assert_eq!(e.public_message(), e.message);
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert_eq!(
            parse_json::<T>(b"").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_json::<T>(b"{").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        let e = parse_json::<T>(br#"{"a":"x"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }
}
