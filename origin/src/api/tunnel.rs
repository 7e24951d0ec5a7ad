//! `POST /api/tunnel/handshake`: the edge's hello in, the origin's welcome out
//! (`application/octet-stream`, `heady_shared::tunnel::handshake`).

use super::{Ctx, Reply};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use std::sync::Arc;

pub async fn handshake(app: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let content_type = c
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    if !content_type.starts_with("application/octet-stream") {
        return Err(Error::new(
            ErrorCode::UnsupportedMediaType,
            format!("a handshake hello is application/octet-stream (got {content_type:?})"),
        ));
    }
    let welcome = app.defense.tunnel_handshake(&c.body).await?;
    Ok(Reply::bytes(200, "application/octet-stream", welcome).header("cache-control", "no-store"))
}
