//! `[usage]`: token limits per tier, how recorded usage reaches the store, and the meter
//! outbox for Enterprise accounts.

use crate::settings::{in_range, invalid, ConfigError, KeyDoc, Ty};
use heady_shared::token_bucket::{TokenPolicy, MAX_TOKENS};
use heady_shared::Tier;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Tokens (prompt + completion) each tier may use per window; 0: unlimited.
    pub token_limits: TokenLimits,
    /// The token limits' window: the bucket refills its whole limit over this many seconds.
    pub window_secs: u64,
    /// Completion tokens reserved before the call when a chat request gives no `max_tokens`.
    pub default_max_tokens: u64,
    /// Recorded usage is added up in memory and written to the store this often (and at
    /// shutdown).
    pub flush_interval_ms: u64,
    /// Enterprise usage is also kept in meter buckets of this many seconds.
    pub meter_bucket_secs: u64,
    /// A bucket is reported this long after it closes, so that late records land in it first.
    pub meter_settle_secs: u64,
    /// How often the meter reporter looks for buckets to report.
    pub report_interval_secs: u64,
    /// The meter's event name (Stripe's `event_name`).
    pub meter_event_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenLimits {
    pub free: u64,
    pub pro: u64,
    pub enterprise: u64,
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits {
            free: 20_000,
            pro: 200_000,
            enterprise: 0,
        }
    }
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            token_limits: TokenLimits::default(),
            window_secs: 60,
            default_max_tokens: 1_024,
            flush_interval_ms: 1_000,
            meter_bucket_secs: 60,
            meter_settle_secs: 30,
            report_interval_secs: 10,
            meter_event_name: "heady_tokens".into(),
        }
    }
}

impl UsageConfig {
    /// The tier's limit, `None` when unlimited.
    pub fn limit_of(&self, tier: Tier) -> Option<u64> {
        let l = match tier {
            Tier::Free => self.token_limits.free,
            Tier::Pro => self.token_limits.pro,
            Tier::Enterprise => self.token_limits.enterprise,
        };
        (l > 0).then_some(l)
    }

    pub fn policy(&self, tier: Tier) -> TokenPolicy {
        TokenPolicy::new(self.limit_of(tier), self.window_secs * 1000)
            .expect("validated: limits and window in range")
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("usage.token_limits.free", self.token_limits.free),
            ("usage.token_limits.pro", self.token_limits.pro),
            (
                "usage.token_limits.enterprise",
                self.token_limits.enterprise,
            ),
        ] {
            in_range(key, v, 0, MAX_TOKENS)?;
        }
        in_range("usage.window_secs", self.window_secs, 1, 3600)?;
        in_range(
            "usage.default_max_tokens",
            self.default_max_tokens,
            1,
            1_000_000,
        )?;
        in_range(
            "usage.flush_interval_ms",
            self.flush_interval_ms,
            10,
            60_000,
        )?;
        in_range("usage.meter_bucket_secs", self.meter_bucket_secs, 1, 86_400)?;
        in_range("usage.meter_settle_secs", self.meter_settle_secs, 0, 86_400)?;
        in_range(
            "usage.report_interval_secs",
            self.report_interval_secs,
            1,
            86_400,
        )?;
        let name = &self.meter_event_name;
        if name.is_empty()
            || name.len() > 100
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(invalid(
                "usage.meter_event_name",
                "1-100 of A-Z a-z 0-9 _ - . (the meter's event name)",
            ));
        }
        Ok(())
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("usage.token_limits.free", Ty::Int, "tokens (prompt + completion) a Free subject may use per `usage.window_secs`, checked before each chat or embedding call with an estimate and settled with the real count (0: unlimited)"),
    KeyDoc::new("usage.token_limits.pro", Ty::Int, "the same for Pro (0: unlimited)"),
    KeyDoc::new("usage.token_limits.enterprise", Ty::Int, "the same for Enterprise (0: unlimited, still metered)"),
    KeyDoc::new("usage.window_secs", Ty::Int, "the token limits' window: a subject's bucket refills its whole limit over this (1-3600)"),
    KeyDoc::new("usage.default_max_tokens", Ty::Int, "completion tokens reserved before a chat call that gives no `max_tokens` (1-1000000)"),
    KeyDoc::new("usage.flush_interval_ms", Ty::Int, "recorded usage is added up in memory and written to the store this often, and at shutdown (10-60000)"),
    KeyDoc::new("usage.meter_bucket_secs", Ty::Int, "Enterprise usage is also kept per account in meter buckets of this length, reported as meter events"),
    KeyDoc::new("usage.meter_settle_secs", Ty::Int, "a meter bucket is reported this long after it closes"),
    KeyDoc::new("usage.report_interval_secs", Ty::Int, "how often the meter reporter looks for buckets to report"),
    KeyDoc::new("usage.meter_event_name", Ty::Str, "the meter's event name (Stripe's `event_name`)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enterprise_is_unlimited_by_default_and_bad_values_name_their_key() {
        let c = UsageConfig::default();
        assert_eq!(c.limit_of(Tier::Free), Some(20_000));
        assert_eq!(c.limit_of(Tier::Enterprise), None);
        assert!(c.validate().is_ok());
        let mut bad = c.clone();
        bad.window_secs = 0;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("usage.window_secs:"));
        let mut bad = c;
        bad.meter_event_name = "no spaces".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("usage.meter_event_name:"));
    }
}
