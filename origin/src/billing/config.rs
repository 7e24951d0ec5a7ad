//! `[billing]`: Stripe. Nothing set: billing is off and its routes answer 503
//! `billing_not_configured`. With `stripe_secret_key` set, the webhook secrets, a price and
//! the checkout URLs are required, so a half-configured billing stops the daemon at start with
//! the missing key named.

use crate::settings::{check_http_url, in_range, invalid, ConfigError, KeyDoc, Secret, Ty};
use heady_shared::Tier;
use serde::{Deserialize, Serialize};

/// Stripe's API, unless `api_base` says otherwise (tests point it at a local fake).
pub const STRIPE_API_BASE: &str = "https://api.stripe.com";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// `sk_...` or a restricted `rk_...` key; never printed.
    pub stripe_secret_key: Option<Secret>,
    /// The webhook endpoint's signing secrets (`whsec_...`); several during a rotation, any
    /// may match.
    pub webhook_secrets: Vec<Secret>,
    pub api_base: String,
    pub prices: Prices,
    /// Where Checkout sends the customer after paying, and after giving up.
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    /// Where the billing portal's "return" link goes; unset: `cancel_url`.
    pub portal_return_url: Option<String>,
    /// How long a `past_due` subscription keeps its tier (from when it became past_due).
    pub past_due_grace_days: u64,
    /// How often accounts whose grace has run out are moved to Free.
    pub grace_sweep_secs: u64,
    /// Per call to Stripe's API.
    pub timeout_ms: u64,
}

/// `[billing.prices]`: the Stripe price of each paid tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    pub pro: Option<String>,
    pub enterprise: Option<String>,
}

impl Prices {
    /// The tier a subscription to `price` pays for.
    pub fn tier_of(&self, price: &str) -> Option<Tier> {
        if self.enterprise.as_deref() == Some(price) {
            Some(Tier::Enterprise)
        } else if self.pro.as_deref() == Some(price) {
            Some(Tier::Pro)
        } else {
            None
        }
    }

    /// The price of a paid tier, when one is set.
    pub fn price_of(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::Free => None,
            Tier::Pro => self.pro.as_deref(),
            Tier::Enterprise => self.enterprise.as_deref(),
        }
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            stripe_secret_key: None,
            webhook_secrets: Vec::new(),
            api_base: STRIPE_API_BASE.to_string(),
            prices: Prices::default(),
            success_url: None,
            cancel_url: None,
            portal_return_url: None,
            past_due_grace_days: 7,
            grace_sweep_secs: 60,
            timeout_ms: 10_000,
        }
    }
}

impl BillingConfig {
    /// Billing is on when the Stripe key is set (and then complete: [`Self::validate`]).
    pub fn enabled(&self) -> bool {
        self.stripe_secret_key.is_some()
    }

    pub fn past_due_grace_secs(&self) -> i64 {
        (self.past_due_grace_days as i64) * 86_400
    }

