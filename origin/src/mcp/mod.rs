//! The Model Context Protocol server's domain: JSON-RPC messages, protocol revisions, the
//! sessions (`Mcp-Session-Id`) each bound to the account that opened it, and the tool catalog
//! (names, input schemas, and the REST route each tool calls). The Streamable HTTP transport
//! that serves `/mcp` is `http::mcp`; a tool call runs the REST route's own handler, so
//! account scoping, tier features, quotas and token metering stay in one place.

pub mod jsonrpc;
pub mod session;
pub mod tools;

pub use session::{SessionLimits, Sessions};
pub use tools::Tool;

/// The revisions this server speaks through the `initialize` handshake, newest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The client's offered revision when this server speaks it, else the newest it speaks (the
/// client then decides whether it can go on).
pub fn negotiate(offered: Option<&str>) -> &'static str {
    SUPPORTED_VERSIONS
        .into_iter()
        .find(|v| Some(*v) == offered)
        .unwrap_or(SUPPORTED_VERSIONS[0])
}

/// Is `v` a revision this server speaks (the `MCP-Protocol-Version` header's check)?
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_revision_is_kept_when_spoken_and_the_newest_answers_otherwise() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2025-11-25")), "2025-11-25");
        // Older than we speak, newer than the handshake era, or nonsense: our newest.
        assert_eq!(negotiate(Some("2024-11-05")), "2025-11-25");
        assert_eq!(negotiate(Some("2026-07-28")), "2025-11-25");
        assert_eq!(negotiate(Some("zzz")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
        assert!(is_supported("2025-06-18") && !is_supported("2026-07-28"));
    }
}
