//! The branded web properties: the one list (`deploy/properties.toml`) that the edge
//! Worker's routes and the origin tunnel's ingress rules are both derived from.
//!
//! Parsing is pure (text in, typed list or error out), so the Worker, the origin CLI and
//! the tests read the same file the same way. The schema is documented at the top of
//! `deploy/properties.toml`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

/// The one property list, as committed: compiled into the Worker (routing never depends on a
/// deploy-time upload being in step) and into the origin (which property a tunnelled page
/// request is for).
pub const COMMITTED_TOML: &str = include_str!("../../deploy/properties.toml");

/// [`COMMITTED_TOML`], parsed once. A broken file is reported, never a panic (the tests of
/// both sides make sure the committed one parses).
pub fn committed() -> Result<&'static Properties, &'static PropertiesError> {
    static PARSED: OnceLock<Result<Properties, PropertiesError>> = OnceLock::new();
    PARSED
        .get_or_init(|| Properties::parse(COMMITTED_TOML))
        .as_ref()
}

/// What a property is for; decides which `Serve` values make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Static,
    Admin,
    Api,
    External,
    Discord,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Static => "static",
            Kind::Admin => "admin",
            Kind::Api => "api",
            Kind::External => "external",
            Kind::Discord => "discord",
        }
    }

    fn default_serve(self) -> Serve {
        match self {
            Kind::Static => Serve::Assets,
            Kind::External => Serve::External,
            Kind::Api | Kind::Admin | Kind::Discord => Serve::Origin,
        }
    }

    fn allows(self, serve: Serve) -> bool {
        match self {
            Kind::Static => serve == Serve::Assets,
            Kind::External => serve == Serve::External,
            Kind::Api | Kind::Discord => serve == Serve::Origin,
            Kind::Admin => matches!(serve, Serve::Origin | Serve::Assets),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who answers a property's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serve {
    /// Workers Static Assets at the edge.
    Assets,
    /// The origin daemon, through the Cloudflare Tunnel.
    Origin,
    /// A redirect to the property's external `url`.
    External,
}

impl Serve {
    pub fn as_str(self) -> &'static str {
        match self {
            Serve::Assets => "assets",
            Serve::Origin => "origin",
            Serve::External => "external",
        }
    }
}

impl fmt::Display for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-rule cloudflared `originRequest` options a property asks for. Durations keep the
/// text as written (validated as Go durations) so the rendered config says what the
/// operator wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginRequestOptions {
    pub connect_timeout: Option<String>,
    pub tls_timeout: Option<String>,
    pub tcp_keep_alive: Option<String>,
    pub keep_alive_timeout: Option<String>,
    pub keep_alive_connections: Option<u32>,
    pub no_happy_eyeballs: Option<bool>,
    pub no_tls_verify: Option<bool>,
    pub disable_chunked_encoding: Option<bool>,
    pub http2_origin: Option<bool>,
    pub match_sni_to_host: Option<bool>,
    pub http_host_header: Option<String>,
    pub origin_server_name: Option<String>,
    pub ca_pool: Option<String>,
    pub access: Option<AccessOptions>,
}

impl OriginRequestOptions {
    /// The duration options as (TOML key, value) pairs, for validation.
    fn durations(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("connect_timeout", self.connect_timeout.as_deref()),
            ("tls_timeout", self.tls_timeout.as_deref()),
            ("tcp_keep_alive", self.tcp_keep_alive.as_deref()),
            ("keep_alive_timeout", self.keep_alive_timeout.as_deref()),
        ]
    }
}

/// cloudflared's `originRequest.access`: cloudflared rejects requests without a valid
/// Cloudflare Access JWT for this team and audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessOptions {
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub team_name: String,
    #[serde(default)]
    pub aud_tag: Vec<String>,
}

/// One branded property, validated and with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    /// Lowercase ASCII (punycode for internationalised names).
    pub hostname: String,
    pub kind: Kind,
    pub serve: Serve,
    /// Redirect target, fixed in the file. An external property has this, `url_var`, or
    /// both; nothing else has either.
    pub url: Option<String>,
    /// The deployment setting (a Worker variable) that holds the redirect target; when it is
    /// set it wins over `url` ([`Property::external_url`]).
    pub url_var: Option<String>,
    /// The edge Worker routes this hostname.
    pub edge: bool,
    /// The origin's tunnel carries this hostname (it gets an ingress rule).
    pub origin: bool,
    pub origin_request: Option<OriginRequestOptions>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Set on placeholders and incomplete entries: what an operator must fill in.
    pub operator_todo: Option<String>,
}

