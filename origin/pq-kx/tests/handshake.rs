//! Full in-memory rustls TLS 1.3 handshakes with the providers of this crate.

mod common;

use common::{handshake, with_groups, TestPki};
use heady_pq_kx::{classical_provider, provider, X25519MLKEM768};
use rustls::crypto::ring::kx_group;
use rustls::NamedGroup;

#[test]
fn hybrid_on_both_sides_negotiates_x25519mlkem768_and_echoes() {
    let pki = TestPki::new();
    let mut hs = handshake(
        &pki.client_config(provider()),
        &pki.server_config(provider()),
    )
    .unwrap();
    assert_eq!(hs.client_group(), Some(NamedGroup::X25519MLKEM768));
    assert_eq!(hs.server_group(), Some(NamedGroup::X25519MLKEM768));
    assert_eq!(hs.client_flights, 2, "no HelloRetryRequest");
    // 1184 + 32 for the hybrid share, and the 32-byte X25519 share beside it.
    assert!(
        hs.client_hello_len > 1184 + 32 + 32,
        "{}",
        hs.client_hello_len
    );
    assert_eq!(hs.echo(b"mesh ping").unwrap(), b"mesh ping");
}

#[test]
fn client_offering_only_x25519_still_gets_x25519() {
    let pki = TestPki::new();
    let client = with_groups(classical_provider(), &[kx_group::X25519]);
    let mut hs = handshake(&pki.client_config(client), &pki.server_config(provider())).unwrap();
    assert_eq!(hs.client_group(), Some(NamedGroup::X25519));
    assert_eq!(hs.server_group(), Some(NamedGroup::X25519));
    assert_eq!(hs.client_flights, 2);
    assert_eq!(hs.echo(b"classical").unwrap(), b"classical");
}

#[test]
fn hybrid_client_reaches_a_classical_server_with_its_x25519_half_without_retry() {
    let pki = TestPki::new();
    let mut hs = handshake(
        &pki.client_config(provider()),
        &pki.server_config(classical_provider()),
    )
    .unwrap();
    assert_eq!(hs.client_group(), Some(NamedGroup::X25519));
    assert_eq!(hs.server_group(), Some(NamedGroup::X25519));
    assert_eq!(
        hs.client_flights, 2,
        "answered from hybrid_component, no HelloRetryRequest"
    );
    assert_eq!(hs.echo(b"fallback").unwrap(), b"fallback");
}

#[test]
fn hybrid_only_client_and_server_still_agree() {
    let pki = TestPki::new();
    let only_hybrid = || with_groups(provider(), &[X25519MLKEM768]);
    let mut hs = handshake(
        &pki.client_config(only_hybrid()),
        &pki.server_config(only_hybrid()),
    )
    .unwrap();
    assert_eq!(hs.client_group(), Some(NamedGroup::X25519MLKEM768));
    assert_eq!(hs.echo(b"pq only").unwrap(), b"pq only");
}

#[test]
fn hybrid_only_client_and_classical_server_fail_to_agree() {
    let pki = TestPki::new();
    let result = handshake(
        &pki.client_config(with_groups(provider(), &[X25519MLKEM768])),
        &pki.server_config(classical_provider()),
    );
    assert!(
        matches!(
            result,
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoKxGroupsInCommon
            ))
        ),
        "{:?}",
        result.err()
    );
}

#[test]
fn the_harness_sees_a_hello_retry_request() {
    // Guards the `client_flights == 2` checks above: a retry shows as a third flight.
    let pki = TestPki::new();
    let client = with_groups(
        classical_provider(),
        &[kx_group::SECP256R1, kx_group::X25519],
    );
    let server = with_groups(classical_provider(), &[kx_group::X25519]);
    let hs = handshake(&pki.client_config(client), &pki.server_config(server)).unwrap();
    assert_eq!(hs.server_group(), Some(NamedGroup::X25519));
    assert_eq!(hs.client_flights, 3);
}

#[test]
fn the_server_follows_the_clients_order_of_groups() {
    // rustls 0.23 servers take the first group in the client's list that they support, so a
    // client that lists X25519 first gets X25519 even from a hybrid-first server; mesh peers
    // use `provider()` on both ends, whose list starts with the hybrid.
    let pki = TestPki::new();
    let client = with_groups(provider(), &[kx_group::X25519, X25519MLKEM768]);
    let hs = handshake(&pki.client_config(client), &pki.server_config(provider())).unwrap();
    assert_eq!(hs.server_group(), Some(NamedGroup::X25519));
}
