//! cloudflared's ingress rules, re-stated: what `cloudflared tunnel ingress validate` refuses.
//! Unlike cloudflared, which stops at the first error, every problem is reported.

use crate::config::{Config, IngressRule, IpRule, OriginRequest};
use heady_shared::properties::DurationError;
use std::net::IpAddr;

/// One reason cloudflared would refuse the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 0-based index into `ingress`, or `None` for the file as a whole.
    pub rule: Option<usize>,
    /// The rule's hostname as written (empty for a rule without one).
    pub hostname: Option<String>,
    pub kind: ProblemKind,
}

impl Problem {
    fn file(kind: ProblemKind) -> Problem {
        Problem {
            rule: None,
            hostname: None,
            kind,
        }
    }

    fn rule(index: usize, rule: &IngressRule, kind: ProblemKind) -> Problem {
        Problem {
            rule: Some(index),
            hostname: Some(rule.hostname.clone()),
            kind,
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

/// Rules are numbered from 1 in messages, as cloudflared numbers them ("Rule #2").
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.rule, self.hostname.as_deref()) {
            (Some(index), Some(host)) if !host.is_empty() => {
                write!(f, "rule #{} ({host}): {}", index + 1, self.kind)
            }
            (Some(index), _) => write!(f, "rule #{} (no hostname): {}", index + 1, self.kind),
            (None, _) => write!(f, "{}", self.kind),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProblemKind {
    #[error("the config file doesn't contain any ingress rules")]
    NoRules,
    #[error("{key}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{key}: {error}")]
    BadDuration { key: String, error: DurationError },
    #[error("the last ingress rule must match all URLs (no hostname, or \"*\", and no path)")]
    LastRuleNotCatchAll,
    #[error(
        "this rule matches every hostname and path, so the rules after it would never be used; only the last rule may"
    )]
    CatchAllNotLast,
    #[error(
        "hostname patterns can have at most one wildcard \"*\", only as the leftmost label, e.g. \"*.example.com\""
    )]
    BadWildcard,
    #[error("hostname cannot contain a port")]
    HostnameHasPort,
    #[error("path {path:?} is not a valid regular expression: {reason}")]
    BadPathRegex { path: String, reason: String },
    #[error(
        "service is missing: give a URL such as http://127.0.0.1:8080 or a special service such as http_status:404"
    )]
    MissingService,
    #[error("service {service:?}: the HTTP status must be a whole number from 100 to 999")]
    BadHttpStatus { service: String },
    #[error("service {service:?} is not a valid URL: {reason}")]
    ServiceNotUrl { service: String, reason: String },
    #[error("service {service:?} needs a scheme and a hostname, e.g. http://127.0.0.1:8080")]
    ServiceWithoutSchemeOrHost { service: String },
    #[error("service {service:?} has a path; cloudflared forwards the request's own path, so give only scheme://host[:port]")]
    ServiceHasPath { service: String },
    #[error("{key}: {reason}")]
    BadIpRule { key: String, reason: String },
    #[error("{key}: teamName cannot be blank when audTag is set")]
    AccessWithoutTeamName { key: String },
}

impl ProblemKind {
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::NoRules => "no_rules",
            ProblemKind::WrongType { .. } => "wrong_type",
            ProblemKind::BadDuration { .. } => "bad_duration",
            ProblemKind::LastRuleNotCatchAll => "last_rule_not_catch_all",
            ProblemKind::CatchAllNotLast => "catch_all_not_last",
            ProblemKind::BadWildcard => "bad_wildcard",
            ProblemKind::HostnameHasPort => "hostname_has_port",
            ProblemKind::BadPathRegex { .. } => "bad_path_regex",
            ProblemKind::MissingService => "missing_service",
            ProblemKind::BadHttpStatus { .. } => "bad_http_status",
            ProblemKind::ServiceNotUrl { .. } => "service_not_url",
            ProblemKind::ServiceWithoutSchemeOrHost { .. } => "service_without_scheme_or_host",
            ProblemKind::ServiceHasPath { .. } => "service_has_path",
            ProblemKind::BadIpRule { .. } => "bad_ip_rule",
            ProblemKind::AccessWithoutTeamName { .. } => "access_without_team_name",
        }
    }
}