/// The whole list, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    properties: Vec<Property>,
}

/// Why a properties file was rejected. Entry numbers are 1-based, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    /// TOML syntax, a wrong type, a missing or unknown key: the message names the key and
    /// the line.
    #[error("{0}")]
    Toml(String),
    #[error("the file lists no [[property]] entries")]
    Empty,
    #[error("property #{index} ({name}): {problem}")]
    Invalid {
        index: usize,
        name: String,
        problem: String,
    },
    #[error("property #{second} ({second_name}) has the same hostname {hostname:?} as property #{first} ({first_name}) (hostnames compare case-insensitively)")]
    DuplicateHostname {
        hostname: String,
        first: usize,
        first_name: String,
        second: usize,
        second_name: String,
    },
    #[error("property #{second} has the same name {name:?} as property #{first}")]
    DuplicateName {
        name: String,
        first: usize,
        second: usize,
    },
}

/// A Go `time.ParseDuration` string that cloudflared would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration {0:?}: expected a number followed by a unit, e.g. \"30s\" or \"1m30s\""
    )]
    Syntax(String),
    #[error("missing unit in duration {0:?}: write e.g. \"30s\"")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {text:?} (units: ns, us, ms, s, m, h)")]
    UnknownUnit { text: String, unit: String },
    #[error("duration {0:?} is out of range")]
    Overflow(String),
    #[error("duration {0:?} is negative")]
    Negative(String),
}

/// Parses a duration the way Go's `time.ParseDuration` does (cloudflared reads its
/// `originRequest` timeouts with it): a sequence of decimal numbers, each with a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `"300ms"`, `"1.5h"`, `"2h45m"`; `"0"` alone
/// needs no unit. Negative durations parse in Go but are meaningless for timeouts, so they
/// are rejected here.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_owned());
    let (negative, mut rest) = match text.as_bytes().first() {
        None => return Err(DurationError::Empty),
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(syntax());
        }
        // Go takes the unit to be everything up to the next digit or '.'.
        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: unit.to_owned(),
                })
            }
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
        // Fractions below a nanosecond are dropped, as in Go.
        let mut scale = nanos_per_unit;
        for digit in frac_part.bytes().take(40) {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        // Go keeps durations in an i64 of nanoseconds.
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
        rest = after_unit;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(text.to_owned()));
    }
    let secs = (total / 1_000_000_000) as u64;
    let subsec = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// The file as written, before defaults and cross-field checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertiesFile {
    #[serde(default)]
    property: Vec<PropertyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertyEntry {
    name: String,
    hostname: String,
    kind: Kind,
    serve: Option<Serve>,
    url: Option<String>,
    url_var: Option<String>,
    edge: Option<bool>,
    origin: Option<bool>,
    origin_request: Option<OriginRequestOptions>,
    title: Option<String>,
    description: Option<String>,
    operator_todo: Option<String>,
}

/// Top-level domains reserved by RFC 2606 / RFC 6761: they never resolve publicly.
const RESERVED_TLDS: [&str; 4] = ["invalid", "example", "test", "localhost"];

impl Properties {
    /// Parses and validates `deploy/properties.toml`.
    pub fn parse(toml_text: &str) -> Result<Properties, PropertiesError> {
        let file: PropertiesFile = toml::from_str(toml_text)
            .map_err(|e| PropertiesError::Toml(e.to_string().trim_end().to_owned()))?;
        if file.property.is_empty() {
            return Err(PropertiesError::Empty);
        }
        let mut properties = Vec::with_capacity(file.property.len());
        // lowercase hostname -> (1-based index, name); BTreeMap keeps messages deterministic.
        let mut hostnames: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, entry) in file.property.into_iter().enumerate() {
            let index = i + 1;
            let property = entry
                .validate()
                .map_err(|problem| PropertiesError::Invalid {
                    index,
                    name: property_label(index, &problem.name),
                    problem: problem.message,
                })?;
            if let Some(&first) = names.get(&property.name) {
                return Err(PropertiesError::DuplicateName {
                    name: property.name,
                    first,
                    second: index,
                });
            }
            names.insert(property.name.clone(), index);
            if let Some((first, first_name)) = hostnames.get(&property.hostname) {
                return Err(PropertiesError::DuplicateHostname {
                    hostname: property.hostname,
                    first: *first,
                    first_name: first_name.clone(),
                    second: index,
                    second_name: property.name,
                });
            }
            hostnames.insert(property.hostname.clone(), (index, property.name.clone()));
            properties.push(property);
        }
        Ok(Properties { properties })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Property> {
        self.properties.iter()
    }

