//! The Worker: workers-rs I/O around the pure modules. One file per concern: `entry` (the
//! fetch handler and responses), `limits` (KV bans, sessions and the limiter), `tunnel`
//! (signed requests to the origin), `session` (the post-quantum tunnel session in isolate
//! memory), `ai` (Workers AI) and `vectorize` (the Vectorize binding).

mod ai;
mod entry;
mod limits;
mod respond;
mod session;
mod tunnel;
mod vectorize;
