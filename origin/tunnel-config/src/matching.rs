//! Which ingress rule cloudflared would pick for a request: the first rule whose hostname
//! and path both match, in file order.

use crate::config::{Config, IngressRule};
use crate::validate::{authority_host, compile_path};

/// The parts of a request URL that ingress matching looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrl {
    /// As written, without userinfo, port or IPv6 brackets.
    pub host: String,
    /// Percent-decoded, as Go's `URL.Path` is; empty for `https://host`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestUrlError {
    #[error("{0:?} doesn't have a hostname; give a full URL such as https://app.example.com/path")]
    NoHost(String),
    #[error("{url:?} is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
}

impl RequestUrl {
    pub fn parse(url: &str) -> Result<RequestUrl, RequestUrlError> {
        let no_host = || RequestUrlError::NoHost(url.to_owned());
        let invalid = |reason: String| RequestUrlError::Invalid {
            url: url.to_owned(),
            reason,
        };
        let (_scheme, rest) = url.split_once("://").ok_or_else(no_host)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let host = authority_host(authority);
        if host.is_empty() {
            return Err(no_host());
        }
        url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        let raw_path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
        let path = percent_decode(raw_path)
            .ok_or_else(|| invalid(format!("bad percent-escape in path {raw_path:?}")))?;
        Ok(RequestUrl {
            host: host.to_owned(),
            path,
        })
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape, which Go's url.Parse refuses too.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// The first rule that matches, with its 0-based index. `None` only for a config without a
/// catch-all, which `validate` refuses (cloudflared would then use its last rule).
pub fn match_rule<'c>(
    config: &'c Config,
    request: &RequestUrl,
) -> Option<(usize, &'c IngressRule)> {
    config
        .ingress
        .iter()
        .enumerate()
        .find(|(_, rule)| rule_matches(rule, request))
}

fn rule_matches(rule: &IngressRule, request: &RequestUrl) -> bool {
    if rule.malformed {
        return false;
    }
    // Unanchored, like Go's Regexp.MatchString: "/api" also matches "/v2/api/x".
    let path_matches =
        rule.path.is_empty() || compile_path(&rule.path).is_ok_and(|re| re.is_match(&request.path));
    path_matches && host_matches(&rule.hostname, &request.host)
}

/// Hostnames compare case-insensitively; `*.example.com` matches any name ending in
/// `.example.com` but not `example.com` itself. A rule written in Unicode also matches the
/// punycode form of the name, as cloudflared's does.
fn host_matches(rule_host: &str, request_host: &str) -> bool {
    if rule_host.is_empty() || rule_host == "*" {
        return true;
    }
    let request_host = request_host.to_lowercase();
    let matches = |pattern: &str| match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') => request_host.ends_with(suffix),
        _ => pattern == request_host,
    };
    matches(&rule_host.to_lowercase()) || punycode(rule_host).is_some_and(|ascii| matches(&ascii))
}

