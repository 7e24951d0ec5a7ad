//! X25519MLKEM768 as draft-ietf-tls-ecdhe-mlkem lays it out: ML-KEM-768 comes first in both
//! key shares and in the shared secret, X25519 second.
//!
//! | what                 | bytes                                                   |
//! |----------------------|---------------------------------------------------------|
//! | client key share     | ML-KEM-768 encapsulation key (1184) ‖ X25519 public (32) |
//! | server key share     | ML-KEM-768 ciphertext (1088) ‖ X25519 public (32)        |
//! | shared secret        | ML-KEM-768 shared secret (32) ‖ X25519 shared secret (32)|

use ml_kem::array::Array;
use ml_kem::{Decapsulate, DecapsulationKey, EncapsulationKey, KeyExport, MlKem768};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::crypto::ring::kx_group;
use rustls::crypto::{
    ActiveKeyExchange, CompletedKeyExchange, GetRandomFailed, SharedSecret, SupportedKxGroup,
};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::{Error, NamedGroup, PeerMisbehaved, ProtocolVersion};
use zeroize::Zeroize;

/// Length of an ML-KEM-768 encapsulation key: the post-quantum half of the client's share.
pub(crate) const MLKEM768_ENCAPSULATION_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext: the post-quantum half of the server's share.
pub(crate) const MLKEM768_CIPHERTEXT_LEN: usize = 1088;
/// Length of an X25519 public key, the classical half of both shares.
pub(crate) const X25519_LEN: usize = 32;
const MLKEM768_SHARED_SECRET_LEN: usize = 32;
const X25519_SHARED_SECRET_LEN: usize = 32;

/// The X25519MLKEM768 key exchange group, for [`rustls::crypto::CryptoProvider::kx_groups`].
pub static X25519MLKEM768: &dyn SupportedKxGroup = &X25519MlKem768;

/// The classical half: ring's X25519 through rustls, which draws its private key from the OS,
/// checks the peer's key length and refuses an all-zero result (a low-order peer point).
fn x25519() -> &'static dyn SupportedKxGroup {
    kx_group::X25519
}

const INVALID_KEY_SHARE: Error = Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare);

#[derive(Debug)]
struct X25519MlKem768;

impl SupportedKxGroup for X25519MlKem768 {
    /// Client side: a fresh ML-KEM-768 key pair and a fresh X25519 key pair.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let classical = x25519().start()?;
        let mut seed = ml_kem::Seed::default();
        fill_random(&mut seed)?;
        let decapsulation_key = DecapsulationKey::<MlKem768>::from_seed(seed);
        seed.zeroize_bytes();

        let mut key_share = Vec::with_capacity(MLKEM768_ENCAPSULATION_KEY_LEN + X25519_LEN);
        key_share.extend_from_slice(&decapsulation_key.encapsulation_key().to_bytes());
        key_share.extend_from_slice(classical.pub_key());

        Ok(Box::new(ActiveX25519MlKem768 {
            decapsulation_key,
            classical,
            key_share,
        }))
    }

    /// Server side: encapsulate to the client's ML-KEM key and agree on X25519 in one step.
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        let (encapsulation_key, classical_share) =
            split_share(client_share, MLKEM768_ENCAPSULATION_KEY_LEN)?;
        let encapsulation_key = Array::try_from(encapsulation_key)
            .ok()
            .and_then(|bytes| EncapsulationKey::<MlKem768>::new(&bytes).ok())
            .ok_or(INVALID_KEY_SHARE)?;

        let classical = x25519().start_and_complete(classical_share)?;

        let mut randomness = ml_kem::B32::default();
        fill_random(&mut randomness)?;
        let (ciphertext, mut mlkem_secret) =
            encapsulation_key.encapsulate_deterministic(&randomness);
        randomness.zeroize_bytes();

        let mut key_share = Vec::with_capacity(MLKEM768_CIPHERTEXT_LEN + X25519_LEN);
        key_share.extend_from_slice(&ciphertext);
        key_share.extend_from_slice(&classical.pub_key);

        let secret = combine_secrets(&mlkem_secret, classical.secret.secret_bytes());
        mlkem_secret.zeroize_bytes();

        Ok(CompletedKeyExchange {
            group: NamedGroup::X25519MLKEM768,
            pub_key: key_share,
            secret,
        })
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    /// The draft defines the group for TLS 1.3 only.
    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

/// A client's pending exchange. No `Debug`: it holds the ML-KEM decapsulation key.
struct ActiveX25519MlKem768 {
    decapsulation_key: DecapsulationKey<MlKem768>,
    classical: Box<dyn ActiveKeyExchange>,
    key_share: Vec<u8>,
}