/// What an ingress rule's `service` names, in the order cloudflared tries the forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// `unix:PATH` (HTTP) or `unix+tls:PATH` (HTTPS) over a Unix socket.
    UnixSocket { path: String, tls: bool },
    /// `http_status:NNN`: cloudflared answers with this status itself.
    HttpStatus(u16),
    /// `hello_world` / `hello-world`: cloudflared's built-in test server.
    HelloWorld,
    /// `socks-proxy`: a SOCKS proxy governed by `originRequest.ipRules`.
    SocksProxy,
    /// `bastion`, or any service on a rule with `originRequest.bastionMode: true`.
    Bastion,
    /// `scheme://host[:port]`: HTTP(S)/WS(S) is proxied; other schemes (tcp, ssh, rdp, ...)
    /// are streamed over WebSocket.
    Url { scheme: String, host: String },
}

/// Reads a `service` value as cloudflared does. `bastion_mode` is the rule's effective
/// `originRequest.bastionMode` (its own, else the top-level default).
pub fn parse_service(service: &str, bastion_mode: bool) -> Result<Service, ProblemKind> {
    if let Some(path) = service.strip_prefix("unix:") {
        return Ok(Service::UnixSocket {
            path: path.to_owned(),
            tls: false,
        });
    }
    if let Some(path) = service.strip_prefix("unix+tls:") {
        return Ok(Service::UnixSocket {
            path: path.to_owned(),
            tls: true,
        });
    }
    if let Some(code) = service.strip_prefix("http_status:") {
        // Go's strconv.Atoi: an optional sign and decimal digits.
        let bad = || ProblemKind::BadHttpStatus {
            service: service.to_owned(),
        };
        let status: i64 = code.parse().map_err(|_| bad())?;
        return u16::try_from(status)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .map(Service::HttpStatus)
            .ok_or_else(bad);
    }
    match service {
        "hello_world" | "hello-world" => return Ok(Service::HelloWorld),
        "socks-proxy" => return Ok(Service::SocksProxy),
        "bastion" => return Ok(Service::Bastion),
        _ if bastion_mode => return Ok(Service::Bastion),
        "" => return Err(ProblemKind::MissingService),
        _ => {}
    }
    parse_service_url(service)
}

/// `scheme://host[:port]` with nothing after the authority but an optional query or
/// fragment, which is what Go's url.Parse leaves with an empty path.
fn parse_service_url(service: &str) -> Result<Service, ProblemKind> {
    let no_scheme_or_host = || ProblemKind::ServiceWithoutSchemeOrHost {
        service: service.to_owned(),
    };
    let (scheme, rest) = service.split_once(':').ok_or_else(no_scheme_or_host)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let Some(after_slashes) = rest.strip_prefix("//").filter(|_| scheme_ok) else {
        return Err(no_scheme_or_host());
    };
    let authority_end = after_slashes
        .find(['/', '?', '#'])
        .unwrap_or(after_slashes.len());
    let (authority, tail) = after_slashes.split_at(authority_end);
    let host = authority_host(authority);
    if host.is_empty() {
        return Err(no_scheme_or_host());
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    if path_end > 0 {
        return Err(ProblemKind::ServiceHasPath {
            service: service.to_owned(),
        });
    }
    url::Url::parse(service).map_err(|e| ProblemKind::ServiceNotUrl {
        service: service.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Service::Url {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_owned(),
    })
}

/// The host of `[userinfo@]host[:port]`, without brackets, like Go's URL.Hostname().
pub(crate) fn authority_host(authority: &str) -> &str {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        return bracketed
            .split_once(']')
            .map_or(bracketed, |(host, _)| host);
    }
    host_port
        .split_once(':')
        .map_or(host_port, |(host, _)| host)
}

/// Go's net.SplitHostPort succeeds, i.e. cloudflared sees a port in the hostname.
fn has_port(hostname: &str) -> bool {
    let Some(last_colon) = hostname.rfind(':') else {
        return false;
    };
    let (search_open_from, search_close_from) = if hostname.starts_with('[') {
        match hostname.find(']') {
            Some(end) if end + 1 == last_colon => (1, end + 1),
            _ => return false,
        }
    } else {
        if hostname[..last_colon].contains(':') {
            return false;
        }
        (0, 0)
    };
    !hostname[search_open_from..].contains('[') && !hostname[search_close_from..].contains(']')
}

/// Compiles a rule's `path` regex. Rust's `regex` follows RE2 syntax like Go's `regexp`.
pub(crate) fn compile_path(path: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(path).size_limit(1 << 20).build()
}

/// The one-line reason of a regex error (its Display draws a caret diagram over lines).
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let reason = text
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "));
    reason.map_or_else(
        || text.split_whitespace().collect::<Vec<_>>().join(" "),
        str::to_owned,
    )
}

