//! The property list as the Worker sees it, and the static landing pages generated from it.
//!
//! `deploy/properties.toml` is compiled into the Worker, so routing never depends on a
//! deploy-time upload being in step. The landing pages are rendered from the same entries by
//! `cargo run -p heady-xtask --bin heady-edge-config -- write` into
//! `edge/assets/<hostname>/index.html`, which Workers Static Assets serves; the Worker maps
//! `Host` + path to that directory.

use heady_shared::page::html_escape;
use heady_shared::properties::{Properties, Property, Serve};

/// Shared stylesheet for every landing page, served at [`STYLESHEET_PATH`] on every host.
pub const STYLESHEET_PATH: &str = "/_heady/site.css";

/// Where the asset generator writes, relative to the repository root (wrangler.toml's
/// `[assets] directory`).
pub const ASSETS_DIR: &str = "edge/assets";

/// The pages' policy and headers, shared with the origin's API reference.
pub use heady_shared::page::{CSP, SECURITY_HEADERS};

/// The property list compiled into the Worker (`heady_shared::properties::committed`).
pub use heady_shared::properties::committed as properties;

/// The asset path serving `request_path` of a static property, or `None` when the path
/// cannot name an asset (dot segments, backslashes, encoded separators).
pub fn asset_path(property: &Property, request_path: &str) -> Option<String> {
    if request_path == STYLESHEET_PATH {
        return Some(STYLESHEET_PATH.to_owned());
    }
    if !request_path.starts_with('/')
        || request_path.contains('\\')
        || request_path.contains('%')
        || request_path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
    {
        return None;
    }
    let path = if request_path.ends_with('/') {
        format!("{request_path}index.html")
    } else {
        request_path.to_owned()
    };
    Some(format!("/{}{path}", property.hostname))
}

/// Every file of `edge/assets`, as (path relative to it, contents), in a fixed order: one
/// landing page per static property the edge routes, plus the shared stylesheet.
pub fn render_assets(properties: &Properties) -> Vec<(String, String)> {
    let mut files = vec![(
        STYLESHEET_PATH.trim_start_matches('/').to_owned(),
        STYLESHEET.to_owned(),
    )];
    for property in properties
        .iter()
        .filter(|p| p.edge && p.serve == Serve::Assets)
    {
        files.push((
            format!("{}/index.html", property.hostname),
            landing_page(property),
        ));
    }
    files
}

/// A property's landing page: its own title and description, no scripts.
pub fn landing_page(property: &Property) -> String {
    let title = html_escape(property.title.as_deref().unwrap_or(&property.name));
    let description = html_escape(
        property
            .description
            .as_deref()
            .unwrap_or("A Heady property."),
    );
    let host = html_escape(&property.hostname);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="description" content="{description}">
<link rel="stylesheet" href="{STYLESHEET_PATH}">
</head>
<body>
<main>
<h1>{title}</h1>
<p class="lead">{description}</p>
<p class="host">{host}</p>
</main>
<footer>Served at the edge by Heady.</footer>
</body>
</html>
"#
    )
}

/// A small page for browsers that asked for a host or path nobody serves.
pub fn not_found_page(host: &str) -> String {
    let host = html_escape(host);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Not found</title>
<link rel="stylesheet" href="{STYLESHEET_PATH}">
</head>
<body>
<main>
<h1>Not found</h1>
<p class="lead">Nothing is served at this address on {host}.</p>
</main>
</body>
</html>
"#
    )
}

const STYLESHEET: &str = "body{margin:0;font-family:system-ui,sans-serif;background:#0b1020;color:#e8ecf5;display:flex;flex-direction:column;min-height:100vh}
main{flex:1;max-width:44rem;margin:0 auto;padding:12vh 1.5rem 2rem}
h1{font-size:2.6rem;margin:0 0 1rem}
.lead{font-size:1.25rem;line-height:1.5;color:#c4cbe0}
.host{color:#7f8bb0;font-family:ui-monospace,monospace}
footer{padding:1.5rem;text-align:center;color:#7f8bb0;font-size:.9rem}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_property_list_parses() {
        let props = properties().expect("deploy/properties.toml parses");
        assert_eq!(props.len(), 22);
    }

    #[test]
    fn every_routed_static_property_gets_its_own_page() {
        let props = properties().unwrap();
        let files = render_assets(props);
        let statics: Vec<_> = props
            .iter()
            .filter(|p| p.edge && p.serve == Serve::Assets)
            .collect();
        assert_eq!(files.len(), statics.len() + 1);
        for p in statics {
            let (_, page) = files
                .iter()
                .find(|(path, _)| path == &format!("{}/index.html", p.hostname))
                .expect("page rendered");
            let title = p.title.as_deref().unwrap();
            assert!(page.contains(&format!("<title>{}</title>", html_escape(title))));
            if let Some(d) = &p.description {
                assert!(page.contains(&html_escape(d)));
            }
        }
    }

    #[test]
    fn asset_paths_stay_inside_the_property() {
        let props = properties().unwrap();
        let me = props.for_host("headyme.com").unwrap();
        assert_eq!(
            asset_path(me, "/").as_deref(),
            Some("/headyme.com/index.html")
        );
        assert_eq!(
            asset_path(me, "/docs/").as_deref(),
            Some("/headyme.com/docs/index.html")
        );
        assert_eq!(
            asset_path(me, STYLESHEET_PATH).as_deref(),
            Some(STYLESHEET_PATH)
        );
        for bad in ["/../headyio.com/", "/a/./b", "/%2e%2e/x", "/a\\b", "x"] {
            assert_eq!(asset_path(me, bad), None, "{bad}");
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert!(not_found_page("<x>").contains("&lt;x&gt;"));
    }
}
