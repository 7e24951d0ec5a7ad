//! Calls into the mesh: an HTTPS client holding this node's certificate and trusting only the
//! mesh CA, used to tell peers of account and key changes (`mesh.peers`) and by the CLI's
//! `--remote` to run an operator command on another origin.

use super::tls::MeshTls;
use crate::accounts::broadcast::Invalidation;
use crate::defense::admin::{AdminOp, AdminReply};
use std::time::Duration;

#[derive(Clone)]
pub struct MeshClient {
    http: reqwest::Client,
}

impl MeshClient {
    pub fn new(tls: &MeshTls, timeout: Duration) -> anyhow::Result<MeshClient> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls.client).clone())
            // Straight to the peer: no proxy from the environment, no redirects (a body must
            // never be re-sent elsewhere), nothing but HTTPS.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("mesh client: {e}"))?;
        Ok(MeshClient { http })
    }

    /// POSTs JSON to `base` + `path`; the status and the body.
    async fn post(
        &self,
        base: &str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(u16, bytes::Bytes), String> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| describe(&url, &e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| describe(&url, &e))?;
        Ok((status, bytes))
    }

    /// Runs an operator command on the origin whose mesh listener is `base`.
    pub async fn admin(&self, base: &str, op: &AdminOp) -> anyhow::Result<AdminReply> {
        let (status, bytes) = self
            .post(base, "/mesh/admin", op)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        // 200: done; 400: the command's own refusal (`AdminReply::Error`). Anything else is
        // the mesh's (403 for a node that is not an operator) and says its status.
        if matches!(status, 200 | 400) {
            if let Ok(reply) = serde_json::from_slice::<AdminReply>(&bytes) {
                return Ok(reply);
            }
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
        anyhow::bail!("{base} answered {status}: {message}")
    }
}

/// The error of a call, with the cause a TLS refusal hides in the chain.
fn describe(url: &str, e: &reqwest::Error) -> String {
    let mut msg = format!("{url}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// The other origins, told of every account and key change.
pub struct Peers {
    client: MeshClient,
    urls: Vec<String>,
}

impl Peers {
    pub fn new(client: MeshClient, urls: Vec<String>) -> Peers {
        Peers { client, urls }
    }

    /// Tells every peer at once; waits for all (each bounded by the client's timeout). A peer
    /// that does not answer is logged: it sees the change within `defense.key_cache_secs`.
    pub async fn tell(&self, inv: &Invalidation) {
        let body = serde_json::json!({ "what": inv.to_string() });
        let calls = self.urls.iter().map(|url| {
            let body = &body;
            async move {
                match self.client.post(url, "/mesh/invalidate", body).await {
                    Ok((200, _)) => {}
                    Ok((status, bytes)) => {
                        tracing::warn!(peer = %url, status, body = %String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>(), what = %inv, "mesh: a peer refused an invalidation");
                    }
                    Err(e) => {
                        tracing::warn!(peer = %url, error = %e, what = %inv, "mesh: could not tell a peer of a change; it sees it within defense.key_cache_secs");
                    }
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }
}

impl crate::accounts::broadcast::Announce for Peers {
    fn announce<'a>(&'a self, inv: &'a Invalidation) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(self.tell(inv))
    }
}