/// Every reason cloudflared would refuse `config`; empty means it would accept it.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = config.read_problems.clone();
    if config.ingress.is_empty() {
        problems.push(Problem::file(ProblemKind::NoRules));
        return problems;
    }
    problems.extend(check_options(
        &config.origin_request,
        "originRequest",
        Problem::file,
    ));

    let default_bastion = config.origin_request.bastion_mode.unwrap_or(false);
    let last = config.ingress.len() - 1;
    for (index, rule) in config.ingress.iter().enumerate() {
        if rule.malformed {
            continue;
        }
        let problem = |kind| Problem::rule(index, rule, kind);
        let bastion_mode = rule.origin_request.bastion_mode.unwrap_or(default_bastion);
        if let Err(kind) = parse_service(&rule.service, bastion_mode) {
            problems.push(problem(kind));
        }
        if has_port(&rule.hostname) {
            problems.push(problem(ProblemKind::HostnameHasPort));
        }
        if rule.hostname.rfind('*').is_some_and(|at| at > 0) {
            problems.push(problem(ProblemKind::BadWildcard));
        }
        match (index == last, rule.is_catch_all()) {
            (true, false) => problems.push(problem(ProblemKind::LastRuleNotCatchAll)),
            (false, true) => problems.push(problem(ProblemKind::CatchAllNotLast)),
            _ => {}
        }
        if !rule.path.is_empty() {
            if let Err(e) = compile_path(&rule.path) {
                problems.push(problem(ProblemKind::BadPathRegex {
                    path: rule.path.clone(),
                    reason: regex_reason(&e),
                }));
            }
        }
        problems.extend(check_options(
            &rule.origin_request,
            "originRequest",
            problem,
        ));
    }
    problems
}

/// Checks the options whose values cloudflared validates beyond their type.
fn check_options(
    options: &OriginRequest,
    section: &str,
    problem: impl Fn(ProblemKind) -> Problem,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, ip_rule) in options.ip_rules.iter().enumerate() {
        if let Err(reason) = check_ip_rule(ip_rule) {
            problems.push(problem(ProblemKind::BadIpRule {
                key: format!("{section}.ipRules[{i}]"),
                reason,
            }));
        }
    }
    if let Some(access) = &options.access {
        if access.required && access.team_name.is_empty() && !access.aud_tag.is_empty() {
            problems.push(problem(ProblemKind::AccessWithoutTeamName {
                key: format!("{section}.access"),
            }));
        }
    }
    problems
}

