//! Cross-component tests live in `tests/`; the generators they check against are in
//! heady-xtask (`deploy/xtask`).

#![forbid(unsafe_code)]