    pub fn portal_return_url(&self) -> Option<&str> {
        self.portal_return_url
            .as_deref()
            .or(self.cancel_url.as_deref())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("billing.api_base", &self.api_base)?;
        in_range(
            "billing.past_due_grace_days",
            self.past_due_grace_days,
            0,
            90,
        )?;
        in_range("billing.grace_sweep_secs", self.grace_sweep_secs, 1, 3600)?;
        in_range("billing.timeout_ms", self.timeout_ms, 100, 120_000)?;
        let Some(key) = &self.stripe_secret_key else {
            // Anything else set without the key is a half-done setup: say what is missing.
            let set = [
                ("webhook_secrets", !self.webhook_secrets.is_empty()),
                ("prices.pro", self.prices.pro.is_some()),
                ("prices.enterprise", self.prices.enterprise.is_some()),
                ("success_url", self.success_url.is_some()),
                ("cancel_url", self.cancel_url.is_some()),
                ("portal_return_url", self.portal_return_url.is_some()),
            ];
            if let Some((name, _)) = set.iter().find(|(_, on)| *on) {
                return Err(invalid(
                    "billing.stripe_secret_key",
                    format!("billing.{name} is set but the Stripe secret key is not (HEADY_STRIPE_SECRET_KEY); set it, or leave [billing] out to run without billing"),
                ));
            }
            return Ok(());
        };
        let k = key.expose();
        if !(k.starts_with("sk_") || k.starts_with("rk_")) || k.len() < 8 || has_space(k) {
            return Err(invalid(
                "billing.stripe_secret_key",
                "must be a Stripe secret key (sk_...) or restricted key (rk_...), not a publishable key (the value is not shown)",
            ));
        }
        if self.webhook_secrets.is_empty() {
            return Err(invalid(
                "billing.webhook_secrets",
                "needed with billing on: the webhook endpoint's signing secret (whsec_..., HEADY_STRIPE_WEBHOOK_SECRET; several comma-separated during a rotation)",
            ));
        }
        for (i, s) in self.webhook_secrets.iter().enumerate() {
            let s = s.expose();
            if !s.starts_with("whsec_") || s.len() <= "whsec_".len() || has_space(s) {
                return Err(invalid(
                    "billing.webhook_secrets",
                    format!("entry {} is not a webhook signing secret (whsec_...; the value is not shown)", i + 1),
                ));
            }
        }
        if self.prices.pro.is_none() && self.prices.enterprise.is_none() {
            return Err(invalid(
                "billing.prices.pro",
                "needed with billing on: the Stripe price of Pro (price_..., HEADY_STRIPE_PRICE_PRO) and/or of Enterprise (billing.prices.enterprise)",
            ));
        }
        for (key, price) in [
            ("billing.prices.pro", &self.prices.pro),
            ("billing.prices.enterprise", &self.prices.enterprise),
        ] {
            if let Some(p) = price {
                if p.is_empty() || has_space(p) || p.contains(',') || p.len() > 255 {
                    return Err(invalid(key, format!("not a Stripe price id: {p:?}")));
                }
            }
        }
        if self.prices.pro.is_some() && self.prices.pro == self.prices.enterprise {
            return Err(invalid(
                "billing.prices.enterprise",
                "is the same price as billing.prices.pro: a subscription must say which tier it pays for",
            ));
        }
        for (key, url) in [
            ("billing.success_url", &self.success_url),
            ("billing.cancel_url", &self.cancel_url),
        ] {
            match url {
                Some(u) => check_http_url(key, u)?,
                None => {
                    return Err(invalid(
                        key,
                        "needed with billing on: where Stripe Checkout sends the customer back",
                    ))
                }
            }
        }
        if let Some(u) = &self.portal_return_url {
            check_http_url("billing.portal_return_url", u)?;
        }
        Ok(())
    }
}

