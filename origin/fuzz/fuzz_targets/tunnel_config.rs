//! Arbitrary bytes as a cloudflared config.yml: parsing, validation and rule matching must
//! never panic, and a config that validates must match every request (it has a catch-all).
#![no_main]

use libfuzzer_sys::fuzz_target;

use heady_tunnel_config::{match_rule, parse, validate, RequestUrl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    // The same text as a request URL for `tunnel rule`.
    let _ = RequestUrl::parse(text);

    let Ok((config, warnings)) = parse(text) else { return };
    for warning in &warnings {
        let _ = warning.to_string();
    }
    let problems = validate(&config);
    for problem in &problems {
        let _ = problem.to_string();
    }
    for rule in &config.ingress {
        let host = rule.hostname.trim_start_matches("*.");
        let host = if host.is_empty() || host == "*" { "fuzz.example.com" } else { host };
        if let Ok(request) = RequestUrl::parse(&format!("https://{host}/fuzz")) {
            let _ = match_rule(&config, &request);
        }
    }
    if problems.is_empty() {
        let request = RequestUrl::parse("https://unmatched.example.net/any/path").expect("a valid URL");
        assert!(match_rule(&config, &request).is_some(), "a valid config has a catch-all");
    }
});
