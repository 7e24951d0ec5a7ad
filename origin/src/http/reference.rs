//! The API reference page: static HTML rendered on the server from the OpenAPI document
//! ([`openapi::document`]), no scripts, styled by a same-origin stylesheet (the pages' CSP,
//! `heady_shared::page::CSP`, allows nothing else). Operations are grouped by tag; each shows
//! method, path, class, auth, parameters, request and answer schemas and a curl example.

use super::openapi::{self, DOCUMENT_PATH, STYLESHEET_PATH};
use heady_shared::page::html_escape as escape;
use serde_json::Value;
use std::fmt::Write;
use std::sync::OnceLock;

/// The page, rendered once.
pub fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| render(&openapi::document()))
}

/// Markdown's inline code (`x`) as `<code>`; everything else escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `#/components/schemas/X` -> a link to X's section; any other schema as JSON.
fn schema_html(schema: &Value) -> String {
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return format!("<a href=\"#schema-{0}\"><code>{0}</code></a>", escape(name));
    }
    let text = serde_json::to_string_pretty(schema).unwrap_or_default();
    format!("<pre>{}</pre>", escape(&text))
}

fn anchor(op: &Value) -> String {
    format!("op-{}", escape(str_of(op, "operationId")))
}

fn operations_of<'a>(doc: &'a Value, tag: &str) -> Vec<(&'a str, &'a str, &'a Value)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for (method, op) in item {
                    if op["tags"][0] == tag {
                        out.push((method.as_str(), path.as_str(), op));
                    }
                }
            }
        }
    }
    out
}

fn render_operation(out: &mut String, doc: &Value, method: &str, path: &str, op: &Value) {
    let method_up = method.to_ascii_uppercase();
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{}\">\n<h3><span class=\"method {method}\">{method_up}</span> <code>{}</code></h3>\n<p class=\"summary\">{}</p>\n",
        anchor(op),
        escape(path),
        inline(str_of(op, "summary"))
    );
    if let Some(d) = op.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "<p>{}</p>", inline(d));
    }
    let auth = if op["security"].as_array().is_some_and(|s| s.len() == 1) {
        "API key required"
    } else {
        "API key optional (raises the tier)"
    };
    let _ = write!(
        out,
        "<dl class=\"policy\"><dt>class</dt><dd>{}</dd><dt>auth</dt><dd>{auth}</dd>",
        escape(str_of(op, "x-heady-class"))
    );
    if op["x-heady-keyed"] == true {
        out.push_str("<dt>account</dt><dd>answers for the key's account only</dd>");
    }
    if let Some(f) = op.get("x-heady-feature").and_then(Value::as_str) {
        let _ = write!(
            out,
            "<dt>tier feature</dt><dd><code>{}</code></dd>",
            escape(f)
        );
    }
    let limited = if op["x-heady-rate-limited"] == true {
        "yes"
    } else {
        "no"
    };
    let _ = writeln!(out, "<dt>rate limited</dt><dd>{limited}</dd></dl>");
    if let Some(params) = op["parameters"].as_array() {
        out.push_str("<h4>Parameters</h4>\n<table><tr><th>name</th><th>in</th><th>required</th><th>description</th></tr>\n");
        for p in params {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(str_of(p, "name")),
                escape(str_of(p, "in")),
                if p["required"] == true { "yes" } else { "no" },
                inline(str_of(p, "description"))
            );
        }
        out.push_str("</table>\n");
    }
    if let Some(body) = op.get("requestBody") {
        out.push_str("<h4>Request body</h4>\n");
        if let Some(d) = body.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "<p>{}</p>", inline(d));
        }
        if let Some(content) = body["content"].as_object() {
            for (media, m) in content {
                let _ = writeln!(
                    out,
                    "<p><code>{}</code>: {}</p>",
                    escape(media),
                    schema_html(&m["schema"])
                );
                if let Some(example) = m.get("example") {
                    let text = serde_json::to_string_pretty(example).unwrap_or_default();
                    let _ = writeln!(out, "<p>Example:</p><pre>{}</pre>", escape(&text));
                }
            }
        }
    }
    out.push_str(
        "<h4>Answers</h4>\n<table><tr><th>status</th><th>meaning</th><th>body</th></tr>\n",
    );
    if let Some(responses) = op["responses"].as_object() {
        for (status, r) in responses {
            let r = match r.get("$ref").and_then(Value::as_str) {
                Some(pointer) => doc.pointer(pointer.trim_start_matches('#')).unwrap_or(r),
                None => r,
            };
            let bodies: Vec<String> = r["content"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(media, m)| {
                            format!(
                                "<code>{}</code> {}",
                                escape(media),
                                schema_html(&m["schema"])
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                inline(str_of(r, "description")),
                bodies.join("<br>")
            );
        }
    }
    out.push_str("</table>\n");
    if let Some(sample) = op["x-codeSamples"][0].get("source").and_then(Value::as_str) {
        let _ = writeln!(
            out,
            "<h4>Example</h4>\n<pre class=\"curl\">{}</pre>",
            escape(sample)
        );
    }
    out.push_str("</section>\n");
}

/// The whole page.
pub fn render(doc: &Value) -> String {
    let title = escape(str_of(&doc["info"], "title"));
    let mut out = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} reference</title>
<link rel="stylesheet" href="{STYLESHEET_PATH}">
</head>
<body>
<header>
<h1>{title} <span class="version">{}</span></h1>
<p class="lead">{}</p>
<p>{}</p>
<p>The machine-readable document: <a href="{DOCUMENT_PATH}"><code>{DOCUMENT_PATH}</code></a> (OpenAPI {}). Base URL <code>{}</code>.</p>
</header>
<nav>
<h2>Operations</h2>
"#,
        escape(str_of(&doc["info"], "version")),
        inline(str_of(&doc["info"], "summary")),
        inline(str_of(&doc["info"], "description")),
        escape(str_of(doc, "openapi")),
        escape(openapi::SERVER),
    );
    let tags: Vec<(&str, &str)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| (str_of(t, "name"), str_of(t, "description")))
                .collect()
        })
        .unwrap_or_default();
    for (tag, _) in &tags {
        let _ = write!(
            out,
            "<h3><a href=\"#tag-{0}\">{0}</a></h3>\n<ul>\n",
            escape(tag)
        );
        for (method, path, op) in operations_of(doc, tag) {
            let _ = writeln!(
                out,
                "<li><a href=\"#{}\"><span class=\"method {method}\">{}</span> <code>{}</code></a></li>",
                anchor(op),
                method.to_ascii_uppercase(),
                escape(path)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h3><a href=\"#schemas\">schemas</a></h3>\n</nav>\n<main>\n");
    for (tag, description) in &tags {
        let _ = writeln!(
            out,
            "<section class=\"tag\" id=\"tag-{0}\">\n<h2>{0}</h2>\n<p>{1}</p>",
            escape(tag),
            inline(description)
        );
        for (method, path, op) in operations_of(doc, tag) {
            render_operation(&mut out, doc, method, path, op);
        }
        out.push_str("</section>\n");
    }
    out.push_str("<section id=\"schemas\">\n<h2>Schemas</h2>\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, s) in schemas {
            let text = serde_json::to_string_pretty(s).unwrap_or_default();
            let _ = writeln!(
                out,
                "<section class=\"schema\" id=\"schema-{0}\"><h3>{0}</h3><pre>{1}</pre></section>",
                escape(name),
                escape(&text)
            );
        }
    }
    out.push_str("</section>\n</main>\n<footer>Generated from the origin's route table (<code>heady-origin openapi</code>).</footer>\n</body>\n</html>\n");
    out
}

