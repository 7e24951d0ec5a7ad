//! Fuzz entry points, called by the cargo-fuzz targets in `origin/fuzz` and, over the
//! checked-in seeds, by this crate's tests (so they run without cargo-fuzz or nightly).

use crate::{match_rule, parse, render, validate, RenderSettings, RequestUrl};
use heady_shared::properties::Properties;

/// Arbitrary bytes as a cloudflared `config.yml` (and as a request URL, and as a properties
/// file to render): nothing may panic, a config that validates must match every request (it
/// has a catch-all), and a rendered config must read back valid and route each origin
/// hostname to its own rule. A disagreement panics, which is what the fuzzer reports.
pub fn tunnel_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // The same text as a request URL for `tunnel rule`.
    let _ = RequestUrl::parse(text);

    render_agrees_with_validate_and_match(text);

    let Ok((config, warnings)) = parse(text) else {
        return;
    };
    for warning in &warnings {
        let _ = warning.to_string();
    }
    let problems = validate(&config);
    for problem in &problems {
        let _ = problem.to_string();
    }
    for rule in &config.ingress {
        let host = rule.hostname.trim_start_matches("*.");
        let host = if host.is_empty() || host == "*" {
            "fuzz.example.com"
        } else {
            host
        };
        if let Ok(request) = RequestUrl::parse(&format!("https://{host}/fuzz")) {
            let _ = match_rule(&config, &request);
        }
    }
    if problems.is_empty() {
        let request =
            RequestUrl::parse("https://unmatched.example.net/any/path").expect("a valid URL");
        assert!(
            match_rule(&config, &request).is_some(),
            "a valid config has a catch-all"
        );
    }
}

/// When `text` is a valid properties file, what `render` writes is a config cloudflared
/// accepts, and each origin property reaches its own rule.
fn render_agrees_with_validate_and_match(text: &str) {
    let Ok(properties) = Properties::parse(text) else {
        return;
    };
    let settings = RenderSettings {
        tunnel_id: "00000000-0000-4000-8000-000000000000".into(),
        credentials_file: RenderSettings::default_credentials_file(
            "00000000-0000-4000-8000-000000000000",
        ),
        origin_url: "http://127.0.0.1:8080".into(),
        catch_all: "http_status:404".into(),
        ca_pool: None,
    };
    let yaml = render(&properties, &settings);
    let (config, warnings) = match parse(&yaml) {
        Ok(read) => read,
        Err(e) => panic!("rendered config does not read back: {e}\n{yaml}"),
    };
    assert!(
        warnings.is_empty(),
        "rendered config warns: {warnings:?}\n{yaml}"
    );
    let problems = validate(&config);
    assert!(
        problems.is_empty(),
        "rendered config refused: {problems:?}\n{yaml}"
    );
    let origin: Vec<_> = properties.origin_properties().collect();
    assert_eq!(config.ingress.len(), origin.len() + 1, "{yaml}");
    for (index, property) in origin.iter().enumerate() {
        // heady-shared checks LDH labels only, so an `xn--` label that is not valid punycode
        // passes there but is no URL host: no request can name it, so there is nothing to match.
        let Ok(request) = RequestUrl::parse(&format!("https://{}/", property.hostname)) else {
            continue;
        };
        assert_eq!(
            match_rule(&config, &request).map(|(i, _)| i),
            Some(index),
            "{} reaches another rule\n{yaml}",
            property.hostname
        );
    }
    // Origin properties are never under a reserved placeholder domain such as .invalid.
    let request = RequestUrl::parse("https://unmatched.invalid/").expect("a valid URL");
    assert_eq!(
        match_rule(&config, &request).map(|(i, _)| i),
        Some(origin.len()),
        "anything else reaches the catch-all\n{yaml}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/tunnel_config");

    /// Every checked-in seed passes the fuzz checks, so a seed that crashes (or a change that
    /// makes one crash) fails `cargo test` and not only a fuzz run.
    #[test]
    fn the_checked_in_seeds_pass_the_fuzz_checks() {
        let mut seeds: Vec<_> = fs::read_dir(Path::new(SEEDS))
            .expect("origin/fuzz/seeds/tunnel_config")
            .map(|entry| entry.expect("seed entry").path())
            .collect();
        seeds.sort();
        let names: Vec<_> = seeds
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        for expected in [
            "features.yml",
            "problems.yml",
            "properties.toml",
            "rendered.yml",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "seed {expected} missing: {names:?}"
            );
        }
        for seed in &seeds {
            let data = fs::read(seed).expect("read seed");
            tunnel_config(&data);
        }
    }

    /// The render check runs: the properties seed is a valid properties file.
    #[test]
    fn the_properties_seed_reaches_the_render_check() {
        let text = fs::read_to_string(Path::new(SEEDS).join("properties.toml")).expect("seed");
        let properties = Properties::parse(&text).expect("a valid properties file");
        assert!(properties.origin_properties().count() >= 2);
    }

    #[test]
    fn inputs_outside_the_invariants_are_not_failures() {
        // validate refuses a config without a catch-all, so matching may find nothing.
        tunnel_config(b"ingress:\n  - hostname: a.example.com\n    service: http://x\n");
        tunnel_config(b"\xff\xfe not utf-8");
        tunnel_config(b"");
        // A valid properties file whose `xn--` label is not punycode: no URL can name it.
        tunnel_config(
            b"[[property]]\nname = \"a\"\nhostname = \"xn--adm-ni0ua.example.org\"\nkind = \"api\"\n",
        );
    }
}
