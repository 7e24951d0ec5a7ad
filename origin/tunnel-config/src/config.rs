//! cloudflared's `config.yml`, read leniently: every key cloudflared reads is typed, values of
//! the wrong type become `Problem`s (reported by `validate`) instead of stopping the read, so
//! an operator sees every mistake at once. Keys cloudflared does not know become `Warning`s,
//! as cloudflared's own strict second decode reports them.

use crate::validate::{Problem, ProblemKind};
use heady_shared::properties::{parse_go_duration, DurationError};
use serde_yaml_ng::{Mapping, Value};
use std::time::Duration;

/// A parsed cloudflared configuration (the parts that shape ingress).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `tunnel`: the tunnel's UUID or name.
    pub tunnel: Option<String>,
    /// `credentials-file`: the tunnel's credentials JSON.
    pub credentials_file: Option<String>,
    /// Top-level `originRequest`: defaults for every rule.
    pub origin_request: OriginRequest,
    pub ingress: Vec<IngressRule>,
    /// Values cloudflared's YAML decoder would refuse (a wrong type, a bad duration, a rule
    /// that is not a mapping). `validate` reports them together with the rule checks.
    pub read_problems: Vec<Problem>,
}

/// One `ingress` entry. Absent strings are empty, as in cloudflared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngressRule {
    pub hostname: String,
    pub path: String,
    pub service: String,
    pub origin_request: OriginRequest,
    /// The entry was not a mapping; its checks are skipped (its problem is already read).
    pub malformed: bool,
}

impl IngressRule {
    /// A catch-all matches every hostname and path: cloudflared requires exactly one, last.
    pub fn is_catch_all(&self) -> bool {
        (self.hostname.is_empty() || self.hostname == "*") && self.path.is_empty()
    }
}

/// A duration as written (`"30s"`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSetting {
    pub text: String,
    pub value: Duration,
}

/// cloudflared's `originRequest` options; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OriginRequest {
    pub connect_timeout: Option<DurationSetting>,
    pub tls_timeout: Option<DurationSetting>,
    pub tcp_keep_alive: Option<DurationSetting>,
    pub keep_alive_timeout: Option<DurationSetting>,
    pub no_happy_eyeballs: Option<bool>,
    pub keep_alive_connections: Option<u64>,
    pub http_host_header: Option<String>,
    pub origin_server_name: Option<String>,
    pub match_sni_to_host: Option<bool>,
    pub ca_pool: Option<String>,
    pub no_tls_verify: Option<bool>,
    pub disable_chunked_encoding: Option<bool>,
    pub bastion_mode: Option<bool>,
    pub proxy_address: Option<String>,
    pub proxy_port: Option<u16>,
    pub proxy_type: Option<String>,
    pub ip_rules: Vec<IpRule>,
    pub http2_origin: Option<bool>,
    pub access: Option<Access>,
}

/// One `originRequest.ipRules` entry (used by `socks-proxy` services).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRule {
    pub prefix: Option<String>,
    pub ports: Vec<i64>,
    pub allow: bool,
}

/// `originRequest.access`: cloudflared checks the Cloudflare Access JWT itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub required: bool,
    pub team_name: String,
    pub aud_tag: Vec<String>,
    pub environment: String,
}

/// The file is not YAML cloudflared could read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("YAML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("YAML error: {message}")]
    Yaml { message: String },
    #[error("the config must be a mapping of keys (tunnel, ingress, ...), found {found}")]
    NotAMapping { found: &'static str },
}