    pub fn len(&self) -> usize {
        self.properties.len()
    }

    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }

    /// The property answering `host` (any case, no port), if the edge routes it.
    pub fn for_host(&self, host: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.edge && p.hostname.eq_ignore_ascii_case(host))
    }

    /// Properties the origin tunnel must carry, in file order: one ingress rule each.
    pub fn origin_properties(&self) -> impl Iterator<Item = &Property> {
        self.properties.iter().filter(|p| p.origin)
    }

    /// Hostnames the origin tunnel must carry, in file order.
    pub fn origin_hostnames(&self) -> Vec<&str> {
        self.origin_properties()
            .map(|p| p.hostname.as_str())
            .collect()
    }

    /// Hostnames the edge Worker routes (its `wrangler.toml` routes), in file order.
    pub fn edge_hostnames(&self) -> Vec<&str> {
        self.properties
            .iter()
            .filter(|p| p.edge)
            .map(|p| p.hostname.as_str())
            .collect()
    }

    /// Entries an operator still has to complete (`operator_todo` is set).
    pub fn pending(&self) -> impl Iterator<Item = &Property> {
        self.properties.iter().filter(|p| p.operator_todo.is_some())
    }
}

/// A problem with one entry; `name` is the entry's name if it had a usable one.
struct EntryProblem {
    name: String,
    message: String,
}

fn property_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("entry {index}")
    } else {
        name.to_owned()
    }
}

