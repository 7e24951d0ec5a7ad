//! Arbitrary bytes as a PQC-signed request's Signature-Input, Signature, Content-Digest and
//! body: parsing, the policy, the digest and the signature base must never panic, and an
//! accepted Signature-Input must serialize back to itself. The checks are
//! `heady_shared::http_sig::fuzz`, which the crate's tests also run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| heady_shared::http_sig::fuzz(data));