fn has_space(s: &str) -> bool {
    s.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("billing.stripe_secret_key", Ty::Str, "Stripe secret key (`sk_...` or restricted `rk_...`); set: billing is on, and the keys below marked required must be set too; unset: the billing routes answer 503 `billing_not_configured`; never printed")
        .aliases(&["HEADY_STRIPE_SECRET_KEY"]),
    KeyDoc::new("billing.webhook_secrets", Ty::List, "the webhook endpoint's signing secrets (`whsec_...`), required with billing on; several during a rotation (any may match); env: a comma list; never printed")
        .aliases(&["HEADY_STRIPE_WEBHOOK_SECRET"]),
    KeyDoc::new("billing.api_base", Ty::Str, "Stripe's API root (tests point it at a local fake)")
        .aliases(&["HEADY_STRIPE_API_BASE"]),
    KeyDoc::new("billing.success_url", Ty::Str, "where Checkout sends the customer after paying (required with billing on; Stripe fills `{CHECKOUT_SESSION_ID}`)")
        .aliases(&["HEADY_STRIPE_SUCCESS_URL"]),
    KeyDoc::new("billing.cancel_url", Ty::Str, "where Checkout sends a customer who gives up (required with billing on)")
        .aliases(&["HEADY_STRIPE_CANCEL_URL"]),
    KeyDoc::new("billing.portal_return_url", Ty::Str, "where the billing portal's return link goes; unset: `billing.cancel_url`"),
    KeyDoc::new("billing.past_due_grace_days", Ty::Int, "a `past_due` subscription keeps its tier this many days from when it became past_due, then the account is Free (0-90; 0: at once)"),
    KeyDoc::new("billing.grace_sweep_secs", Ty::Int, "how often accounts whose past_due grace has run out are moved to Free (1-3600)"),
    KeyDoc::new("billing.timeout_ms", Ty::Int, "per call to Stripe's API (100-120000)"),
    KeyDoc::new("billing.prices.pro", Ty::Str, "the Stripe price (`price_...`) of Pro: Checkout sells it, and a subscription to it grants Pro (this or `enterprise` required with billing on)")
        .aliases(&["HEADY_STRIPE_PRICE_PRO"]),
    KeyDoc::new("billing.prices.enterprise", Ty::Str, "the Stripe price of Enterprise")
        .aliases(&["HEADY_STRIPE_PRICE_ENTERPRISE"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> BillingConfig {
        BillingConfig {
            stripe_secret_key: Some("sk_test_0123456789".into()),
            webhook_secrets: vec!["whsec_abc".into()],
            prices: Prices {
                pro: Some("price_pro".into()),
                enterprise: Some("price_ent".into()),
            },
            success_url: Some("https://app.example/billing?ok={CHECKOUT_SESSION_ID}".into()),
            cancel_url: Some("https://app.example/billing".into()),
            ..BillingConfig::default()
        }
    }

    fn err(c: &BillingConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn off_unless_the_key_is_set_and_then_complete() {
        let off = BillingConfig::default();
        assert!(!off.enabled());
        off.validate().unwrap();
        on().validate().unwrap();
        assert!(on().enabled());
        let half = BillingConfig {
            webhook_secrets: vec!["whsec_abc".into()],
            ..BillingConfig::default()
        };
        assert!(
            err(&half).starts_with("billing.stripe_secret_key:"),
            "{}",
            err(&half)
        );
        let mut c = on();
        c.webhook_secrets.clear();
        assert!(err(&c).starts_with("billing.webhook_secrets:"));
        let mut c = on();
        c.prices = Prices::default();
        assert!(err(&c).starts_with("billing.prices.pro:"));
        let mut c = on();
        c.cancel_url = None;
        assert!(err(&c).starts_with("billing.cancel_url:"));
        let mut c = on();
        c.success_url = Some("ftp://x".into());
        assert!(err(&c).starts_with("billing.success_url:"));
        let mut c = on();
        c.prices.enterprise = c.prices.pro.clone();
        assert!(err(&c).starts_with("billing.prices.enterprise:"));
    }

    #[test]
    fn secrets_are_checked_without_being_shown() {
        let mut c = on();
        c.stripe_secret_key = Some("pk_live_publishable123".into());
        let e = err(&c);
        assert!(
            e.starts_with("billing.stripe_secret_key:") && !e.contains("publishable123"),
            "{e}"
        );
        let mut c = on();
        c.webhook_secrets = vec!["whsec_ok".into(), "not-a-secret-xyz".into()];
        let e = err(&c);
        assert!(e.contains("entry 2") && !e.contains("xyz"), "{e}");
        let shown = format!("{:?}", on());
        assert!(
            !shown.contains("sk_test_0123456789") && !shown.contains("whsec_abc"),
            "{shown}"
        );
    }

    #[test]
    fn prices_name_tiers() {
        let p = on().prices;
        assert_eq!(p.tier_of("price_pro"), Some(Tier::Pro));
        assert_eq!(p.tier_of("price_ent"), Some(Tier::Enterprise));
        assert_eq!(p.tier_of("price_other"), None);
        assert_eq!(p.price_of(Tier::Enterprise), Some("price_ent"));
        assert_eq!(p.price_of(Tier::Free), None);
        assert_eq!(
            on().portal_return_url(),
            Some("https://app.example/billing")
        );
        assert_eq!(on().past_due_grace_secs(), 7 * 86_400);
    }
}
