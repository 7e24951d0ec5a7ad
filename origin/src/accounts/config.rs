//! `database_url`: where accounts and keys live when several origins share them (the type, its
//! TLS and the pool are in [`crate::pg`]).

pub use crate::pg::DatabaseUrl;
