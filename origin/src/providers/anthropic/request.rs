//! An OpenAI chat-completions request translated to an Anthropic Messages request. Pure: no
//! I/O, no clock; what cannot be translated is refused with the field at fault, what has no
//! equivalent is named so the caller can log it.

use serde_json::{json, Map, Value};

/// `max_tokens` when the request gives none (the Messages API requires it; the pipeline sets
/// one for capped tiers).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Image types the Messages API takes as base64 data.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// A request the Messages API could not take, refused before it is sent: the field at fault
/// (`messages[3].tool_calls[0].function.arguments`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub param: String,
    pub message: String,
}

fn refuse(param: impl Into<String>, message: impl Into<String>) -> Untranslatable {
    Untranslatable {
        param: param.into(),
        message: message.into(),
    }
}

/// The Messages request body, and the OpenAI fields left out because the Messages API has no
/// equivalent for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub body: Map<String, Value>,
    pub ignored: Vec<String>,
}

/// The OpenAI fields this translation reads; any other field is left out (and named).
const READ: [&str; 17] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "user",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "response_format",
    "functions",
    "function_call",
];

fn is_set(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Translates an OpenAI chat request (`body`) for `model`. Usage always comes back (the
/// Messages API reports it in every answer and stream), so `stream_options` needs nothing.
pub fn to_messages(
    body: &Map<String, Value>,
    model: &str,
    stream: bool,
) -> Result<Translated, Untranslatable> {
    let mut ignored: Vec<String> = body
        .keys()
        .filter(|k| !READ.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let (system, messages) = messages(body.get("messages"))?;
    if let Some(s) = system {
        out.insert("system".into(), json!(s));
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens(body)?));
    if let Some(t) = is_set(body.get("temperature")) {
        let t = t
            .as_f64()
            .ok_or_else(|| refuse("temperature", "must be a number"))?;
        // OpenAI's range is 0-2, Anthropic's 0-1: above 1 is sent as Anthropic's most random.
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = is_set(body.get("top_p")) {
        let p = p
            .as_f64()
            .ok_or_else(|| refuse("top_p", "must be a number"))?;
        out.insert("top_p".into(), json!(p));
    }
    match is_set(body.get("stop")) {
        None => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) => {
            let mut seqs = Vec::with_capacity(list.len());
            for (i, s) in list.iter().enumerate() {
                let s = s
                    .as_str()
                    .ok_or_else(|| refuse(format!("stop[{i}]"), "must be a string"))?;
                seqs.push(json!(s));
            }
            if !seqs.is_empty() {
                out.insert("stop_sequences".into(), Value::Array(seqs));
            }
        }
        Some(_) => return Err(refuse("stop", "must be a string or a list of strings")),
    }
    match is_set(body.get("user")) {
        None => {}
        Some(Value::String(u)) if !u.is_empty() => {
            out.insert("metadata".into(), json!({"user_id": u}));
        }
        Some(_) => ignored.push("user".into()),
    }
    out.insert("stream".into(), json!(stream));
    tools(body, &mut out, &mut ignored)?;
    if let Some(n) = is_set(body.get("n")) {
        if n.as_u64() != Some(1) {
            return Err(refuse(
                "n",
                "the Messages API gives one choice per answer (n must be 1)",
            ));
        }
    }
    match is_set(body.get("response_format"))
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        // OpenAI's JSON mode needs the prompt to ask for JSON; the prompt goes as it is.
        Some("json_object") => ignored.push("response_format".into()),
        Some(other) => {
            return Err(refuse(
                "response_format",
                format!("{other} has no Messages API equivalent"),
            ))
        }
    }
    for legacy in ["functions", "function_call"] {
        if is_set(body.get(legacy)).is_some() {
            return Err(refuse(
                legacy,
                "the deprecated function-calling fields are not translated; declare tools",
            ));
        }
    }
    Ok(Translated { body: out, ignored })
}

/// `max_completion_tokens` or `max_tokens` (the smaller when both are given), else
/// [`DEFAULT_MAX_TOKENS`].
fn max_tokens(body: &Map<String, Value>) -> Result<u64, Untranslatable> {
    let mut least: Option<u64> = None;
    for k in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = is_set(body.get(k)) {
            let n = v
                .as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| refuse(k, "must be a positive integer"))?;
            least = Some(least.map_or(n, |l| l.min(n)));
        }
    }
    Ok(least.unwrap_or(DEFAULT_MAX_TOKENS))
}