/// cloudflared's ipaccess rules: a CIDR prefix and ports from 1 to 65535. cloudflared
/// refuses a bad one on a `socks-proxy` rule and silently drops it elsewhere; dropping an
/// access rule unnoticed is worse than a refusal, so it is a problem everywhere here.
fn check_ip_rule(rule: &IpRule) -> Result<(), String> {
    let prefix = rule
        .prefix
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or("no prefix provided")?;
    let bad_cidr = || format!("prefix {prefix:?} is not a CIDR such as 10.0.0.0/8");
    let (address, bits) = prefix.split_once('/').ok_or_else(bad_cidr)?;
    let address: IpAddr = address.parse().map_err(|_| bad_cidr())?;
    let bits: u8 = bits.parse().map_err(|_| bad_cidr())?;
    let max_bits = if address.is_ipv4() { 32 } else { 128 };
    if bits > max_bits {
        return Err(bad_cidr());
    }
    if let Some(port) = rule.ports.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(format!(
            "invalid port {port}, needs to be between 1 and 65535"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const CATCH_ALL: &str = "  - service: http_status:404\n";

    fn problems(yaml: &str) -> Vec<Problem> {
        let (config, _) = parse(yaml).expect("readable YAML");
        validate(&config)
    }

    fn codes(yaml: &str) -> Vec<(Option<usize>, &'static str)> {
        problems(yaml).iter().map(|p| (p.rule, p.code())).collect()
    }

    /// One rule with the given body, then the catch-all.
    fn with_rule(body: &str) -> String {
        format!("ingress:\n  - {body}\n{CATCH_ALL}")
    }

    #[track_caller]
    fn assert_valid(yaml: &str) {
        let found = problems(yaml);
        assert!(
            found.is_empty(),
            "expected no problems in\n{yaml}\ngot {found:#?}"
        );
    }

    #[track_caller]
    fn assert_only(yaml: &str, rule: Option<usize>, code: &str) {
        assert_eq!(codes(yaml), [(rule, code)], "in\n{yaml}");
    }

    #[test]
    fn at_least_one_rule() {
        assert_valid(&format!("ingress:\n{CATCH_ALL}"));
        assert_only("tunnel: t\n", None, "no_rules");
        assert_only("ingress: []\n", None, "no_rules");
        assert_eq!(
            problems("ingress:\n")[0].to_string(),
            "the config file doesn't contain any ingress rules"
        );
    }

    #[test]
    fn the_last_rule_must_be_a_catch_all() {
        assert_valid("ingress:\n  - hostname: a.example.com\n    service: http://x\n  - hostname: \"*\"\n    service: http_status:404\n");
        let yaml = "ingress:\n  - hostname: a.example.com\n    service: http://x\n";
        assert_only(yaml, Some(0), "last_rule_not_catch_all");
        let message = problems(yaml)[0].to_string();
        assert!(
            message
                .starts_with("rule #1 (a.example.com): the last ingress rule must match all URLs"),
            "{message}"
        );
        // A path makes a hostname-less rule specific.
        assert_only(
            "ingress:\n  - path: ^/x\n    service: http://x\n",
            Some(0),
            "last_rule_not_catch_all",
        );
    }

    #[test]
    fn only_the_last_rule_may_be_a_catch_all() {
        let yaml =
            format!("ingress:\n  - service: http://x\n  - hostname: a.example.com\n    service: http://x\n{CATCH_ALL}");
        assert_only(&yaml, Some(0), "catch_all_not_last");
        let yaml = format!("ingress:\n  - hostname: \"*\"\n    service: http://x\n{CATCH_ALL}");
        assert_only(&yaml, Some(0), "catch_all_not_last");
        // A hostname-less rule with a path is not a catch-all.
        assert_valid(&with_rule("path: ^/healthz$\n    service: http://x"));
    }

    #[test]
    fn a_wildcard_only_as_the_leftmost_label() {
        assert_valid(&with_rule(
            "hostname: \"*.example.com\"\n    service: http://x",
        ));
        assert_only(
            &with_rule("hostname: \"a.*.example.com\"\n    service: http://x"),
            Some(0),
            "bad_wildcard",
        );
        assert_only(
            &with_rule("hostname: \"*.*.example.com\"\n    service: http://x"),
            Some(0),
            "bad_wildcard",
        );
        assert_only(
            &with_rule("hostname: \"example.*\"\n    service: http://x"),
            Some(0),
            "bad_wildcard",
        );
    }

    #[test]
    fn no_port_in_a_hostname() {
        assert_valid(&with_rule(
            "hostname: a.example.com\n    service: http://x:8080",
        ));
        assert_only(
            &with_rule("hostname: a.example.com:443\n    service: http://x"),
            Some(0),
            "hostname_has_port",
        );
        assert_only(
            &with_rule("hostname: \"a.example.com:\"\n    service: http://x"),
            Some(0),
            "hostname_has_port",
        );
        assert_only(
            &with_rule("hostname: \"[::1]:80\"\n    service: http://x"),
            Some(0),
            "hostname_has_port",
        );
        // Go's SplitHostPort fails on these, so cloudflared sees no port.
        assert_valid(&with_rule("hostname: \"::1\"\n    service: http://x"));
        assert_valid(&with_rule("hostname: \"[::1]\"\n    service: http://x"));
    }

    #[test]
    fn path_must_be_a_regular_expression() {
        assert_valid(&with_rule(
            "hostname: a.example.com\n    path: ^/api/(v1|v2)/.*\\.json$\n    service: http://x",
        ));
        assert_valid(&with_rule(
            "hostname: a.example.com\n    path: \"^\\\\/api\"\n    service: http://x",
        ));
        let yaml =
            with_rule("hostname: a.example.com\n    path: \"^/api/(v1\"\n    service: http://x");
        assert_only(&yaml, Some(0), "bad_path_regex");
        let message = problems(&yaml)[0].to_string();
        assert!(
            message.ends_with("is not a valid regular expression: unclosed group"),
            "{message}"
        );
        // RE2 (Go and Rust alike) has no look-around.
        assert_only(
            &with_rule("hostname: a.example.com\n    path: (?!/admin)\n    service: http://x"),
            Some(0),
            "bad_path_regex",
        );
    }

    #[test]
    fn service_urls_need_scheme_and_host_and_no_path() {
        for good in [
            "http://127.0.0.1:8080",
            "https://localhost",
            "ws://x:1",
            "tcp://localhost:22",
            "ssh://localhost:22",
            "rdp://localhost:3389",
            "http://[::1]:8080",
            "http://x?q=1",
        ] {
            assert_valid(&with_rule(&format!(
                "hostname: a.example.com\n    service: \"{good}\""
            )));
        }
        for (bad, code) in [
            ("127.0.0.1:8080", "service_without_scheme_or_host"),
            ("localhost", "service_without_scheme_or_host"),
            ("http://", "service_without_scheme_or_host"),
            ("http:///x", "service_without_scheme_or_host"),
            ("http://127.0.0.1:8080/", "service_has_path"),
            ("http://127.0.0.1:8080/api", "service_has_path"),
            ("http://exa mple.com", "service_not_url"),
            ("http://x:port", "service_not_url"),
            ("helloworld", "service_without_scheme_or_host"),
        ] {
            let yaml = with_rule(&format!("hostname: a.example.com\n    service: \"{bad}\""));
            assert_only(&yaml, Some(0), code);
        }
        assert_only(
            &with_rule("hostname: a.example.com"),
            Some(0),
            "missing_service",
        );
    }

    #[test]
    fn special_services() {
        for good in [
            "hello_world",
            "hello-world",
            "bastion",
            "socks-proxy",
            "unix:/run/heady.sock",
            "unix+tls:/run/h.sock",
            "http_status:404",
            "http_status:100",
            "http_status:999",
            "http_status:+503",
        ] {
            assert_valid(&with_rule(&format!(
                "hostname: a.example.com\n    service: \"{good}\""
            )));
        }
        for bad in [
            "http_status:99",
            "http_status:1000",
            "http_status:abc",
            "http_status:",
            "http_status:-404",
        ] {
            assert_only(
                &with_rule(&format!("hostname: a.example.com\n    service: \"{bad}\"")),
                Some(0),
                "bad_http_status",
            );
        }
        assert_eq!(
            parse_service("unix+tls:/s", false),
            Ok(Service::UnixSocket {
                path: "/s".into(),
                tls: true
            })
        );
        assert_eq!(
            parse_service("http_status:503", false),
            Ok(Service::HttpStatus(503))
        );
        // With bastionMode any service string is a bastion, as in cloudflared.
        assert_eq!(parse_service("not a url", true), Ok(Service::Bastion));
        assert_valid("originRequest:\n  bastionMode: true\ningress:\n  - hostname: a.example.com\n    service: anything\n  - service: http_status:404\n");
    }

    #[test]
    fn origin_request_values_need_the_right_types_and_units() {
        let good = "hostname: a.example.com
    service: http://x
    originRequest:
      connectTimeout: 30s
      tlsTimeout: 1m0s
      tcpKeepAlive: 500ms
      keepAliveTimeout: 1.5h
      keepAliveConnections: 100
      noHappyEyeballs: false
      noTLSVerify: true
      disableChunkedEncoding: off
      http2Origin: true
      matchSNItoHost: true
      httpHostHeader: internal.example
      originServerName: internal.example
      caPool: /etc/ssl/ca.pem
      proxyAddress: 127.0.0.1
      proxyPort: 0
      proxyType: socks";
        assert_valid(&with_rule(good));
        for (bad, code) in [
            ("connectTimeout: 30", "bad_duration"),
            ("connectTimeout: \"30\"", "bad_duration"),
            ("tlsTimeout: 10 seconds", "bad_duration"),
            ("tcpKeepAlive: -5s", "bad_duration"),
            ("keepAliveTimeout: [1s]", "wrong_type"),
            ("keepAliveConnections: many", "wrong_type"),
            ("keepAliveConnections: 1.5", "wrong_type"),
            ("noTLSVerify: \"true\"", "wrong_type"),
            ("http2Origin: 1", "wrong_type"),
            ("proxyPort: 65536", "wrong_type"),
            ("httpHostHeader: {a: b}", "wrong_type"),
        ] {
            let yaml = with_rule(&format!(
                "hostname: a.example.com\n    service: http://x\n    originRequest:\n      {bad}"
            ));
            assert_only(&yaml, Some(0), code);
        }
        // The top-level defaults are checked too.
        assert_only(
            &format!("originRequest:\n  connectTimeout: soon\ningress:\n{CATCH_ALL}"),
            None,
            "bad_duration",
        );
    }

    #[test]
    fn ip_rules_and_access() {
        let rule = |options: &str| {
            with_rule(&format!(
                "hostname: a.example.com\n    service: socks-proxy\n    originRequest:\n      {options}"
            ))
        };
        assert_valid(&rule("ipRules:\n        - {prefix: 10.0.0.0/8, ports: [80, 443], allow: true}\n        - {prefix: \"::/0\", allow: false}"));
        assert_only(
            &rule("ipRules:\n        - {ports: [80]}"),
            Some(0),
            "bad_ip_rule",
        );
        assert_only(
            &rule("ipRules:\n        - {prefix: 10.0.0.0/33}"),
            Some(0),
            "bad_ip_rule",
        );
        assert_only(
            &rule("ipRules:\n        - {prefix: 10.0.0.0}"),
            Some(0),
            "bad_ip_rule",
        );
        assert_only(
            &rule("ipRules:\n        - {prefix: 10.0.0.0/8, ports: [0]}"),
            Some(0),
            "bad_ip_rule",
        );
        assert_valid(&rule(
            "access: {required: true, teamName: heady, audTag: [aud]}",
        ));
        assert_valid(&rule("access: {required: true}"));
        assert_only(
            &rule("access: {required: true, audTag: [aud]}"),
            Some(0),
            "access_without_team_name",
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let yaml = "ingress:\n  - hostname: a.example.com:80\n    service: localhost\n  - service: http://x\n  - hostname: b.*.com\n    path: \"(\"\n    service: http://x/\n";
        assert_eq!(
            codes(yaml),
            [
                (Some(0), "service_without_scheme_or_host"),
                (Some(0), "hostname_has_port"),
                (Some(1), "catch_all_not_last"),
                (Some(2), "service_has_path"),
                (Some(2), "bad_wildcard"),
                (Some(2), "last_rule_not_catch_all"),
                (Some(2), "bad_path_regex"),
            ]
        );
        let shown: Vec<String> = problems(yaml).iter().map(ToString::to_string).collect();
        assert!(
            shown[2].starts_with("rule #2 (no hostname): "),
            "{}",
            shown[2]
        );
        assert!(shown[4].starts_with("rule #3 (b.*.com): "), "{}", shown[4]);
    }

    #[test]
    fn go_split_host_port_cases() {
        assert!(
            has_port("a:1")
                && has_port("a:")
                && has_port(":80")
                && has_port("[::1]:80")
                && has_port("[a]:")
        );
        assert!(
            !has_port("a")
                && !has_port("")
                && !has_port("a:b:c")
                && !has_port("[::1]")
                && !has_port("[::1]x:1")
        );
        assert!(!has_port("a[b:1") && !has_port("a]b:1"));
    }
}
