//! Heady for Discord: the bot's interactions endpoint, the OAuth2 sign-in that links a
//! Discord user to a Heady account, and the CLI that registers the slash commands.
//!
//! Discord sends each interaction signed with the application's Ed25519 key; the edge checks
//! it and so does the origin (`heady_shared::discord`). `/ask` is answered at once with a
//! deferred response, then through the interaction's webhook when the pipeline has answered;
//! `/search` searches the linked account's memory. A linked user's commands act for the
//! account (its tier, limits, token metering, memory); an unlinked user is anonymous (Free,
//! limited per Discord user, no memory) and is told how to link. The HTTP side is
//! `http::discord`; this module holds the configuration, the pure logic ([`interaction`]),
//! Discord's API ([`client`]) and the sign-ins under way ([`state`]).

pub mod client;
pub mod config;
pub mod interaction;
pub mod state;

use crate::metrics::OutcomeLabels;
use client::DiscordClient;
use config::DiscordConfig;
use heady_shared::discord::PublicKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub use heady_shared::discord::INTERACTIONS_PATH;
/// The sign-in page (a form for an API key), and where it posts.
pub const LOGIN_PATH: &str = "/discord/login";
/// The OAuth2 redirect.
pub const CALLBACK_PATH: &str = "/discord/callback";
/// The cookie that binds a sign-in's `state` to the browser that began it.
pub const STATE_COOKIE: &str = "heady_discord_state";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InteractionLabels {
    /// `ping`, `command`, `other`, or `invalid` (signature or body refused).
    pub r#type: &'static str,
    /// `ask`, `search`, `unknown`, or empty.
    pub command: &'static str,
    pub outcome: &'static str,
}

/// The bot in Prometheus.
#[derive(Clone)]
pub struct DiscordMetrics {
    pub interactions: Family<InteractionLabels, Counter>,
    /// Webhook messages (the deferred answer and its follow-ups) by outcome (`sent`, `failed`).
    pub follow_ups: Family<OutcomeLabels, Counter>,
    /// Sign-ins by outcome (`linked`, `bad_state`, `other_browser`, `denied`, `discord_failed`).
    pub links: Family<OutcomeLabels, Counter>,
}

impl DiscordMetrics {
    pub fn register(registry: &mut Registry) -> DiscordMetrics {
        let m = DiscordMetrics {
            interactions: Family::default(),
            follow_ups: Family::default(),
            links: Family::default(),
        };
        registry.register(
            "heady_discord_interactions",
            "Discord interactions by type (ping, command, other, invalid), command and outcome",
            m.interactions.clone(),
        );
        registry.register(
            "heady_discord_follow_ups",
            "Messages sent through an interaction's webhook (deferred answers and follow-ups), by outcome",
            m.follow_ups.clone(),
        );
        registry.register(
            "heady_discord_links",
            "Discord sign-ins (linking a Discord user to an account), by outcome",
            m.links.clone(),
        );
        m
    }

    pub fn interaction(&self, kind: &'static str, command: &'static str, outcome: &'static str) {
        self.interactions
            .get_or_create(&InteractionLabels {
                r#type: kind,
                command,
                outcome,
            })
            .inc();
    }
}

/// The bot, when `[discord]` is configured.
pub struct Discord {
    pub config: DiscordConfig,
    pub key: PublicKey,
    pub client: DiscordClient,
    pub states: state::States,
    pub metrics: DiscordMetrics,
}

impl Discord {
    /// `None` when Discord is off; registers its metrics either way.
    pub fn new(
        cfg: &DiscordConfig,
        redis: Option<Arc<crate::redis::Redis>>,
        registry: &mut Registry,
    ) -> anyhow::Result<Option<Arc<Discord>>> {
        let metrics = DiscordMetrics::register(registry);
        if !cfg.enabled() {
            return Ok(None);
        }
        let key = cfg
            .key()
            .ok_or_else(|| anyhow::anyhow!("discord.public_key: not an Ed25519 public key"))?;
        Ok(Some(Arc::new(Discord {
            config: cfg.clone(),
            key,
            client: DiscordClient::new(cfg)?,
            states: state::States::new(redis),
            metrics,
        })))
    }
}