/// One turn of the conversation: Anthropic's roles alternate, so consecutive messages of one
/// role (a tool result after a tool result, a user message after them) share a turn.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// `system`/`developer` messages become the top-level `system` (joined by blank lines); the
/// rest become alternating user and assistant turns of content blocks.
fn messages(v: Option<&Value>) -> Result<(Option<String>, Vec<Value>), Untranslatable> {
    let list = v
        .and_then(Value::as_array)
        .ok_or_else(|| refuse("messages", "must be an array"))?;
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let (role, blocks) = match role {
            "system" | "developer" => {
                let text = super::super::content_text(m.get("content"));
                if !text.trim().is_empty() {
                    system.push(text);
                }
                continue;
            }
            "user" => ("user", user_blocks(m.get("content"), &at)?),
            "assistant" => ("assistant", assistant_blocks(m, &at)?),
            "tool" => ("user", vec![tool_result(m, &at)?]),
            other => {
                return Err(refuse(
                    format!("{at}.role"),
                    format!("{other:?} has no Messages API equivalent"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(t) if t.role == role => t.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    for t in turns.iter_mut().filter(|t| t.role == "user") {
        // Tool results come first in their user turn, before any text.
        let (results, rest): (Vec<Value>, Vec<Value>) = std::mem::take(&mut t.blocks)
            .into_iter()
            .partition(|b| b["type"] == "tool_result");
        t.blocks = results;
        t.blocks.extend(rest);
    }
    // A last assistant turn is a prefill the model continues; Anthropic refuses one that ends
    // in whitespace.
    if let Some(last) = turns.last_mut().filter(|t| t.role == "assistant") {
        if let Some(text) = last
            .blocks
            .last_mut()
            .filter(|b| b["type"] == "text")
            .and_then(|b| b.get_mut("text"))
        {
            let trimmed = text.as_str().unwrap_or("").trim_end().to_string();
            let empty = trimmed.is_empty();
            *text = json!(trimmed);
            if empty {
                last.blocks.pop();
            }
        }
        if last.blocks.is_empty() {
            turns.pop();
        }
    }
    if turns.is_empty() {
        return Err(refuse(
            "messages",
            "no user or assistant message with content (the Messages API needs one)",
        ));
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let turns = turns
        .into_iter()
        .map(|t| json!({"role": t.role, "content": t.blocks}))
        .collect();
    Ok((system, turns))
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

fn part_type(p: &Value) -> &str {
    p.get("type").and_then(Value::as_str).unwrap_or("")
}

fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, Untranslatable> {
    match is_set(content) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_block(s).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match part_type(p) {
                    "text" => blocks.extend(text_block(
                        p.get("text").and_then(Value::as_str).unwrap_or(""),
                    )),
                    "image_url" => {
                        let url = p
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| refuse(format!("{at}.image_url.url"), "required"))?;
                        blocks.push(image_block(url, &format!("{at}.image_url.url"))?);
                    }
                    "file" => blocks.push(file_block(p, &at)?),
                    "input_audio" => {
                        return Err(refuse(at, "the Messages API takes no audio input"))
                    }
                    other => {
                        return Err(refuse(
                            format!("{at}.type"),
                            format!("content part {other:?} has no Messages API equivalent"),
                        ))
                    }
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(refuse(
            format!("{at}.content"),
            "must be a string or an array of content parts",
        )),
    }
}

/// `data:<type>;base64,<data>` as (type, data).
fn data_url<'a>(url: &'a str, at: &str) -> Result<Option<(String, &'a str)>, Untranslatable> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Ok(None);
    };
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| refuse(at, "a data: URL needs a comma before its data"))?;
    let media = meta
        .strip_suffix(";base64")
        .ok_or_else(|| refuse(at, "a data: URL must be base64 (data:<type>;base64,...)"))?;
    Ok(Some((media.to_ascii_lowercase(), data)))
}

fn image_block(url: &str, at: &str) -> Result<Value, Untranslatable> {
    if let Some((media, data)) = data_url(url, at)? {
        let media = if media == "image/jpg" {
            "image/jpeg".to_string()
        } else {
            media
        };
        if !IMAGE_TYPES.contains(&media.as_str()) {
            return Err(refuse(
                at,
                format!(
                    "image type {media:?} is not one the Messages API takes ({})",
                    IMAGE_TYPES.join(", ")
                ),
            ));
        }
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(refuse(at, "must be an http(s) URL or a base64 data: URL"))
}

/// A PDF sent inline (`file.file_data`) becomes a document block; an uploaded file
/// (`file.file_id`) lives at OpenAI and cannot be sent on.
fn file_block(p: &Value, at: &str) -> Result<Value, Untranslatable> {
    let at = format!("{at}.file.file_data");
    let data = p
        .pointer("/file/file_data")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                &at,
                "required: the Messages API cannot read files uploaded to OpenAI (file_id)",
            )
        })?;
    match data_url(data, &at)? {
        Some((media, data)) if media == "application/pdf" => Ok(
            json!({"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}),
        ),
        _ => Err(refuse(
            at,
            "must be a PDF as a data: URL (data:application/pdf;base64,...)",
        )),
    }
}

fn assistant_blocks(m: &Value, at: &str) -> Result<Vec<Value>, Untranslatable> {
    let mut blocks = Vec::new();
    match is_set(m.get("content")) {
        None => {}
        Some(Value::String(s)) => blocks.extend(text_block(s)),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let text = match part_type(p) {
                    "text" => p.get("text"),
                    "refusal" => p.get("refusal"),
                    other => {
                        return Err(refuse(
                            format!("{at}.content[{j}].type"),
                            format!(
                                "assistant content part {other:?} has no Messages API equivalent"
                            ),
                        ))
                    }
                };
                blocks.extend(text_block(text.and_then(Value::as_str).unwrap_or("")));
            }
        }
        Some(_) => {
            return Err(refuse(
                format!("{at}.content"),
                "must be a string or an array of content parts",
            ))
        }
    }
    let calls = match is_set(m.get("tool_calls")) {
        None => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(refuse(format!("{at}.tool_calls"), "must be an array")),
    };
    for (k, c) in calls.iter().enumerate() {
        let at = format!("{at}.tool_calls[{k}]");
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refuse(format!("{at}.id"), "required"))?;
        if let Some(t) = c.get("type").and_then(Value::as_str) {
            if t != "function" {
                return Err(refuse(
                    format!("{at}.type"),
                    format!("only function tool calls translate (got {t:?})"),
                ));
            }
        }
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refuse(format!("{at}.function.name"), "required"))?;
        let args_at = format!("{at}.function.arguments");
        let input = match c.pointer("/function/arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .map_err(|e| refuse(&args_at, format!("not valid JSON ({e})")))?,
            Some(v) => v.clone(),
        };
        if !input.is_object() {
            return Err(refuse(
                args_at,
                "must be a JSON object (the Messages API's tool input)",
            ));
        }
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

fn tool_result(m: &Value, at: &str) -> Result<Value, Untranslatable> {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refuse(format!("{at}.tool_call_id"), "required for a tool message"))?;
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    match is_set(m.get("content")) {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => block["content"] = json!(s),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                if part_type(p) != "text" {
                    return Err(refuse(
                        format!("{at}.content[{j}].type"),
                        "a tool message's parts must be text",
                    ));
                }
                texts.extend(text_block(
                    p.get("text").and_then(Value::as_str).unwrap_or(""),
                ));
            }
            if !texts.is_empty() {
                block["content"] = Value::Array(texts);
            }
        }
        Some(_) => {
            return Err(refuse(
                format!("{at}.content"),
                "must be a string or an array of text parts",
            ))
        }
    }
    Ok(block)
}