/// Something cloudflared accepts but that is probably not what the operator meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 0-based index into `ingress`, or `None` for the file as a whole.
    pub rule: Option<usize>,
    pub kind: WarningKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarningKind {
    #[error("unknown key {key:?} in {section}; cloudflared ignores it")]
    UnknownKey { section: String, key: String },
    #[error("top-level key {key:?} looks like {meant:?}, which cloudflared spells exactly so; it ignores this one")]
    LookalikeTopLevelKey { key: String, meant: &'static str },
    #[error("hostname {hostname:?}: '*' is a wildcard only as \"*.\" at the start, so this rule matches that literal name only")]
    LiteralWildcard { hostname: String },
    #[error("{section}.proxyType {value:?} is not a proxy type cloudflared knows (\"socks\" or empty); it is ignored")]
    UnknownProxyType { section: String, value: String },
}

impl Warning {
    pub fn code(&self) -> &'static str {
        match self.kind {
            WarningKind::UnknownKey { .. } => "unknown_key",
            WarningKind::LookalikeTopLevelKey { .. } => "lookalike_top_level_key",
            WarningKind::LiteralWildcard { .. } => "literal_wildcard",
            WarningKind::UnknownProxyType { .. } => "unknown_proxy_type",
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Some(index) => write!(f, "rule #{}: {}", index + 1, self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// Keys cloudflared's `Configuration` struct reads. Other top-level keys are handed to its
/// command-line flags (`credentials-file`, `loglevel`, `metrics`, ...), so they are not unknown.
const CONFIG_KEYS: [&str; 5] = [
    "tunnel",
    "credentials-file",
    "ingress",
    "originRequest",
    "warp-routing",
];
const RULE_KEYS: [&str; 4] = ["hostname", "path", "service", "originRequest"];

/// Reads a cloudflared config. Syntax errors carry the line and column; everything else
/// is collected into `Config::read_problems` and the returned warnings.
pub fn parse(yaml_text: &str) -> Result<(Config, Vec<Warning>), ParseError> {
    let mut document: Value = serde_yaml_ng::from_str(yaml_text).map_err(syntax_error)?;
    // `<<: *anchor` merge keys are part of the YAML cloudflared's decoder accepts.
    document.apply_merge().map_err(syntax_error)?;
    let mut reader = Reader::default();
    let config = match strip_tags(&document) {
        // An empty file: cloudflared logs it and goes on with no rules.
        Value::Null => Config::default(),
        Value::Mapping(top) => reader.config(top),
        other => {
            return Err(ParseError::NotAMapping {
                found: describe(other),
            })
        }
    };
    let Reader { warnings, problems } = reader;
    Ok((
        Config {
            read_problems: problems,
            ..config
        },
        warnings,
    ))
}

fn syntax_error(error: serde_yaml_ng::Error) -> ParseError {
    let message = error.to_string();
    match error.location() {
        Some(at) => {
            // The crate writes the location into its message; it is kept in fields instead.
            let location = format!(" at line {} column {}", at.line(), at.column());
            let message = message.replacen(&location, "", 1);
            ParseError::Syntax {
                line: at.line(),
                column: at.column(),
                message,
            }
        }
        None => ParseError::Yaml { message },
    }
}

/// Where a value sits, for messages: the rule (if any) and the key path inside it.
#[derive(Clone)]
struct At<'a> {
    rule: Option<usize>,
    hostname: &'a str,
    section: &'a str,
}

impl At<'_> {
    fn key(&self, key: &str) -> String {
        if self.section.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.section)
        }
    }

    fn problem(&self, kind: ProblemKind) -> Problem {
        Problem {
            rule: self.rule,
            hostname: self.rule.map(|_| self.hostname.to_owned()),
            kind,
        }
    }

    fn section_name(&self) -> String {
        match (self.rule, self.section.is_empty()) {
            (Some(_), true) => "the ingress rule".to_owned(),
            (_, false) => self.section.to_owned(),
            (None, true) => "the top level".to_owned(),
        }
    }
}

#[derive(Default)]
struct Reader {
    warnings: Vec<Warning>,
    problems: Vec<Problem>,
}

impl Reader {
    fn config(&mut self, top: &Mapping) -> Config {
        let at = At {
            rule: None,
            hostname: "",
            section: "",
        };
        let mut config = Config::default();
        for (key, value) in top {
            let Some(key) = self.key(&at, key) else {
                continue;
            };
            match key {
                "tunnel" => config.tunnel = self.string(&at, key, value),
                "credentials-file" => config.credentials_file = self.string(&at, key, value),
                "originRequest" => {
                    let section = At {
                        section: "originRequest",
                        ..at.clone()
                    };
                    config.origin_request = self.origin_request(&section, value);
                }
                "ingress" => config.ingress = self.ingress(value),
                "warp-routing" => self.warp_routing(value),
                other => {
                    if let Some(meant) = lookalike(other) {
                        self.warnings.push(Warning {
                            rule: None,
                            kind: WarningKind::LookalikeTopLevelKey {
                                key: other.to_owned(),
                                meant,
                            },
                        });
                    }
                }
            }
        }
        config
    }