impl ActiveKeyExchange for ActiveX25519MlKem768 {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, Error> {
        let (ciphertext, classical_share) = split_share(server_share, MLKEM768_CIPHERTEXT_LEN)?;
        let ciphertext =
            ml_kem::ml_kem_768::Ciphertext::try_from(ciphertext).map_err(|_| INVALID_KEY_SHARE)?;
        let this = *self;
        let classical = this.classical.complete(classical_share)?;
        // ML-KEM decapsulation has implicit rejection: a corrupted ciphertext gives an unrelated
        // secret, and the handshake then fails at the Finished check.
        let mut mlkem_secret = this.decapsulation_key.decapsulate(&ciphertext);
        let secret = combine_secrets(&mlkem_secret, classical.secret_bytes());
        mlkem_secret.zeroize_bytes();
        Ok(secret)
    }

    /// The X25519 half can be offered on its own in the same ClientHello (rustls does so when
    /// X25519 is also in the provider's groups), saving a HelloRetryRequest with classical servers.
    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        Some((self.classical.group(), self.classical.pub_key()))
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        server_share: &[u8],
    ) -> Result<SharedSecret, Error> {
        self.classical.complete(server_share)
    }

    fn pub_key(&self) -> &[u8] {
        &self.key_share
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

/// Splits a share into its ML-KEM part (first, `mlkem_len` bytes) and its X25519 part.
fn split_share(share: &[u8], mlkem_len: usize) -> Result<(&[u8], &[u8]), Error> {
    if share.len() != mlkem_len + X25519_LEN {
        return Err(INVALID_KEY_SHARE);
    }
    Ok(share.split_at(mlkem_len))
}

fn combine_secrets(mlkem: &[u8], x25519: &[u8]) -> SharedSecret {
    let mut secret = Vec::with_capacity(MLKEM768_SHARED_SECRET_LEN + X25519_SHARED_SECRET_LEN);
    secret.extend_from_slice(mlkem);
    secret.extend_from_slice(x25519);
    // SharedSecret zeroizes its buffer on drop.
    SharedSecret::from(secret)
}

fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::from(GetRandomFailed))
}

/// Zeroizing for the fixed-size arrays ml-kem hands out (their bytes, whatever the array type).
trait ZeroizeBytes {
    fn zeroize_bytes(&mut self);
}