/// The ASCII (punycode) form of an internationalised rule hostname, if it has one.
fn punycode(rule_host: &str) -> Option<String> {
    if rule_host.is_ascii() {
        return None;
    }
    let (wildcard, domain) = match rule_host.strip_prefix("*.") {
        Some(domain) => ("*.", domain),
        None => ("", rule_host),
    };
    match url::Host::parse(domain).ok()? {
        url::Host::Domain(ascii) => Some(format!("{wildcard}{ascii}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const RULES: &str = "\
ingress:
  - hostname: api.example.com
    path: ^/v1/
    service: http://127.0.0.1:8081
  - hostname: API.example.com
    service: http://127.0.0.1:8080
  - hostname: \"*.apps.example.com\"
    service: http://127.0.0.1:8082
  - path: \\.(png|css)$
    service: http://127.0.0.1:8083
  - hostname: bücher.example.com
    service: http://127.0.0.1:8084
  - path: /a b/
    service: http://127.0.0.1:8085
  - service: http_status:404
";

    fn index_for(url: &str) -> usize {
        let (config, _) = parse(RULES).expect("readable");
        let request = RequestUrl::parse(url).expect("valid URL");
        match match_rule(&config, &request) {
            Some((index, _)) => index,
            None => panic!("the catch-all matches everything"),
        }
    }

    #[test]
    fn first_match_wins() {
        assert_eq!(index_for("https://api.example.com/v1/chat"), 0);
        assert_eq!(index_for("https://api.example.com/v2/chat"), 1);
        assert_eq!(index_for("https://api.example.com/"), 1);
    }

    #[test]
    fn hostnames_compare_case_insensitively_and_without_the_port() {
        assert_eq!(index_for("https://API.Example.COM:8443/v1/x"), 0);
        assert_eq!(index_for("http://api.example.com:80/other"), 1);
        assert_eq!(index_for("https://user:pw@api.example.com/v1/"), 0);
    }

    #[test]
    fn a_wildcard_matches_subdomains_only() {
        assert_eq!(index_for("https://one.apps.example.com/"), 2);
        assert_eq!(index_for("https://a.b.apps.example.com/"), 2);
        assert_eq!(index_for("https://ONE.Apps.example.com/"), 2);
        assert_eq!(
            index_for("https://apps.example.com/"),
            6,
            "*.apps.example.com does not match the apex"
        );
        assert_eq!(
            index_for("https://badapps.example.com/"),
            6,
            "the dot is part of the suffix"
        );
    }

    #[test]
    fn paths_are_unanchored_regexes_unless_anchored() {
        assert_eq!(index_for("https://any.example.org/img/logo.png"), 3);
        assert_eq!(
            index_for("https://any.example.org/logo.png?size=2"),
            3,
            "the query is not part of the path"
        );
        assert_eq!(
            index_for("https://any.example.org/logo.png.html"),
            6,
            "$ anchors the end"
        );
        assert_eq!(
            index_for("https://api.example.com/x/v1/y"),
            1,
            "^ anchors the start"
        );
        assert_eq!(
            index_for("https://any.example.org/x/a%20b/y"),
            5,
            "the path is percent-decoded"
        );
    }

    #[test]
    fn unicode_rules_match_punycode_requests() {
        assert_eq!(index_for("https://bücher.example.com/"), 4);
        assert_eq!(index_for("https://xn--bcher-kva.example.com/"), 4);
    }

    #[test]
    fn everything_else_reaches_the_catch_all() {
        assert_eq!(index_for("https://unknown.example.net/"), 6);
        assert_eq!(index_for("https://unknown.example.net"), 6);
    }

    #[test]
    fn request_urls_need_a_hostname() {
        assert_eq!(
            RequestUrl::parse("https://a.example.com:8443/x%2Fy?q#f"),
            Ok(RequestUrl {
                host: "a.example.com".into(),
                path: "/x/y".into()
            })
        );
        assert_eq!(
            RequestUrl::parse("http://[::1]:8080/").map(|r| r.host),
            Ok("::1".into())
        );
        assert!(matches!(
            RequestUrl::parse("a.example.com/x"),
            Err(RequestUrlError::NoHost(_))
        ));
        assert!(matches!(
            RequestUrl::parse("https:///x"),
            Err(RequestUrlError::NoHost(_))
        ));
        assert!(matches!(
            RequestUrl::parse("https://a.example.com/%zz"),
            Err(RequestUrlError::Invalid { .. })
        ));
        assert!(matches!(
            RequestUrl::parse("https://a b.example.com/"),
            Err(RequestUrlError::Invalid { .. })
        ));
    }

    #[test]
    fn without_a_catch_all_nothing_may_match() {
        let (config, _) = parse("ingress:\n  - hostname: a.example.com\n    service: http://x\n")
            .expect("readable");
        let request = RequestUrl::parse("https://b.example.com/").expect("valid");
        assert!(match_rule(&config, &request).is_none());
    }
}