    fn ingress(&mut self, value: &Value) -> Vec<IngressRule> {
        let top = At {
            rule: None,
            hostname: "",
            section: "",
        };
        let items = match strip_tags(value) {
            Value::Null => return Vec::new(),
            Value::Sequence(items) => items,
            other => {
                self.wrong_type(&top, "ingress", "a list of rules", other);
                return Vec::new();
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| match strip_tags(item) {
                Value::Mapping(fields) => self.rule(index, fields),
                other => {
                    let at = At {
                        rule: Some(index),
                        hostname: "",
                        section: "",
                    };
                    self.wrong_type(
                        &at,
                        &format!("ingress[{index}]"),
                        "a mapping (hostname, service, ...)",
                        other,
                    );
                    IngressRule {
                        malformed: true,
                        ..IngressRule::default()
                    }
                }
            })
            .collect()
    }

    fn rule(&mut self, index: usize, fields: &Mapping) -> IngressRule {
        // The hostname names the rule in every message, so it is read first.
        let unnamed = At {
            rule: Some(index),
            hostname: "",
            section: "",
        };
        let hostname = fields
            .get("hostname")
            .and_then(|value| self.string(&unnamed, "hostname", value))
            .unwrap_or_default();
        let at = At {
            hostname: &hostname,
            ..unnamed
        };
        let mut rule = IngressRule::default();
        for (key, value) in fields {
            let Some(key) = self.key(&at, key) else {
                continue;
            };
            match key {
                "hostname" => {}
                "path" => rule.path = self.string(&at, key, value).unwrap_or_default(),
                "service" => rule.service = self.string(&at, key, value).unwrap_or_default(),
                "originRequest" => {
                    let section = At {
                        section: "originRequest",
                        ..at.clone()
                    };
                    rule.origin_request = self.origin_request(&section, value);
                }
                other => self.unknown_key(&at, other),
            }
        }
        // A '*' anywhere but first is refused by `validate`; first but without a dot it is legal
        // for cloudflared, and literal.
        let literal_star =
            hostname.rfind('*') == Some(0) && hostname != "*" && !hostname.starts_with("*.");
        if literal_star {
            self.warnings.push(Warning {
                rule: Some(index),
                kind: WarningKind::LiteralWildcard {
                    hostname: hostname.clone(),
                },
            });
        }
        rule.hostname = hostname;
        rule
    }

    fn origin_request(&mut self, at: &At, value: &Value) -> OriginRequest {
        let mut options = OriginRequest::default();
        let fields = match strip_tags(value) {
            Value::Null => return options,
            Value::Mapping(fields) => fields,
            other => {
                self.wrong_type(at, "", "a mapping of options", other);
                return options;
            }
        };
        for (key, value) in fields {
            let Some(key) = self.key(at, key) else {
                continue;
            };
            match key {
                "connectTimeout" => options.connect_timeout = self.duration(at, key, value),
                "tlsTimeout" => options.tls_timeout = self.duration(at, key, value),
                "tcpKeepAlive" => options.tcp_keep_alive = self.duration(at, key, value),
                "keepAliveTimeout" => options.keep_alive_timeout = self.duration(at, key, value),
                "noHappyEyeballs" => options.no_happy_eyeballs = self.bool(at, key, value),
                "keepAliveConnections" => {
                    options.keep_alive_connections = self.unsigned(at, key, value)
                }
                "httpHostHeader" => options.http_host_header = self.string(at, key, value),
                "originServerName" => options.origin_server_name = self.string(at, key, value),
                "matchSNItoHost" => options.match_sni_to_host = self.bool(at, key, value),
                "caPool" => options.ca_pool = self.string(at, key, value),
                "noTLSVerify" => options.no_tls_verify = self.bool(at, key, value),
                "disableChunkedEncoding" => {
                    options.disable_chunked_encoding = self.bool(at, key, value)
                }
                "bastionMode" => options.bastion_mode = self.bool(at, key, value),
                "proxyAddress" => options.proxy_address = self.string(at, key, value),
                "proxyPort" => options.proxy_port = self.port(at, key, value),
                "proxyType" => {
                    options.proxy_type = self.string(at, key, value);
                    if let Some(kind) = options
                        .proxy_type
                        .as_deref()
                        .filter(|t| !t.is_empty() && *t != "socks")
                    {
                        self.warnings.push(Warning {
                            rule: at.rule,
                            kind: WarningKind::UnknownProxyType {
                                section: at.section.to_owned(),
                                value: kind.to_owned(),
                            },
                        });
                    }
                }
                "ipRules" => options.ip_rules = self.ip_rules(at, value),
                "http2Origin" => options.http2_origin = self.bool(at, key, value),
                "access" => options.access = self.access(at, value),
                other => self.unknown_key(at, other),
            }
        }
        options
    }

    fn ip_rules(&mut self, at: &At, value: &Value) -> Vec<IpRule> {
        let items = match strip_tags(value) {
            Value::Null => return Vec::new(),
            Value::Sequence(items) => items,
            other => {
                self.wrong_type(at, "ipRules", "a list of {prefix, ports, allow}", other);
                return Vec::new();
            }
        };
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let section = at.key(&format!("ipRules[{i}]"));
            let item_at = At {
                section: &section,
                ..at.clone()
            };
            let fields = match strip_tags(item) {
                Value::Mapping(fields) => fields,
                other => {
                    self.wrong_type(&item_at, "", "a mapping {prefix, ports, allow}", other);
                    continue;
                }
            };
            let mut rule = IpRule::default();
            for (key, value) in fields {
                let Some(key) = self.key(&item_at, key) else {
                    continue;
                };
                match key {
                    "prefix" => rule.prefix = self.string(&item_at, key, value),
                    "ports" => rule.ports = self.int_list(&item_at, key, value),
                    "allow" => rule.allow = self.bool(&item_at, key, value).unwrap_or_default(),
                    other => self.unknown_key(&item_at, other),
                }
            }
            rules.push(rule);
        }
        rules
    }

