//! `database_url`: where accounts and keys live when several origins share them.

use serde::{Deserialize, Serialize};

/// A PostgreSQL URL (`postgres://` or `postgresql://`), checked at load. `Debug`, `Display`,
/// serialization and errors hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<DatabaseUrl, String> {
        let url = DatabaseUrl(s.trim().to_string());
        if !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://")) {
            return Err(format!(
                "must be a PostgreSQL URL starting with postgres:// or postgresql:// (got {:?})",
                url.redacted()
            ));
        }
        url.0
            .parse::<tokio_postgres::Config>()
            .map_err(|_| format!("not a PostgreSQL URL: {:?}", url.redacted()))?;
        Ok(url)
    }

    /// The connection settings (checked at load, so this does not fail for a loaded URL).
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, String> {
        self.0
            .parse::<tokio_postgres::Config>()
            .map_err(|_| format!("not a PostgreSQL URL: {:?}", self.redacted()))
    }

    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("redacted"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "<unparsable URL>".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)
            .map_err(|_| serde::de::Error::custom("must be a string (the value is not shown)"))?;
        DatabaseUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        let u = DatabaseUrl::parse("postgres://heady:hunter2@127.0.0.1:5432/heady").unwrap();
        let shown = format!("{u:?} {u} {}", serde_json::to_string(&u).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(u.pg_config().is_ok());
        let e = DatabaseUrl::parse("mysql://root:hunter2@x/db").unwrap_err();
        assert!(e.contains("postgres://") && !e.contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
