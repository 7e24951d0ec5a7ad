//! `[defense.tunnel]`: this origin's tunnel identity, the edge identities it pins, the session
//! lifetime and the ticket key. Checked at load; `TunnelSessions::new` parses them once more
//! into keys.

use crate::settings::{in_range, invalid, ConfigError, KeyDoc, Secret, Ty};
use heady_shared::tunnel::{Fingerprint, Identity, DEFAULT_SESSION_SECS};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// This origin's private identity (`heady-origin tunnel identity new --role origin`).
    pub identity: Option<Secret>,
    /// Fingerprints (`htid1:...`) of the edge identities whose handshakes are answered; two
    /// during a rotation.
    pub edge_identities: Vec<String>,
    /// How long a session lasts.
    pub session_secs: u64,
    /// 64 hex digits every origin shares, sealing session tickets; unset: derived from
    /// `identity`, so origins sharing that identity share tickets.
    pub ticket_key: Option<Secret>,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            identity: None,
            edge_identities: Vec::new(),
            session_secs: DEFAULT_SESSION_SECS,
            ticket_key: None,
        }
    }
}

impl TunnelConfig {
    /// Sessions can be opened here: an identity and at least one pinned edge identity.
    pub fn configured(&self) -> bool {
        self.identity.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.identity {
            Identity::from_secret_text(id.expose()).map_err(|_| {
                invalid(
                    "defense.tunnel.identity",
                    "not a private tunnel identity (heady-tunnel-identity-v1:<128 hex digits>, made by `heady-origin tunnel identity new`); the value is not shown",
                )
            })?;
            if self.edge_identities.is_empty() {
                return Err(invalid(
                    "defense.tunnel.edge_identities",
                    "empty: pin the edge's identity fingerprint (htid1:...), or no handshake can succeed",
                ));
            }
        } else if !self.edge_identities.is_empty() {
            return Err(invalid(
                "defense.tunnel.identity",
                "missing: edge identities are pinned but this origin has no identity to answer their handshakes with",
            ));
        }
        for fp in &self.edge_identities {
            fp.parse::<Fingerprint>()
                .map_err(|e| invalid("defense.tunnel.edge_identities", e.to_string()))?;
        }
        in_range("defense.tunnel.session_secs", self.session_secs, 2, 86_400)?;
        if let Some(k) = &self.ticket_key {
            if ticket_key_bytes(k).is_none() {
                return Err(invalid(
                    "defense.tunnel.ticket_key",
                    "must be 64 hex digits (e.g. `openssl rand -hex 32`); the value is not shown",
                ));
            }
        }
        Ok(())
    }
}

/// The 32 bytes of a `ticket_key`.
pub fn ticket_key_bytes(key: &Secret) -> Option<[u8; 32]> {
    let t = key.expose().trim();
    heady_shared::wire::hex_decode(t)
        .filter(|_| t.len() == 64)
        .and_then(|b| b.try_into().ok())
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("defense.tunnel.identity", Ty::Str, "this origin's private tunnel identity (ML-DSA-65 + Ed25519; `heady-origin tunnel identity new --role origin`); give it as a credential or `HEADY_TUNNEL_IDENTITY_FILE`; never printed")
        .aliases(&["HEADY_TUNNEL_IDENTITY"]),
    KeyDoc::new("defense.tunnel.edge_identities", Ty::List, "fingerprints (`htid1:...`) of the edge identities whose handshakes this origin answers; two during a rotation")
        .aliases(&["HEADY_TUNNEL_EDGE_IDENTITIES"]),
    KeyDoc::new("defense.tunnel.session_secs", Ty::Int, "how long a tunnel session lasts (2-86400); the edge opens the next one before it ends"),
    KeyDoc::new("defense.tunnel.ticket_key", Ty::Str, "64 hex digits shared by every origin, sealing session tickets; unset: derived from `identity` (origins sharing the identity share sessions); never printed")
        .aliases(&["HEADY_TUNNEL_TICKET_KEY"]),
];