    fn access(&mut self, at: &At, value: &Value) -> Option<Access> {
        let section = at.key("access");
        let at = At {
            section: &section,
            ..at.clone()
        };
        let fields = match strip_tags(value) {
            Value::Null => return None,
            Value::Mapping(fields) => fields,
            other => {
                self.wrong_type(&at, "", "a mapping {required, teamName, audTag}", other);
                return None;
            }
        };
        let mut access = Access::default();
        for (key, value) in fields {
            let Some(key) = self.key(&at, key) else {
                continue;
            };
            match key {
                "required" => access.required = self.bool(&at, key, value).unwrap_or_default(),
                "teamName" => access.team_name = self.string(&at, key, value).unwrap_or_default(),
                "audTag" => access.aud_tag = self.string_list(&at, key, value),
                "environment" => {
                    access.environment = self.string(&at, key, value).unwrap_or_default()
                }
                other => self.unknown_key(&at, other),
            }
        }
        Some(access)
    }

    fn warp_routing(&mut self, value: &Value) {
        let at = At {
            rule: None,
            hostname: "",
            section: "warp-routing",
        };
        let fields = match strip_tags(value) {
            Value::Null => return,
            Value::Mapping(fields) => fields,
            other => return self.wrong_type(&at, "", "a mapping", other),
        };
        for (key, value) in fields {
            let Some(key) = self.key(&at, key) else {
                continue;
            };
            match key {
                "connectTimeout" | "tcpKeepAlive" => {
                    self.duration(&at, key, value);
                }
                "maxActiveFlows" => {
                    self.unsigned(&at, key, value);
                }
                other => self.unknown_key(&at, other),
            }
        }
    }

