//! Errors as the edge answers them: a status and `{"error":{"code":..,"message":..}}`.

use serde_json::{json, Value};

/// One refused or failed request. `code` is stable for clients; `message` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds; sent as `Retry-After` and, for bans, in the body.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message)
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(secs) = self.retry_after {
            error["retry_after"] = json!(secs);
        }
        json!({ "error": error })
    }
}