impl PropertyEntry {
    fn validate(self) -> Result<Property, EntryProblem> {
        let name = self.name;
        let fail = |message: String| EntryProblem {
            name: name.clone(),
            message,
        };

        if !is_valid_name(&name) {
            return Err(fail(format!(
                "name {name:?} must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            )));
        }
        check_hostname(&self.hostname)
            .map_err(|why| fail(format!("hostname {:?} {why}", self.hostname)))?;
        let hostname = self.hostname.to_ascii_lowercase();

        let serve = self.serve.unwrap_or_else(|| self.kind.default_serve());
        if !self.kind.allows(serve) {
            return Err(fail(format!(
                "kind \"{}\" cannot be served by \"{serve}\"",
                self.kind
            )));
        }
        let url = match (serve, self.url) {
            (Serve::External, Some(url)) => {
                check_external_url(&url).map_err(|why| fail(format!("url {url:?} {why}")))?;
                Some(url)
            }
            (_, Some(_)) => {
                return Err(fail(format!(
                    "url is only used with serve = \"external\", not \"{serve}\""
                )))
            }
            (_, None) => None,
        };
        let url_var = match (serve, self.url_var) {
            (Serve::External, Some(var)) => {
                if !is_valid_var_name(&var) {
                    return Err(fail(format!(
                        "url_var {var:?} must be a Worker variable name: A-Z, 0-9 and '_', starting with a letter, at most 64 characters"
                    )));
                }
                Some(var)
            }
            (_, Some(_)) => {
                return Err(fail(format!(
                    "url_var is only used with serve = \"external\", not \"{serve}\""
                )))
            }
            (_, None) => None,
        };
        if serve == Serve::External && url.is_none() && url_var.is_none() {
            return Err(fail(
                "serve = \"external\" needs a url (the https address to redirect to) or a url_var (the Worker variable that holds it)".into(),
            ));
        }

        let edge = self.edge.unwrap_or(true);
        let origin = self.origin.unwrap_or(serve == Serve::Origin);
        if serve == Serve::Origin && !origin {
            return Err(fail(
                "serve = \"origin\" needs origin = true (the tunnel must carry it)".into(),
            ));
        }
        if serve == Serve::External && origin {
            return Err(fail(
                "an external property is never reached through the origin tunnel: origin must be false".into(),
            ));
        }
        if origin && !edge {
            return Err(fail(
                "origin = true needs edge = true: the origin is reached only through the edge's defense".into(),
            ));
        }
        if (edge || origin) && is_reserved_placeholder(&hostname) {
            return Err(fail(format!(
                "hostname {hostname:?} is under a reserved placeholder domain and cannot be routed: set edge = false or give it a real hostname"
            )));
        }

        if let Some(options) = &self.origin_request {
            if !origin {
                return Err(fail(
                    "origin_request applies to the tunnel's ingress rule, which exists only with origin = true".into(),
                ));
            }
            for (key, value) in options.durations() {
                if let Some(text) = value {
                    parse_go_duration(text)
                        .map_err(|e| fail(format!("origin_request.{key}: {e}")))?;
                }
            }
            if let Some(access) = &options.access {
                if access.required && access.team_name.is_empty() {
                    return Err(fail(
                        "origin_request.access: required = true needs a team_name".into(),
                    ));
                }
            }
        }

        if serve == Serve::Assets && self.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Err(fail(
                "a property served from assets needs a title for its landing page".into(),
            ));
        }
        if let Some(todo) = &self.operator_todo {
            if todo.trim().is_empty() {
                return Err(fail(
                    "operator_todo, when present, must say what is left to do".into(),
                ));
            }
        }

        Ok(Property {
            name,
            hostname,
            kind: self.kind,
            serve,
            url,
            url_var,
            edge,
            origin,
            origin_request: self.origin_request,
            title: self.title,
            description: self.description,
            operator_todo: self.operator_todo,
        })
    }
}

fn is_valid_var_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl Property {
    /// Where an external property redirects: the value of its `url_var` setting when that is
    /// set (non-empty), else its fixed `url`. `configured` is the setting's value as the
    /// deployment has it. An error says what an operator has to set.
    pub fn external_url(&self, configured: Option<&str>) -> Result<String, String> {
        let configured = configured.map(str::trim).filter(|v| !v.is_empty());
        match (&self.url_var, configured, &self.url) {
            (Some(var), Some(value), _) => check_external_url(value)
                .map(|()| value.to_owned())
                .map_err(|why| format!("the setting {var} ({value:?}) {why}")),
            (_, _, Some(url)) => Ok(url.clone()),
            (Some(var), None, None) => Err(format!(
                "{} ({}) has no address yet: set {var} to the https URL it redirects to",
                self.hostname, self.name
            )),
            (None, _, None) => Err(format!("{} has no url", self.name)),
        }
    }
}

fn is_valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Checks an exact DNS hostname (LDH labels); says what is wrong otherwise.
fn check_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("is empty".into());
    }
    if host.contains("://") || host.contains('/') {
        return Err("must be a bare hostname, without scheme or path".into());
    }
    if host.contains(':') {
        return Err("must not contain a port".into());
    }
    if host.contains('*') {
        return Err("must be exact: wildcards are not supported for properties".into());
    }
    if !host.is_ascii() {
        return Err("must be ASCII: write internationalised names in punycode (xn--...)".into());
    }
    if host.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels, e.g. example.com".into());
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty label or one longer than 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "has a label {label:?} with characters other than letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "has a label {label:?} that starts or ends with '-'"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("must be a DNS name, not an IP address".into());
    }
    Ok(())
}

fn check_external_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must start with https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host);
    check_hostname(host).map_err(|why| format!("has a host that {why}"))?;
    if is_reserved_placeholder(&host.to_ascii_lowercase()) {
        return Err("has a placeholder host that never resolves".into());
    }
    Ok(())
}