    /// A mapping key as text; non-string keys cannot name a field, so they are unknown.
    fn key<'v>(&mut self, at: &At, key: &'v Value) -> Option<&'v str> {
        match key {
            Value::String(key) => Some(key),
            other => {
                let shown = serde_yaml_ng::to_string(other).unwrap_or_default();
                self.unknown_key(at, shown.trim_end());
                None
            }
        }
    }

    fn unknown_key(&mut self, at: &At, key: &str) {
        self.warnings.push(Warning {
            rule: at.rule,
            kind: WarningKind::UnknownKey {
                section: at.section_name(),
                key: key.to_owned(),
            },
        });
    }

    fn wrong_type(&mut self, at: &At, key: &str, expected: &'static str, found: &Value) {
        let key = if key.is_empty() {
            at.section.to_owned()
        } else {
            at.key(key)
        };
        self.problems.push(at.problem(ProblemKind::WrongType {
            key,
            expected,
            found: describe(found).to_owned(),
        }));
    }

    /// Go's YAML decoder fills a string field from any scalar; null leaves it unset.
    fn string(&mut self, at: &At, key: &str, value: &Value) -> Option<String> {
        match strip_tags(value) {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            other => {
                self.wrong_type(at, key, "a string", other);
                None
            }
        }
    }

    /// Booleans, plus the YAML 1.1 words Go's decoder still accepts for a bool field.
    fn bool(&mut self, at: &At, key: &str, value: &Value) -> Option<bool> {
        match strip_tags(value) {
            Value::Null => None,
            Value::Bool(flag) => Some(*flag),
            Value::String(word) => match word.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
                _ => {
                    self.wrong_type(at, key, "true or false", value);
                    None
                }
            },
            other => {
                self.wrong_type(at, key, "true or false", other);
                None
            }
        }
    }

    fn unsigned(&mut self, at: &At, key: &str, value: &Value) -> Option<u64> {
        match strip_tags(value) {
            Value::Null => None,
            Value::Number(number) => match number.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.wrong_type(at, key, "a whole number, 0 or more", value);
                    None
                }
            },
            other => {
                self.wrong_type(at, key, "a whole number, 0 or more", other);
                None
            }
        }
    }

    fn port(&mut self, at: &At, key: &str, value: &Value) -> Option<u16> {
        match strip_tags(value) {
            Value::Null => None,
            Value::Number(number) => match number.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(port) => Some(port),
                None => {
                    self.wrong_type(at, key, "a port number (0-65535)", value);
                    None
                }
            },
            other => {
                self.wrong_type(at, key, "a port number (0-65535)", other);
                None
            }
        }
    }

    /// Go's YAML decoder refuses plain numbers for a duration: it needs a unit ("30s").
    fn duration(&mut self, at: &At, key: &str, value: &Value) -> Option<DurationSetting> {
        match strip_tags(value) {
            Value::Null => None,
            Value::String(text) => match parse_go_duration(text) {
                Ok(duration) => Some(DurationSetting {
                    text: text.clone(),
                    value: duration,
                }),
                Err(error) => {
                    self.problems.push(at.problem(ProblemKind::BadDuration {
                        key: at.key(key),
                        error,
                    }));
                    None
                }
            },
            Value::Number(number) => {
                let error = DurationError::MissingUnit(number.to_string());
                self.problems.push(at.problem(ProblemKind::BadDuration {
                    key: at.key(key),
                    error,
                }));
                None
            }
            other => {
                self.wrong_type(at, key, "a duration such as \"30s\"", other);
                None
            }
        }
    }

    fn int_list(&mut self, at: &At, key: &str, value: &Value) -> Vec<i64> {
        match strip_tags(value) {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| match strip_tags(item).as_i64() {
                    Some(n) => Some(n),
                    None => {
                        self.wrong_type(at, key, "a list of whole numbers", item);
                        None
                    }
                })
                .collect(),
            other => {
                self.wrong_type(at, key, "a list of whole numbers", other);
                Vec::new()
            }
        }
    }

    fn string_list(&mut self, at: &At, key: &str, value: &Value) -> Vec<String> {
        match strip_tags(value) {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| self.string(at, key, item))
                .collect(),
            other => {
                self.wrong_type(at, key, "a list of strings", other);
                Vec::new()
            }
        }
    }
}

