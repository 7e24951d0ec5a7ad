//! Response bodies (a whole buffer, or a channel of server-sent event frames) and reading a
//! request body within its limit.

use crate::error::{Error, ErrorCode};
use bytes::Bytes;
use http::header;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Boxed so a response can be a whole buffer or a stream (server-sent events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole-buffer body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body fed by a channel: each message is one frame, the channel's end is the body's.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub fn boxed(rx: mpsc::Receiver<Bytes>) -> Body {
        ChannelBody { rx }.boxed_unsync()
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reads the body up to `limit` bytes: 413 past it, before reading when Content-Length
/// already says so; 408 `request_timeout` when the whole body has not arrived within
/// `timeout` (`http.body_timeout_secs`).
pub async fn read(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Error> {
    let too_large = || {
        Error::new(
            ErrorCode::BodyTooLarge,
            format!("request body exceeds the limit of {limit} bytes (max_body_bytes)"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::bad_request("Content-Length is not a number"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            Error::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s (http.body_timeout_secs)",
                    timeout.as_secs()
                ),
            )
        })?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(Error::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}
