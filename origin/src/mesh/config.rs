//! `[mesh]`: the origins' own network. Every node (origin or operator) holds a certificate from
//! the mesh CA (`heady-origin mesh ca init`, `mesh issue`); the mesh listener accepts only
//! them (mutual TLS 1.3), and origins call each other through it.

use crate::settings::{invalid, ConfigError, KeyDoc, Ty};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Where the mesh listener listens; unset: no mesh listener.
    pub listen: Option<SocketAddr>,
    /// PEM: the mesh CA's certificate (the only trust anchor, both ways).
    pub ca: Option<PathBuf>,
    /// PEM: this node's certificate from the mesh CA (its server certificate on the mesh
    /// listener and its client certificate when it calls a peer).
    pub cert: Option<PathBuf>,
    /// PEM: that certificate's private key.
    pub key: Option<PathBuf>,
    /// The other origins' mesh listeners (`https://host:port`): told of every account and key
    /// change, so their caches drop it at once even without Redis.
    pub peers: Vec<String>,
    /// Certificate names (their CN) allowed to run operator commands through the mesh
    /// (`heady-origin accounts ... --remote`).
    pub operators: Vec<String>,
    /// Serial numbers (hex, as `mesh issue` prints them) of certificates no longer accepted.
    pub revoked: Vec<String>,
}

impl MeshConfig {
    /// The node's credentials are set (it can call peers, and listen when `listen` is set).
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let set = [
            ("mesh.ca", self.ca.is_some()),
            ("mesh.cert", self.cert.is_some()),
            ("mesh.key", self.key.is_some()),
        ];
        let needed =
            self.listen.is_some() || !self.peers.is_empty() || set.iter().any(|(_, on)| *on);
        if needed {
            if let Some((key, _)) = set.iter().find(|(_, on)| !*on) {
                let why = if self.listen.is_some() {
                    "needed with mesh.listen"
                } else if !self.peers.is_empty() {
                    "needed with mesh.peers"
                } else {
                    "mesh.ca, mesh.cert and mesh.key go together"
                };
                return Err(invalid(key, why));
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            match url::Url::parse(p) {
                Ok(u) if u.scheme() == "https" && u.host().is_some() && u.path() == "/" => {}
                _ => {
                    return Err(invalid(
                        "mesh.peers",
                        format!("entry {} must be https://host:port (got {p:?})", i + 1),
                    ))
                }
            }
        }
        for s in &self.revoked {
            if crate::mesh::ca::normalize_serial(s).is_none() {
                return Err(invalid(
                    "mesh.revoked",
                    format!("not a certificate serial number (hex): {s:?}"),
                ));
            }
        }
        for o in &self.operators {
            if o.is_empty() || o.len() > 64 {
                return Err(invalid(
                    "mesh.operators",
                    format!("not a certificate name: {o:?}"),
                ));
            }
        }
        Ok(())
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("mesh.listen", Ty::Str, "the mesh listener's address (mutual TLS 1.3, X25519MLKEM768 preferred, a client certificate from the mesh CA required); unset: none"),
    KeyDoc::new("mesh.ca", Ty::Str, "PEM file: the mesh CA's certificate (`heady-origin mesh ca init`), the only trust anchor both ways"),
    KeyDoc::new("mesh.cert", Ty::Str, "PEM file: this node's certificate from the mesh CA (`heady-origin mesh issue`): its server certificate on the mesh listener and its client certificate toward peers"),
    KeyDoc::new("mesh.key", Ty::Str, "PEM file: that certificate's private key"),
    KeyDoc::new("mesh.peers", Ty::List, "the other origins' mesh listeners (`https://host:port`), told of every account and key change"),
    KeyDoc::new("mesh.operators", Ty::List, "certificate names allowed to run operator commands through the mesh (`--remote`)"),
    KeyDoc::new("mesh.revoked", Ty::List, "serial numbers (hex) of mesh certificates refused from now on"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_together_and_peers_are_https() {
        MeshConfig::default().validate().unwrap();
        let listen = MeshConfig {
            listen: Some("127.0.0.1:9443".parse().unwrap()),
            ..Default::default()
        };
        assert!(listen
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("mesh.ca:"));
        let full = MeshConfig {
            ca: Some("ca.pem".into()),
            cert: Some("node.pem".into()),
            key: Some("node.key".into()),
            peers: vec!["https://10.0.0.2:9443".into()],
            revoked: vec!["0a:1B".into()],
            ..listen
        };
        full.validate().unwrap();
        let bad = MeshConfig {
            peers: vec!["http://10.0.0.2:9443".into()],
            ..full.clone()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("mesh.peers:"));
        let bad = MeshConfig {
            revoked: vec!["xyz".into()],
            ..full
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("mesh.revoked:"));
    }
}