/// `tools` (function tools) -> Anthropic tools; `tool_choice` and `parallel_tool_calls` ->
/// Anthropic's `tool_choice`. Without tools, a tool choice means nothing and is left out.
fn tools(
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
    ignored: &mut Vec<String>,
) -> Result<(), Untranslatable> {
    let none = Vec::new();
    let list = match is_set(body.get("tools")) {
        None => &none,
        Some(Value::Array(list)) => list,
        Some(_) => return Err(refuse("tools", "must be an array")),
    };
    let mut declared = Vec::with_capacity(list.len());
    for (k, t) in list.iter().enumerate() {
        let at = format!("tools[{k}]");
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(refuse(
                format!("{at}.type"),
                format!("only function tools translate to the Messages API (got {kind:?})"),
            ));
        }
        let f = t
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| refuse(format!("{at}.function"), "required"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refuse(format!("{at}.function.name"), "required"))?;
        let mut tool = json!({"name": name});
        if let Some(d) = f.get("description").and_then(Value::as_str) {
            tool["description"] = json!(d);
        }
        tool["input_schema"] = match f.get("parameters") {
            Some(p) if p.is_object() => p.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        declared.push(tool);
    }
    let mut choice = match is_set(body.get("tool_choice")) {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => {
                return Err(refuse(
                    "tool_choice",
                    format!("must be auto, none, required or a named function (got {other:?})"),
                ))
            }
        }),
        Some(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| refuse("tool_choice.function.name", "required"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => return Err(refuse(
            "tool_choice",
            "must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}",
        )),
    };
    let parallel = is_set(body.get("parallel_tool_calls"));
    if declared.is_empty() {
        for (field, set) in [
            ("tool_choice", choice.is_some()),
            ("parallel_tool_calls", parallel.is_some()),
        ] {
            if set {
                ignored.push(field.into());
            }
        }
        return Ok(());
    }
    if parallel == Some(&Value::Bool(false)) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    out.insert("tools".into(), Value::Array(declared));
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(v: Value) -> Result<Translated, Untranslatable> {
        to_messages(v.as_object().unwrap(), "claude-test", false)
    }

    fn body(v: Value) -> Value {
        Value::Object(translate(v).unwrap().body)
    }

    #[test]
    fn system_and_developer_messages_become_the_system_parameter() {
        let b = body(json!({"model": "heady", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello"},
        ]}));
        assert_eq!(b["system"], "Be brief.\n\nAnswer in French.");
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hello"}]}])
        );
        assert_eq!(b["model"], "claude-test");
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(b["stream"], false);
        let b = body(json!({"messages": [{"role": "user", "content": "x"}]}));
        assert!(b.get("system").is_none(), "{b}");
    }

    #[test]
    fn sampling_parameters_map_and_the_rest_is_named() {
        let t = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 300, "max_completion_tokens": 200, "temperature": 1.5, "top_p": 0.9,
            "stop": "END", "user": "u-42", "seed": 7, "presence_penalty": 0.5, "logprobs": true,
            "stream_options": {"include_usage": true}, "n": 1,
            "response_format": {"type": "json_object"}}),
        )
        .unwrap();
        let b = Value::Object(t.body);
        assert_eq!(b["max_tokens"], 200);
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["top_p"], 0.9);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["metadata"], json!({"user_id": "u-42"}));
        for leaked in [
            "seed",
            "presence_penalty",
            "logprobs",
            "stream_options",
            "n",
            "response_format",
            "user",
            "stop",
            "max_completion_tokens",
        ] {
            assert!(
                b.get(leaked).is_none(),
                "{leaked} reached the Messages request: {b}"
            );
        }
        let mut ignored = t.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            ["logprobs", "presence_penalty", "response_format", "seed"]
        );
        let b = body(
            json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"], "max_tokens": 5}),
        );
        assert_eq!(b["stop_sequences"], json!(["a", "b"]));
        assert_eq!(b["max_tokens"], 5);
    }

    #[test]
    fn what_the_messages_api_cannot_do_is_refused_with_its_field() {
        let user = json!([{"role": "user", "content": "x"}]);
        let param = |extra: Value| {
            let mut v = json!({"messages": user});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            translate(v).unwrap_err().param
        };
        assert_eq!(param(json!({"n": 2})), "n");
        assert_eq!(
            param(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}})
            ),
            "response_format"
        );
        assert_eq!(param(json!({"functions": [{"name": "f"}]})), "functions");
        assert_eq!(
            param(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})),
            "tools[0].type"
        );
        assert_eq!(param(json!({"stop": [1]})), "stop[0]");
        assert_eq!(param(json!({"max_tokens": 0})), "max_tokens");
        let e = translate(json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]})).unwrap_err();
        assert_eq!(e.param, "messages[0].content[0]");
        let e =
            translate(json!({"messages": [{"role": "system", "content": "only a system prompt"}]}))
                .unwrap_err();
        assert_eq!(e.param, "messages");
    }

    #[test]
    fn images_become_base64_or_url_blocks() {
        let b = body(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
        ]}]}));
        assert_eq!(
            b["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
            ])
        );
        for (url, why) in [
            ("data:image/bmp;base64,Qk0=", "is not one"),
            ("data:image/png,rawbytes", "base64"),
            ("ftp://example.com/x.png", "http(s)"),
        ] {
            let e = translate(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})).unwrap_err();
            assert_eq!(e.param, "messages[0].content[0].image_url.url");
            assert!(e.message.contains(why), "{url}: {}", e.message);
        }
        let e = translate(json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]})).unwrap_err();
        assert_eq!(e.param, "messages[0].content[0].file.file_data");
    }

    #[test]
    fn tool_calls_and_results_become_tool_use_and_tool_result_blocks() {
        let b = body(json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24 C"}]},
            {"role": "user", "content": "Which is warmer?"},
        ]}));
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24 C"}]},
                    {"type": "text", "text": "Which is warmer?"},
                ]},
            ])
        );
    }

    #[test]
    fn bad_tool_arguments_name_the_message() {
        let e = translate(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "y"},
        ]}))
        .unwrap_err();
        assert_eq!(e.param, "messages[1].tool_calls[0].function.arguments");
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = translate(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]},
        ]}))
        .unwrap_err();
        assert_eq!(e.param, "messages[1].tool_calls[0].function.arguments");
        let e = translate(json!({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]})).unwrap_err();
        assert_eq!(e.param, "messages[1].tool_call_id");
        // No arguments at all is an empty input.
        let b = body(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "now", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "c", "content": "noon"},
        ]}));
        assert_eq!(b["messages"][1]["content"][0]["input"], json!({}));
    }

    #[test]
    fn consecutive_turns_of_one_role_merge_and_empty_ones_drop() {
        let b = body(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "d"}]},
            {"role": "user", "content": "e"},
            {"role": "assistant", "content": "The answer is  \n"},
        ]}));
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
                {"role": "user", "content": [{"type": "text", "text": "e"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]},
            ])
        );
    }

    #[test]
    fn tools_and_tool_choice_map() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}}]);
        let with = |choice: Value, parallel: Value| {
            body(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}),
            )
        };
        let b = with(Value::Null, Value::Null);
        assert_eq!(
            b["tools"],
            json!([
                {"name": "get_weather", "description": "Current weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert!(b.get("tool_choice").is_none());
        assert_eq!(
            with(json!("auto"), Value::Null)["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            with(json!("none"), json!(false))["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            with(json!("required"), json!(true))["tool_choice"],
            json!({"type": "any"})
        );
        assert_eq!(
            with(
                json!({"type": "function", "function": {"name": "now"}}),
                json!(false)
            )["tool_choice"],
            json!({"type": "tool", "name": "now", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            with(Value::Null, json!(false))["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let t = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        )
        .unwrap();
        assert!(t.body.get("tool_choice").is_none());
        assert_eq!(t.ignored, ["tool_choice"]);
        let e = translate(json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "sometimes"})).unwrap_err();
        assert_eq!(e.param, "tool_choice");
    }
}
