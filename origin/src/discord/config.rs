//! `[discord]`: the Discord application. Nothing set: Discord is off and its routes answer 503
//! `discord_not_configured`. With `application_id` set, `public_key` is required (every
//! interaction is checked with it); the OAuth2 sign-in needs `client_secret` too, and
//! `heady-origin discord register-commands` needs `bot_token`: each route or command that
//! lacks what it needs names the missing key.

use crate::settings::{check_http_url, in_range, invalid, ConfigError, KeyDoc, Secret, Ty};
use heady_shared::discord::PublicKey;
use serde::{Deserialize, Serialize};

/// Discord's REST API, unless `api_base` says otherwise (tests point it at a local fake).
pub const DISCORD_API_BASE: &str = "https://discord.com/api/v10";
/// Where a browser is sent to authorize the application.
pub const DISCORD_AUTHORIZE_URL: &str = "https://discord.com/oauth2/authorize";
/// The Discord property's address (its hostname is the `discord` entry of
/// deploy/properties.toml; a test keeps the two equal).
pub const DISCORD_PUBLIC_URL: &str = "https://discord.headysystems.com";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// The application's id (a snowflake: digits).
    pub application_id: Option<String>,
    /// The application's Ed25519 public key, 64 hex digits.
    pub public_key: Option<String>,
    /// The bot's token, for registering commands; never printed.
    pub bot_token: Option<Secret>,
    /// The OAuth2 client secret, for the code exchange; never printed.
    pub client_secret: Option<Secret>,
    pub api_base: String,
    pub authorize_url: String,
    /// Where the sign-in pages are, as users reach them (the Discord property).
    pub public_url: String,
    /// The OAuth2 redirect; unset: `{public_url}/discord/callback`.
    pub redirect_uri: Option<String>,
    /// Per call to Discord's API.
    pub timeout_ms: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            application_id: None,
            public_key: None,
            bot_token: None,
            client_secret: None,
            api_base: DISCORD_API_BASE.to_string(),
            authorize_url: DISCORD_AUTHORIZE_URL.to_string(),
            public_url: DISCORD_PUBLIC_URL.to_string(),
            redirect_uri: None,
            timeout_ms: 10_000,
        }
    }
}

impl DiscordConfig {
    /// Discord is on when the application is named (and then its key is set: [`Self::validate`]).
    pub fn enabled(&self) -> bool {
        self.application_id.is_some()
    }

    /// The public key, parsed (validated at load).
    pub fn key(&self) -> Option<PublicKey> {
        PublicKey::from_hex(self.public_key.as_deref()?).ok()
    }

