//! Data classification levels, ordered PUBLIC < INTERNAL < PROPRIETARY < RESTRICTED.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Classification {
    Public,
    Internal,
    Proprietary,
    Restricted,
}

impl Classification {
    pub const ALL: [Classification; 4] = [
        Classification::Public,
        Classification::Internal,
        Classification::Proprietary,
        Classification::Restricted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "PUBLIC",
            Classification::Internal => "INTERNAL",
            Classification::Proprietary => "PROPRIETARY",
            Classification::Restricted => "RESTRICTED",
        }
    }

    /// May an identity with clearance `self` see data classified `data`?
    pub fn permits(self, data: Classification) -> bool {
        self >= data
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown classification {0:?} (expected PUBLIC, INTERNAL, PROPRIETARY or RESTRICTED)")]
pub struct UnknownClassification(pub String);

impl FromStr for Classification {
    type Err = UnknownClassification;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Classification::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownClassification(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered() {
        use Classification::*;
        assert!(Public < Internal && Internal < Proprietary && Proprietary < Restricted);
        assert!(Restricted.permits(Public));
        assert!(Internal.permits(Internal));
        assert!(!Internal.permits(Proprietary));
    }

    #[test]
    fn parses_case_insensitively_and_rejects_unknown() {
        assert_eq!(
            "internal".parse::<Classification>(),
            Ok(Classification::Internal)
        );
        assert!("secret".parse::<Classification>().is_err());
        assert_eq!(
            serde_json::to_string(&Classification::Proprietary).unwrap(),
            "\"PROPRIETARY\""
        );
    }
}