/// Top-level keys that differ from one cloudflared reads only in case or punctuation:
/// cloudflared would silently take them for unknown flags.
fn lookalike(key: &str) -> Option<&'static str> {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let squashed = squash(key);
    CONFIG_KEYS
        .into_iter()
        .chain(RULE_KEYS)
        .find(|known| *known != key && squash(known) == squashed)
}

/// Local tags (`!foo value`) do not change what a field holds.
fn strip_tags(value: &Value) -> &Value {
    let mut value = value;
    while let Value::Tagged(tagged) = value {
        value = &tagged.value;
    }
    value
}

fn describe(value: &Value) -> &'static str {
    match strip_tags(value) {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> (Config, Vec<Warning>) {
        parse(yaml).expect("readable YAML")
    }

    #[test]
    fn reads_the_keys_cloudflared_reads() {
        let (config, warnings) = read(
            "tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef\n\
             credentials-file: /etc/cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json\n\
             originRequest:\n  connectTimeout: 1m30s\n  noTLSVerify: yes\n\
             ingress:\n\
             \x20 - hostname: api.example.com\n\
             \x20   path: ^/v1/\n\
             \x20   service: http://127.0.0.1:8080\n\
             \x20   originRequest:\n\
             \x20     keepAliveConnections: 10\n\
             \x20     proxyPort: 1080\n\
             \x20     ipRules:\n\
             \x20       - {prefix: 10.0.0.0/8, ports: [80, 443], allow: true}\n\
             \x20     access: {required: true, teamName: heady, audTag: [abc]}\n\
             \x20 - service: http_status:404\n",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(
            config.read_problems.is_empty(),
            "{:?}",
            config.read_problems
        );
        assert_eq!(
            config.tunnel.as_deref(),
            Some("6ff42ae2-765d-4adf-8112-31c55c1551ef")
        );
        assert!(config
            .credentials_file
            .as_deref()
            .is_some_and(|f| f.ends_with(".json")));
        let defaults = &config.origin_request;
        assert_eq!(
            defaults.connect_timeout.as_ref().map(|d| d.value),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            defaults.no_tls_verify,
            Some(true),
            "YAML 1.1 'yes' is a bool for Go's decoder"
        );
        assert_eq!(config.ingress.len(), 2);
        let api = &config.ingress[0];
        assert_eq!(
            (api.hostname.as_str(), api.path.as_str()),
            ("api.example.com", "^/v1/")
        );
        assert_eq!(api.origin_request.keep_alive_connections, Some(10));
        assert_eq!(api.origin_request.proxy_port, Some(1080));
        assert_eq!(api.origin_request.ip_rules[0].ports, [80, 443]);
        let access = api.origin_request.access.as_ref().expect("access read");
        assert!(access.required && access.team_name == "heady" && access.aud_tag == ["abc"]);
        assert!(config.ingress[1].is_catch_all());
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err =
            parse("ingress:\n  - hostname: a.example.com\n    service: [unclosed\n").unwrap_err();
        let ParseError::Syntax {
            line,
            column,
            message,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(*line >= 3, "line {line}: {message}");
        assert!(*column >= 1);
        let repeated = format!("at line {line} column {column}");
        assert!(
            !message.contains(&repeated),
            "the location is not repeated: {message}"
        );
        assert!(
            err.to_string().starts_with("YAML syntax error at line "),
            "{err}"
        );

        let err = parse("ingress:\n- service: a\n  service: b\n").unwrap_err();
        // A duplicate key is an error too (as in Go's decoder), located at its mapping.
        let ParseError::Syntax {
            line: 2, message, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(
            message.contains("ingress[0]: duplicate entry with key \"service\""),
            "{message}"
        );

        let err = parse("tunnel: x\n\tingress: []\n").unwrap_err();
        assert!(matches!(err, ParseError::Syntax { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_rejected() {
        assert_eq!(
            parse("- a\n- b\n"),
            Err(ParseError::NotAMapping { found: "a list" })
        );
        assert_eq!(
            parse("just text"),
            Err(ParseError::NotAMapping { found: "a string" })
        );
    }

    #[test]
    fn an_empty_file_reads_as_no_rules() {
        let (config, warnings) = read("");
        assert!(config.ingress.is_empty() && warnings.is_empty());
        let (config, _) = read("# only a comment\n");
        assert!(config.ingress.is_empty());
    }

    #[test]
    fn unknown_keys_warn_and_name_where_they_are() {
        let (config, warnings) = read(
            "tunnel: t\nloglevel: debug\nIngress: []\n\
             originRequest:\n  conectTimeout: 1s\n\
             ingress:\n  - hostname: a.example.com\n    servce: http://x\n    service: http://x\n\
             \x20   originRequest:\n      access: {required: false, team: x}\n\
             \x20 - service: http_status:404\n",
        );
        assert_eq!(config.ingress.len(), 2);
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 4, "{shown:#?}");
        assert!(
            shown[0].contains("\"Ingress\" looks like \"ingress\""),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].contains("\"conectTimeout\" in originRequest"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("rule #1") && shown[2].contains("\"servce\""),
            "{}",
            shown[2]
        );
        assert!(
            shown[3].contains("\"team\" in originRequest.access"),
            "{}",
            shown[3]
        );
        assert!(
            !shown.iter().any(|w| w.contains("loglevel")),
            "cloudflared flags are not unknown"
        );
    }

    #[test]
    fn wrong_types_become_problems_naming_the_rule_and_key() {
        let (config, _) = read(
            "ingress:\n  - hostname: a.example.com\n    service: http://x\n    originRequest:\n\
             \x20     connectTimeout: 30\n      noTLSVerify: \"true\"\n      keepAliveConnections: -1\n\
             \x20     proxyPort: 70000\n      tlsTimeout: 10 s\n  - not a rule\n  - service: http_status:404\n",
        );
        let shown: Vec<String> = config
            .read_problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown.len(), 6, "{shown:#?}");
        assert!(
            shown[0].contains("rule #1 (a.example.com)")
                && shown[0].contains("originRequest.connectTimeout")
        );
        assert!(shown[0].contains("missing unit"), "{}", shown[0]);
        assert!(
            shown[1].contains("originRequest.noTLSVerify: expected true or false"),
            "{}",
            shown[1]
        );
        assert!(shown[2].contains("keepAliveConnections"), "{}", shown[2]);
        assert!(shown[3].contains("proxyPort"), "{}", shown[3]);
        assert!(
            shown[4].contains("tlsTimeout") && shown[4].contains("unknown unit"),
            "{}",
            shown[4]
        );
        assert!(
            shown[5].starts_with("rule #2") && shown[5].contains("ingress[1]"),
            "{}",
            shown[5]
        );
        assert!(config.ingress[1].malformed);
    }

    #[test]
    fn anchors_and_merge_keys_are_resolved() {
        let (config, _) = read(
            "defaults: &fast\n  connectTimeout: 2s\n\
             ingress:\n  - hostname: a.example.com\n    service: http://x\n    originRequest:\n      <<: *fast\n\
             \x20 - service: http_status:404\n",
        );
        let timeout = config.ingress[0]
            .origin_request
            .connect_timeout
            .as_ref()
            .map(|d| d.text.as_str());
        assert_eq!(timeout, Some("2s"));
    }

    #[test]
    fn scalars_fill_string_fields_like_gos_decoder() {
        let (config, _) = read("ingress:\n  - hostname: 123\n    service: true\n");
        assert_eq!(config.ingress[0].hostname, "123");
        assert_eq!(config.ingress[0].service, "true");
    }

    #[test]
    fn a_star_inside_a_label_warns_that_it_is_literal() {
        let (_, warnings) =
            read("ingress:\n  - hostname: \"*example.com\"\n    service: http://x\n");
        assert!(matches!(
            &warnings[..],
            [Warning {
                rule: Some(0),
                kind: WarningKind::LiteralWildcard { .. }
            }]
        ));
        let (_, warnings) =
            read("ingress:\n  - hostname: \"*.example.com\"\n    service: http://x\n");
        assert!(warnings.is_empty());
    }
}