    pub fn redirect_uri(&self) -> String {
        self.redirect_uri.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                self.public_url.trim_end_matches('/'),
                crate::discord::CALLBACK_PATH
            )
        })
    }

    /// The sign-in page users are sent to.
    pub fn login_url(&self) -> String {
        format!(
            "{}{}",
            self.public_url.trim_end_matches('/'),
            crate::discord::LOGIN_PATH
        )
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("discord.api_base", &self.api_base)?;
        check_http_url("discord.authorize_url", &self.authorize_url)?;
        check_http_url("discord.public_url", &self.public_url)?;
        if let Some(u) = &self.redirect_uri {
            check_http_url("discord.redirect_uri", u)?;
        }
        in_range("discord.timeout_ms", self.timeout_ms, 100, 60_000)?;
        let Some(id) = &self.application_id else {
            let set = [
                ("public_key", self.public_key.is_some()),
                ("bot_token", self.bot_token.is_some()),
                ("client_secret", self.client_secret.is_some()),
            ];
            if let Some((name, _)) = set.iter().find(|(_, on)| *on) {
                return Err(invalid(
                    "discord.application_id",
                    format!("discord.{name} is set but the application id is not (HEADY_DISCORD_APPLICATION_ID); set it, or leave [discord] out to run without Discord"),
                ));
            }
            return Ok(());
        };
        if !is_snowflake(id) {
            return Err(invalid(
                "discord.application_id",
                format!("must be the application's id, digits only (got {id:?})"),
            ));
        }
        match &self.public_key {
            None => {
                return Err(invalid(
                    "discord.public_key",
                    "needed with Discord on: the application's public key (64 hex digits, HEADY_DISCORD_PUBLIC_KEY), which every interaction is checked with",
                ))
            }
            Some(k) => {
                PublicKey::from_hex(k).map_err(|e| invalid("discord.public_key", e.to_string()))?;
            }
        }
        for (key, secret) in [
            ("discord.bot_token", &self.bot_token),
            ("discord.client_secret", &self.client_secret),
        ] {
            if let Some(s) = secret {
                let s = s.expose();
                if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(
                        key,
                        "must be one word without spaces (the value is not shown)",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Discord's ids are snowflakes: up to 20 decimal digits.
pub fn is_snowflake(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("discord.application_id", Ty::Str, "the Discord application's id; set: Discord is on (the interactions endpoint, sign-in, `discord register-commands`); unset: the Discord routes answer 503 `discord_not_configured`")
        .aliases(&["HEADY_DISCORD_APPLICATION_ID"]),
    KeyDoc::new("discord.public_key", Ty::Str, "the application's public key (64 hex digits), required with Discord on: every interaction's Ed25519 signature is checked with it")
        .aliases(&["HEADY_DISCORD_PUBLIC_KEY"]),
    KeyDoc::new("discord.bot_token", Ty::Str, "the bot's token, for `heady-origin discord register-commands`; never printed")
        .aliases(&["HEADY_DISCORD_BOT_TOKEN"]),
    KeyDoc::new("discord.client_secret", Ty::Str, "the OAuth2 client secret, for linking Discord users to accounts (`/discord/login`); never printed")
        .aliases(&["HEADY_DISCORD_CLIENT_SECRET"]),
    KeyDoc::new("discord.api_base", Ty::Str, "Discord's API root (tests point it at a local fake)"),
    KeyDoc::new("discord.authorize_url", Ty::Str, "Discord's OAuth2 authorize page, where `/discord/login` sends the browser"),
    KeyDoc::new("discord.public_url", Ty::Str, "where users reach the Discord property's pages; the link unlinked users are shown is `{public_url}/discord/login`"),
    KeyDoc::new("discord.redirect_uri", Ty::Str, "the OAuth2 redirect registered with the application; unset: `{public_url}/discord/callback`"),
    KeyDoc::new("discord.timeout_ms", Ty::Int, "per call to Discord's API (100-60000)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn on() -> DiscordConfig {
        DiscordConfig {
            application_id: Some("123456789012345678".into()),
            public_key: Some(KEY.into()),
            bot_token: Some("bot.token-xyz".into()),
            client_secret: Some("client-secret-xyz".into()),
            ..DiscordConfig::default()
        }
    }

    fn err(c: &DiscordConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn off_unless_the_application_is_named_and_then_its_key_is_needed() {
        let off = DiscordConfig::default();
        assert!(!off.enabled());
        off.validate().unwrap();
        on().validate().unwrap();
        assert!(on().enabled() && on().key().is_some());
        let half = DiscordConfig {
            client_secret: Some("x".into()),
            ..DiscordConfig::default()
        };
        assert!(
            err(&half).starts_with("discord.application_id:"),
            "{}",
            err(&half)
        );
        let mut c = on();
        c.public_key = None;
        assert!(err(&c).starts_with("discord.public_key:"));
        c.public_key = Some("abcd".into());
        assert!(err(&c).starts_with("discord.public_key:"));
        let mut c = on();
        c.application_id = Some("my-app".into());
        assert!(err(&c).starts_with("discord.application_id:"));
        let mut c = on();
        c.api_base = "discord.com".into();
        assert!(err(&c).starts_with("discord.api_base:"));
    }

    #[test]
    fn secrets_are_checked_without_being_shown() {
        let mut c = on();
        c.bot_token = Some("two words-secretvalue".into());
        let e = err(&c);
        assert!(
            e.starts_with("discord.bot_token:") && !e.contains("secretvalue"),
            "{e}"
        );
        let shown = format!("{:?}", on());
        assert!(
            !shown.contains("bot.token-xyz") && !shown.contains("client-secret-xyz"),
            "{shown}"
        );
    }

    #[test]
    fn the_redirect_defaults_to_the_discord_property() {
        assert_eq!(
            on().redirect_uri(),
            "https://discord.headysystems.com/discord/callback"
        );
        assert_eq!(
            on().login_url(),
            "https://discord.headysystems.com/discord/login"
        );
        let text = include_str!("../../../deploy/properties.toml");
        let props = heady_shared::properties::Properties::parse(text).unwrap();
        let discord = props
            .iter()
            .find(|p| p.kind == heady_shared::properties::Kind::Discord)
            .expect("deploy/properties.toml has a discord property");
        assert_eq!(DISCORD_PUBLIC_URL, format!("https://{}", discord.hostname));
    }
}
