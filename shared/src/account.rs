//! Accounts: who owns keys, memory rows and sessions.
//!
//! An account id is `acct_` followed by 24 characters of lowercase RFC 4648 base32
//! (`a-z2-7`): 120 random bits. A keyed caller's limiter subject is `user:<account id>`
//! ([`Subject::account`]), so the edge's signed envelope names the account without a new
//! header, and the origin reads it back with [`Subject::account_id`].
//!
//! Account names (what an operator types, `keys create --user alice`) follow the user-name
//! rule ([`crate::subject::UserName`]) and are unique.

use crate::subject::{Subject, UserName};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub const ACCOUNT_PREFIX: &str = "acct_";
/// Characters after the prefix: 15 random bytes in base32.
pub const ACCOUNT_ID_CHARS: usize = 24;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A well-formed account id. Parsing checks the shape only; whether the account exists is the
/// store's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account id {0:?} is not acct_ followed by 24 characters of a-z and 2-7")]
pub struct AccountIdError(pub String);

impl AccountId {
    /// The id for 15 random bytes (the caller supplies the randomness: this crate reads no
    /// clock and no RNG).
    pub fn from_random(bytes: [u8; 15]) -> AccountId {
        let mut out = String::with_capacity(ACCOUNT_PREFIX.len() + ACCOUNT_ID_CHARS);
        out.push_str(ACCOUNT_PREFIX);
        // 15 bytes = 120 bits = 24 five-bit groups, no padding.
        for chunk in bytes.chunks(5) {
            let mut buf = 0u64;
            for b in chunk {
                buf = (buf << 8) | u64::from(*b);
            }
            for i in (0..8).rev() {
                out.push(BASE32[((buf >> (i * 5)) & 31) as usize] as char);
            }
        }
        AccountId(out)
    }

    pub fn parse(text: &str) -> Result<AccountId, AccountIdError> {
        let ok = text.len() == ACCOUNT_PREFIX.len() + ACCOUNT_ID_CHARS
            && text.starts_with(ACCOUNT_PREFIX)
            && text[ACCOUNT_PREFIX.len()..]
                .bytes()
                .all(|b| BASE32.contains(&b));
        if ok {
            Ok(AccountId(text.to_owned()))
        } else {
            let mut shown = text.to_owned();
            if shown.len() > 64 {
                let mut end = 64;
                while !shown.is_char_boundary(end) {
                    end -= 1;
                }
                shown.truncate(end);
            }
            Err(AccountIdError(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = AccountIdError;
    fn from_str(s: &str) -> Result<AccountId, AccountIdError> {
        AccountId::parse(s)
    }
}

impl TryFrom<String> for AccountId {
    type Error = AccountIdError;
    fn try_from(s: String) -> Result<AccountId, AccountIdError> {
        AccountId::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

/// Whether an account's keys are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<AccountStatus, String> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "disabled" => Ok(AccountStatus::Disabled),
            other => Err(format!(
                "account status {other:?} is neither active nor disabled"
            )),
        }
    }
}

/// The account the migration gives rows stored before memory had owners.
pub const LEGACY_ACCOUNT_NAME: &str = "legacy";

impl Subject {
    /// The limiter subject of a keyed caller: `user:<account id>`.
    pub fn account(id: &AccountId) -> Subject {
        // An account id is always a valid user name (letters, digits and '_').
        Subject::User(UserName::trusted(id.0.clone()))
    }

    /// The account a subject names: `Some` for `user:acct_...`, `None` for anonymous callers
    /// and for user names that are not account ids.
    pub fn account_id(&self) -> Option<AccountId> {
        match self {
            Subject::User(name) => AccountId::parse(name.as_str()).ok(),
            Subject::Ip(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_have_the_documented_shape() {
        let id = AccountId::from_random([0; 15]);
        assert_eq!(id.as_str(), "acct_aaaaaaaaaaaaaaaaaaaaaaaa");
        let id = AccountId::from_random([0xff; 15]);
        assert_eq!(id.as_str(), "acct_777777777777777777777777");
        for bad in [
            "",
            "acct_",
            "acct_AAAAAAAAAAAAAAAAAAAAAAAA",
            "acct_aaaaaaaaaaaaaaaaaaaaaaa1",
            "acct_aaaaaaaaaaaaaaaaaaaaaaaaa",
            "user_aaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<AccountId>("\"acct_x\"").is_err());
    }

    #[test]
    fn a_keyed_subject_names_its_account() {
        let id = AccountId::from_random([7; 15]);
        let s = Subject::account(&id);
        assert_eq!(s.to_string(), format!("user:{id}"));
        assert_eq!(s.account_id(), Some(id));
        assert_eq!(Subject::user("alice").unwrap().account_id(), None);
        assert_eq!(
            Subject::anonymous("10.0.0.1".parse().unwrap()).account_id(),
            None
        );
    }

    proptest! {
        #[test]
        fn random_ids_parse_and_round_trip(bytes in any::<[u8; 15]>()) {
            let id = AccountId::from_random(bytes);
            prop_assert_eq!(AccountId::parse(id.as_str()), Ok(id.clone()));
            let s = Subject::account(&id);
            let back: Subject = s.to_string().parse().unwrap();
            prop_assert_eq!(back.account_id(), Some(id));
        }

        #[test]
        fn distinct_bytes_give_distinct_ids(a in any::<[u8; 15]>(), b in any::<[u8; 15]>()) {
            prop_assume!(a != b);
            prop_assert_ne!(AccountId::from_random(a), AccountId::from_random(b));
        }
    }
}