fn is_reserved_placeholder(hostname: &str) -> bool {
    hostname
        .rsplit('.')
        .next()
        .is_some_and(|tld| RESERVED_TLDS.contains(&tld))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_FILE: &str = COMMITTED_TOML;

    fn one(fields: &str) -> String {
        format!("[[property]]\n{fields}\n")
    }

    fn parse_err(text: &str) -> String {
        match Properties::parse(text) {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_real_file_lists_22_properties_with_the_seed_hostnames() {
        let props = Properties::parse(REAL_FILE).expect("deploy/properties.toml parses");
        assert_eq!(props.len(), 22);
        let edge = props.edge_hostnames();
        for seed in [
            "headysystems.com",
            "headyme.com",
            "headyio.com",
            "headyapi.com",
            "headymcp.com",
            "headyconnection.org",
            "headybuddy.org",
            "headyweb.com",
            "admin.headysystems.com",
            "discord.headysystems.com",
            "1ime1.com",
        ] {
            assert!(edge.contains(&seed), "{seed} is routed by the edge");
        }
        let kinds = |k: Kind| props.iter().filter(|p| p.kind == k && p.edge).count();
        assert_eq!(kinds(Kind::External), 3, "three Hugging Face Spaces");
        assert_eq!(kinds(Kind::Discord), 1);
        assert_eq!(kinds(Kind::Admin), 1);
        assert_eq!(props.pending().count(), 8, "8 placeholders to fill in");
        let spaces: Vec<_> = props
            .iter()
            .filter(|p| p.kind == Kind::External)
            .map(|p| (p.url.as_deref(), p.url_var.as_deref()))
            .collect();
        assert_eq!(
            spaces,
            [
                (None, Some("SPACE_1_URL")),
                (None, Some("SPACE_2_URL")),
                (None, Some("SPACE_3_URL"))
            ],
            "each Space's URL is a deployment setting"
        );
    }

    #[test]
    fn the_real_file_sends_only_api_admin_and_discord_to_the_origin() {
        let props = Properties::parse(REAL_FILE).expect("parses");
        assert_eq!(
            props.origin_hostnames(),
            [
                "headyapi.com",
                "headymcp.com",
                "admin.headysystems.com",
                "discord.headysystems.com"
            ]
        );
        // The origin is reached only through the edge: every tunnel hostname is an edge route.
        let edge = props.edge_hostnames();
        for host in props.origin_hostnames() {
            assert!(
                edge.contains(&host),
                "{host} reaches the origin without an edge route"
            );
        }
        let api = props
            .for_host("HeadyAPI.com")
            .expect("case-insensitive lookup");
        let options = api
            .origin_request
            .as_ref()
            .expect("headyapi asks for originRequest options");
        assert_eq!(options.connect_timeout.as_deref(), Some("10s"));
    }

    #[test]
    fn defaults_follow_the_kind() {
        let text = [
            one("name = \"a\"\nhostname = \"a.example.com\"\nkind = \"static\"\ntitle = \"A\""),
            one("name = \"b\"\nhostname = \"b.example.com\"\nkind = \"api\""),
            one("name = \"c\"\nhostname = \"c.example.com\"\nkind = \"external\"\nurl = \"https://x.example.org/\""),
            one("name = \"d\"\nhostname = \"d.example.com\"\nkind = \"admin\"\nserve = \"assets\"\ntitle = \"D\"\norigin = true"),
        ]
        .concat();
        let props = Properties::parse(&text).expect("valid");
        let got: Vec<(Serve, bool, bool)> =
            props.iter().map(|p| (p.serve, p.edge, p.origin)).collect();
        assert_eq!(
            got,
            [
                (Serve::Assets, true, false),
                (Serve::Origin, true, true),
                (Serve::External, true, false),
                (Serve::Assets, true, true),
            ]
        );
        assert_eq!(props.origin_hostnames(), ["b.example.com", "d.example.com"]);
    }

    #[test]
    fn duplicate_hostnames_are_rejected_case_insensitively_naming_both_entries() {
        let text = [
            one("name = \"first\"\nhostname = \"api.example.com\"\nkind = \"api\""),
            one("name = \"other\"\nhostname = \"other.example.com\"\nkind = \"api\""),
            one("name = \"second\"\nhostname = \"API.Example.com\"\nkind = \"api\""),
        ]
        .concat();
        let err = Properties::parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                PropertiesError::DuplicateHostname {
                    first: 1,
                    second: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("#1 (first)") && message.contains("#3 (second)"),
            "{message}"
        );
        assert!(message.contains("api.example.com"), "{message}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = [
            one("name = \"same\"\nhostname = \"a.example.com\"\nkind = \"api\""),
            one("name = \"same\"\nhostname = \"b.example.com\"\nkind = \"api\""),
        ]
        .concat();
        assert!(matches!(
            Properties::parse(&text),
            Err(PropertiesError::DuplicateName {
                first: 1,
                second: 2,
                ..
            })
        ));
    }

    #[test]
    fn invalid_hostnames_are_rejected_with_the_reason() {
        for (host, why) in [
            ("", "is empty"),
            ("https://a.example.com", "without scheme"),
            ("a.example.com:8080", "port"),
            ("*.example.com", "wildcards"),
            ("localhost", "two labels"),
            ("a..example.com", "empty label"),
            ("-a.example.com", "starts or ends with '-'"),
            ("a_b.example.com", "characters other than"),
            ("bücher.example.com", "punycode"),
            ("10.0.0.1", "IP address"),
        ] {
            let message = parse_err(&one(&format!(
                "name = \"p\"\nhostname = {host:?}\nkind = \"api\""
            )));
            assert!(
                message.contains("property #1 (p)") && message.contains(why),
                "{host:?}: {message}"
            );
        }
    }

    #[test]
    fn unknown_kind_and_unknown_keys_name_the_key_and_line() {
        let message = parse_err(&one(
            "name = \"p\"\nhostname = \"p.example.com\"\nkind = \"blog\"",
        ));
        assert!(
            message.contains("blog") && message.contains("line 4"),
            "{message}"
        );
        let message = parse_err(&one(
            "name = \"p\"\nhostname = \"p.example.com\"\nkind = \"api\"\norigni = true",
        ));
        assert!(
            message.contains("origni") && message.contains("line 5"),
            "{message}"
        );
        let message = parse_err(&one(
            "name = \"p\"\nhostname = \"p.example.com\"\nkind = \"api\"\n[property.origin_request]\nconect_timeout = \"1s\"",
        ));
        assert!(message.contains("conect_timeout"), "{message}");
        let message = parse_err("[[property]\nname = 1");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn an_external_url_comes_from_its_setting_else_from_the_file() {
        let parse_one = |fields: &str| {
            Properties::parse(&one(&format!(
                "name = \"s\"\nhostname = \"s.example.com\"\nkind = \"external\"\n{fields}"
            )))
            .map(|p| p.iter().next().unwrap().clone())
        };
        let from_var = parse_one("url_var = \"SPACE_URL\"").unwrap();
        assert_eq!(
            from_var.external_url(Some(" https://huggingface.co/spaces/heady/one ")),
            Ok("https://huggingface.co/spaces/heady/one".to_owned())
        );
        for unset in [None, Some(""), Some("  ")] {
            let err = from_var.external_url(unset).unwrap_err();
            assert!(err.contains("set SPACE_URL"), "{err}");
        }
        for bad in [
            "http://x.example.org/",
            "https://space.example.invalid/",
            "https:///x",
        ] {
            let err = from_var.external_url(Some(bad)).unwrap_err();
            assert!(err.starts_with("the setting SPACE_URL"), "{err}");
        }
        let both = parse_one("url = \"https://a.example.org/\"\nurl_var = \"SPACE_URL\"").unwrap();
        assert_eq!(
            both.external_url(None),
            Ok("https://a.example.org/".to_owned())
        );
        assert_eq!(
            both.external_url(Some("https://b.example.org/")),
            Ok("https://b.example.org/".to_owned())
        );
        assert!(parse_err(&one(
            "name = \"s\"\nhostname = \"s.example.com\"\nkind = \"external\"\nurl_var = \"lower\""
        ))
        .contains("Worker variable name"));
        assert!(parse_err(&one("name = \"s\"\nhostname = \"s.example.com\"\nkind = \"static\"\ntitle = \"S\"\nurl_var = \"X\"")).contains("only used with serve"));
        assert!(parse_err(&one("name = \"s\"\nhostname = \"s.example.com\"\nkind = \"external\"\nurl = \"https://s.example.invalid/\"")).contains("placeholder"));
    }

    #[test]
    fn external_properties_need_an_https_url_and_nothing_else_takes_one() {
        let base = "name = \"s\"\nhostname = \"s.example.com\"\nkind = \"external\"";
        assert!(parse_err(&one(base)).contains("needs a url"));
        assert!(
            parse_err(&one(&format!("{base}\nurl = \"http://x.example.org/\"")))
                .contains("https://")
        );
        assert!(parse_err(&one(&format!("{base}\nurl = \"https:///nohost\""))).contains("host"));
        assert!(parse_err(&one(&format!(
            "{base}\nurl = \"https://x.example.org/\"\norigin = true"
        )))
        .contains("never reached"));
        let api_with_url =
            "name = \"a\"\nhostname = \"a.example.com\"\nkind = \"api\"\nurl = \"https://x.example.org/\"";
        assert!(parse_err(&one(api_with_url)).contains("only used with serve = \"external\""));
    }

    #[test]
    fn serve_must_fit_the_kind_and_origin_the_serve() {
        let message = parse_err(&one(
            "name = \"a\"\nhostname = \"a.example.com\"\nkind = \"api\"\nserve = \"assets\"",
        ));
        assert!(
            message.contains("cannot be served by \"assets\""),
            "{message}"
        );
        let message = parse_err(&one(
            "name = \"a\"\nhostname = \"a.example.com\"\nkind = \"api\"\norigin = false",
        ));
        assert!(message.contains("needs origin = true"), "{message}");
        let message = parse_err(&one(
            "name = \"a\"\nhostname = \"a.example.com\"\nkind = \"api\"\nedge = false",
        ));
        assert!(message.contains("needs edge = true"), "{message}");
        let message = parse_err(&one(
            "name = \"a\"\nhostname = \"a.example.com\"\nkind = \"static\"",
        ));
        assert!(message.contains("needs a title"), "{message}");
    }

    #[test]
    fn placeholders_must_stay_parked() {
        let parked = "name = \"p\"\nhostname = \"p.example.invalid\"\nkind = \"static\"\ntitle = \"P\"\nedge = false";
        let props = Properties::parse(&one(parked)).expect("a parked placeholder is fine");
        assert!(props.edge_hostnames().is_empty() && props.origin_hostnames().is_empty());
        let routed =
            "name = \"p\"\nhostname = \"p.example.invalid\"\nkind = \"static\"\ntitle = \"P\"";
        assert!(parse_err(&one(routed)).contains("reserved placeholder domain"));
    }

    #[test]
    fn origin_request_is_checked() {
        let api = "name = \"a\"\nhostname = \"a.example.com\"\nkind = \"api\"";
        let ok = one(&format!(
            "{api}\n[property.origin_request]\nconnect_timeout = \"1m30s\"\nkeep_alive_connections = 10\nno_tls_verify = false"
        ));
        let props = Properties::parse(&ok).expect("valid");
        let options = props
            .iter()
            .next()
            .and_then(|p| p.origin_request.clone())
            .expect("options kept");
        assert_eq!(options.connect_timeout.as_deref(), Some("1m30s"));
        assert_eq!(options.keep_alive_connections, Some(10));

        let message = parse_err(&one(&format!(
            "{api}\n[property.origin_request]\nconnect_timeout = \"30\""
        )));
        assert!(
            message.contains("origin_request.connect_timeout") && message.contains("missing unit"),
            "{message}"
        );
        let message = parse_err(&one(&format!(
            "{api}\n[property.origin_request]\nkeep_alive_connections = \"ten\""
        )));
        assert!(message.contains("keep_alive_connections"), "{message}");
        let message = parse_err(&one(&format!(
            "{api}\n[property.origin_request.access]\nrequired = true"
        )));
        assert!(message.contains("team_name"), "{message}");
        let static_with_options = "name = \"s\"\nhostname = \"s.example.com\"\nkind = \"static\"\ntitle = \"S\"\n[property.origin_request]\nconnect_timeout = \"1s\"";
        assert!(parse_err(&one(static_with_options)).contains("only with origin = true"));
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert_eq!(Properties::parse(""), Err(PropertiesError::Empty));
        assert_eq!(
            Properties::parse("# nothing yet\n"),
            Err(PropertiesError::Empty)
        );
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let ok = [
            ("0", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("+5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("5.s", Duration::from_secs(5)),
            ("300ms", Duration::from_millis(300)),
            ("2us", Duration::from_micros(2)),
            ("2µs", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("-0s", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
        let bad = [
            ("", DurationError::Empty),
            ("30", DurationError::MissingUnit("30".into())),
            ("s", DurationError::Syntax("s".into())),
            (".s", DurationError::Syntax(".s".into())),
            ("-", DurationError::Syntax("-".into())),
            (
                "1d",
                DurationError::UnknownUnit {
                    text: "1d".into(),
                    unit: "d".into(),
                },
            ),
            (
                "1 s",
                DurationError::UnknownUnit {
                    text: "1 s".into(),
                    unit: " s".into(),
                },
            ),
            ("-1s", DurationError::Negative("-1s".into())),
            ("9999999999h", DurationError::Overflow("9999999999h".into())),
            (
                "99999999999999999999999999999999999999999s",
                DurationError::Overflow("99999999999999999999999999999999999999999s".into()),
            ),
        ];
        for (text, want) in bad {
            assert_eq!(parse_go_duration(text), Err(want), "{text}");
        }
    }
}
