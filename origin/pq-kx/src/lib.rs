//! The hybrid post-quantum TLS 1.3 key exchange X25519MLKEM768 (IANA group 0x11EC,
//! draft-ietf-tls-ecdhe-mlkem) for rustls, built from ring's X25519 and RustCrypto's ML-KEM-768.
//!
//! rustls ships this group only in its aws-lc-rs provider; this crate gives it to the ring
//! provider so the daemon needs no aws-lc build. [`provider()`] is ring's default provider with
//! the hybrid group first (preferred) and the classical groups after it as the fallback.
#![forbid(unsafe_code)]

mod hybrid;

use rustls::crypto::ring::{default_provider, kx_group};
use rustls::crypto::CryptoProvider;

pub use hybrid::X25519MLKEM768;

/// ring's default provider with key exchange groups X25519MLKEM768, X25519, P-256, P-384, in that
/// order. A client lists them so and also offers a plain X25519 share in its first ClientHello
/// (the hybrid share's X25519 half), so a classical-only server needs no HelloRetryRequest. A
/// rustls 0.23 server takes the first group of the client's list that it supports: two peers
/// with this provider always agree on X25519MLKEM768.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![
            X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..default_provider()
    }
}

/// [`provider()`] without the hybrid group: the classical baseline for benchmarks and tests.
pub fn classical_provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::NamedGroup;

    #[test]
    fn hybrid_is_preferred_and_classical_groups_follow() {
        let names: Vec<NamedGroup> = provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                NamedGroup::X25519MLKEM768,
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::secp384r1
            ]
        );
        let classical: Vec<NamedGroup> = classical_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert_eq!(&classical[..], &names[1..]);
    }
}
