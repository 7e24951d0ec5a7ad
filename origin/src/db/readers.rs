//! A pool of read connections, opened on demand and kept up to `memory.read_connections`.

use super::DbError;
use duckdb::Connection;
use std::sync::{Mutex, MutexGuard};

pub struct ReadPool {
    /// Every reader is a clone of this one: connections to one database instance.
    template: Mutex<Connection>,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReadPool {
    pub fn new(template: Connection, max_idle: usize) -> Self {
        ReadPool {
            template: Mutex::new(template),
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    pub fn take(&self) -> Result<Connection, DbError> {
        if let Some(c) = lock(&self.idle).pop() {
            return Ok(c);
        }
        let c = lock(&self.template).try_clone()?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(c)
    }

    pub fn put(&self, c: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }
}
