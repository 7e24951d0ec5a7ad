//! Subscription tiers: request limits and the features each may use.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Enterprise,
}

/// Requests admitted per window. `None` means unlimited (still metered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierLimits {
    pub requests_per_window: Option<u32>,
    pub window_secs: u32,
}

/// What a tier may use. Free: basic chat, search, analyze. Pro: every tool.
/// Enterprise: everything Pro has plus custom routing and PQC API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    BasicChat,
    Search,
    Analyze,
    AllTools,
    CustomRouting,
    PqcApiKeys,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Free, Tier::Pro, Tier::Enterprise];

    pub fn limits(self) -> TierLimits {
        let requests_per_window = match self {
            Tier::Free => Some(30),
            Tier::Pro => Some(120),
            Tier::Enterprise => None,
        };
        TierLimits {
            requests_per_window,
            window_secs: 60,
        }
    }

    pub fn features(self) -> &'static [Feature] {
        use Feature::*;
        match self {
            Tier::Free => &[BasicChat, Search, Analyze],
            Tier::Pro => &[BasicChat, Search, Analyze, AllTools],
            Tier::Enterprise => &[
                BasicChat,
                Search,
                Analyze,
                AllTools,
                CustomRouting,
                PqcApiKeys,
            ],
        }
    }

    pub fn allows(self, feature: Feature) -> bool {
        self.features().contains(&feature)
    }

    /// Actions a Free subject may run; every other action needs `Feature::AllTools`.
    pub fn allows_action(self, action: &str) -> bool {
        const FREE_ACTIONS: [&str; 4] = ["chat", "complete", "search", "analyze"];
        self.allows(Feature::AllTools) || FREE_ACTIONS.contains(&action)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?} (expected free, pro or enterprise)")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTier(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_match_the_seed() {
        assert_eq!(Tier::Free.limits().requests_per_window, Some(30));
        assert_eq!(Tier::Pro.limits().requests_per_window, Some(120));
        assert_eq!(Tier::Enterprise.limits().requests_per_window, None);
        assert!(Tier::ALL.iter().all(|t| t.limits().window_secs == 60));
    }

    #[test]
    fn features_grow_with_the_tier() {
        assert!(Tier::Free.allows(Feature::Search));
        assert!(!Tier::Free.allows(Feature::AllTools));
        assert!(Tier::Pro.allows(Feature::AllTools));
        assert!(!Tier::Pro.allows(Feature::PqcApiKeys));
        assert!(Tier::Enterprise.allows(Feature::CustomRouting));
        assert!(Tier::Free.allows_action("analyze"));
        assert!(!Tier::Free.allows_action("code"));
        assert!(Tier::Pro.allows_action("code"));
        for pair in Tier::ALL.windows(2) {
            assert!(pair[0].features().iter().all(|f| pair[1].allows(*f)));
        }
    }

    #[test]
    fn parses() {
        assert_eq!("Pro".parse::<Tier>(), Ok(Tier::Pro));
        assert!("gold".parse::<Tier>().is_err());
    }
}