/// The page's stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = "body{margin:0;font-family:system-ui,sans-serif;background:#0b1020;color:#e8ecf5;display:grid;grid-template-columns:18rem 1fr;line-height:1.5}
header{grid-column:1/3;padding:2rem 2rem 1rem;border-bottom:1px solid #26304f}
h1{margin:0 0 .5rem}.version{font-size:1rem;color:#7f8bb0}
.lead{font-size:1.15rem;color:#c4cbe0}
nav{padding:1rem 1.5rem;border-right:1px solid #26304f;font-size:.9rem}
nav ul{list-style:none;padding:0;margin:0 0 1rem}nav li{margin:.15rem 0}
main{padding:1rem 2rem;min-width:0}
a{color:#8fb4ff}code,pre{font-family:ui-monospace,monospace}
pre{background:#141b33;padding:.75rem;overflow-x:auto;border-radius:4px;font-size:.85rem}
.op{border-top:1px solid #26304f;padding:1rem 0}
.method{display:inline-block;min-width:4rem;font-weight:700;font-family:ui-monospace,monospace}
.get{color:#6fd08c}.post{color:#8fb4ff}.patch{color:#e7c36a}.delete{color:#f07b7b}
dl.policy{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem}dl.policy dt{color:#7f8bb0}dl.policy dd{margin:0}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #26304f;padding:.3rem .6rem;text-align:left;vertical-align:top}
footer{grid-column:1/3;padding:1.5rem;text-align:center;color:#7f8bb0;font-size:.9rem}
@media (max-width:50rem){body{display:block}nav{border:0}}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_operation_and_has_no_script() {
        let doc = openapi::document();
        let html = render(&doc);
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(
            !html.contains(" style="),
            "inline styles are refused by the CSP"
        );
        assert!(html.contains(&format!(
            "<link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">"
        )));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(
                    html.contains(&format!("href=\"#op-{id}\"")),
                    "{method} {path}"
                );
                assert!(html.contains(&format!("id=\"op-{id}\"")), "{method} {path}");
            }
        }
        assert!(html.contains("<code>/v1/chat/completions</code>"));
        assert!(html.contains("curl -s https://headyapi.com/v1/models"));
        assert!(html.contains("id=\"schema-ChatCompletionRequest\""));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
        assert_eq!(inline("a `<b>` c"), "a <code>&lt;b&gt;</code> c");
    }
}