impl<T: AsMut<[u8]>> ZeroizeBytes for T {
    fn zeroize_bytes(&mut self) {
        self.as_mut().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_SHARE_LEN: usize = MLKEM768_ENCAPSULATION_KEY_LEN + X25519_LEN;
    const SERVER_SHARE_LEN: usize = MLKEM768_CIPHERTEXT_LEN + X25519_LEN;

    fn invalid_key_share<T>(result: Result<T, Error>) -> bool {
        matches!(result, Err(e) if e == INVALID_KEY_SHARE)
    }

    #[test]
    fn client_and_server_agree_on_a_64_byte_secret() {
        let client = X25519MLKEM768.start().unwrap();
        assert_eq!(client.group(), NamedGroup::X25519MLKEM768);
        assert_eq!(client.pub_key().len(), CLIENT_SHARE_LEN);

        let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
        assert_eq!(server.group, NamedGroup::X25519MLKEM768);
        assert_eq!(server.pub_key.len(), SERVER_SHARE_LEN);

        let client_secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(client_secret.secret_bytes().len(), 64);
        assert_eq!(client_secret.secret_bytes(), server.secret.secret_bytes());
    }

    #[test]
    fn every_exchange_uses_fresh_keys() {
        let a = X25519MLKEM768.start().unwrap();
        let b = X25519MLKEM768.start().unwrap();
        assert_ne!(a.pub_key(), b.pub_key());
        let s1 = X25519MLKEM768.start_and_complete(a.pub_key()).unwrap();
        let s2 = X25519MLKEM768.start_and_complete(a.pub_key()).unwrap();
        assert_ne!(s1.pub_key, s2.pub_key);
        assert_ne!(s1.secret.secret_bytes(), s2.secret.secret_bytes());
    }

    #[test]
    fn hybrid_component_is_the_x25519_half_and_completes_alone() {
        let client = X25519MLKEM768.start().unwrap();
        let (group, classical_share) = client.hybrid_component().unwrap();
        assert_eq!(group, NamedGroup::X25519);
        assert_eq!(
            classical_share,
            &client.pub_key()[MLKEM768_ENCAPSULATION_KEY_LEN..]
        );

        // A classical server answers the X25519 half with plain X25519.
        let server = x25519().start_and_complete(classical_share).unwrap();
        let secret = client.complete_hybrid_component(&server.pub_key).unwrap();
        assert_eq!(secret.secret_bytes().len(), X25519_SHARED_SECRET_LEN);
        assert_eq!(secret.secret_bytes(), server.secret.secret_bytes());
    }

    #[test]
    fn server_refuses_client_shares_of_the_wrong_length() {
        let client = X25519MLKEM768.start().unwrap();
        let share = client.pub_key();
        for len in [0, 32, MLKEM768_ENCAPSULATION_KEY_LEN, CLIENT_SHARE_LEN - 1] {
            assert!(
                invalid_key_share(X25519MLKEM768.start_and_complete(&share[..len])),
                "{len}"
            );
        }
        let mut long = share.to_vec();
        long.push(0);
        assert!(invalid_key_share(X25519MLKEM768.start_and_complete(&long)));
        // A server share sent where a client share belongs is the wrong length too.
        let server = X25519MLKEM768.start_and_complete(share).unwrap();
        assert!(invalid_key_share(
            X25519MLKEM768.start_and_complete(&server.pub_key)
        ));
    }

    #[test]
    fn client_refuses_server_shares_of_the_wrong_length() {
        for len in [
            0,
            X25519_LEN,
            MLKEM768_CIPHERTEXT_LEN,
            SERVER_SHARE_LEN - 1,
            SERVER_SHARE_LEN + 1,
        ] {
            let client = X25519MLKEM768.start().unwrap();
            let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
            let mut share = server.pub_key.clone();
            share.resize(len, 7);
            assert!(invalid_key_share(client.complete(&share)), "{len}");
        }
    }

    #[test]
    fn server_refuses_an_invalid_encapsulation_key() {
        let client = X25519MLKEM768.start().unwrap();
        let mut share = client.pub_key().to_vec();
        // The first 12-bit coefficient becomes 0xFFF, above the modulus q = 3329 (FIPS 203 7.2).
        share[0] = 0xFF;
        share[1] |= 0x0F;
        assert!(invalid_key_share(X25519MLKEM768.start_and_complete(&share)));
    }

    #[test]
    fn an_all_zero_x25519_result_is_refused_on_both_sides() {
        // The all-zero point has order 1: every private key gives the all-zero secret.
        let client = X25519MLKEM768.start().unwrap();
        let mut share = client.pub_key().to_vec();
        share[MLKEM768_ENCAPSULATION_KEY_LEN..].fill(0);
        assert!(invalid_key_share(X25519MLKEM768.start_and_complete(&share)));

        let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
        let mut share = server.pub_key;
        share[MLKEM768_CIPHERTEXT_LEN..].fill(0);
        assert!(invalid_key_share(client.complete(&share)));
    }

    #[test]
    fn a_corrupted_ciphertext_gives_a_different_secret() {
        let client = X25519MLKEM768.start().unwrap();
        let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
        let mut share = server.pub_key.clone();
        share[10] ^= 1;
        let client_secret = client.complete(&share).unwrap();
        let (mlkem, x) = client_secret.secret_bytes().split_at(32);
        assert_ne!(mlkem, &server.secret.secret_bytes()[..32]);
        assert_eq!(x, &server.secret.secret_bytes()[32..]);
    }

    #[test]
    fn the_group_is_for_tls13_only() {
        assert_eq!(X25519MLKEM768.name(), NamedGroup::X25519MLKEM768);
        assert_eq!(u16::from(X25519MLKEM768.name()), 0x11EC);
        assert!(X25519MLKEM768.usable_for_version(ProtocolVersion::TLSv1_3));
        assert!(!X25519MLKEM768.usable_for_version(ProtocolVersion::TLSv1_2));
        assert!(X25519MLKEM768.ffdhe_group().is_none());
        assert_eq!(format!("{X25519MLKEM768:?}"), "X25519MlKem768");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A share of `len` bytes from `seed` (a repeating pattern keeps the strategy cheap).
    fn bytes(len: usize, seed: &[u8]) -> Vec<u8> {
        seed.iter().copied().cycle().take(len).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_client_share_is_answered_or_refused_as_invalid(
            len in prop_oneof![
                Just(MLKEM768_ENCAPSULATION_KEY_LEN + X25519_LEN),
                0usize..2500,
            ],
            seed in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let share = bytes(len, &seed);
            match X25519MLKEM768.start_and_complete(&share) {
                Ok(done) => {
                    prop_assert_eq!(len, MLKEM768_ENCAPSULATION_KEY_LEN + X25519_LEN);
                    prop_assert_eq!(done.pub_key.len(), MLKEM768_CIPHERTEXT_LEN + X25519_LEN);
                    prop_assert_eq!(done.secret.secret_bytes().len(), 64);
                }
                Err(e) => prop_assert_eq!(e, INVALID_KEY_SHARE),
            }
        }

        #[test]
        fn any_server_share_completes_or_is_refused_as_invalid(
            len in prop_oneof![Just(MLKEM768_CIPHERTEXT_LEN + X25519_LEN), 0usize..2500],
            seed in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let client = X25519MLKEM768.start().unwrap();
            match client.complete(&bytes(len, &seed)) {
                Ok(secret) => {
                    prop_assert_eq!(len, MLKEM768_CIPHERTEXT_LEN + X25519_LEN);
                    prop_assert_eq!(secret.secret_bytes().len(), 64);
                }
                Err(e) => prop_assert_eq!(e, INVALID_KEY_SHARE),
            }
        }
    }
}
