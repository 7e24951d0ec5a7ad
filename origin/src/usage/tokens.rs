//! Token counts when a provider reports none, and the estimate a reservation is made on.
//!
//! Counting uses the `cl100k_base` tokenizer (tiktoken-rs, pure Rust: the GPT-3.5/4 BPE). For
//! other model families it is an estimate, which is what the store marks it as. A chat prompt
//! is counted the way OpenAI documents for its chat models: each message costs its role and
//! content tokens plus 3, and every reply is primed with 3 more.
//!
//! The reservation before a call needs no tokenizer: it is settled with the real count
//! afterwards, so it takes a quarter of the prompt's bytes (English text averages about four
//! characters a token) plus the completion the request allows.

use serde_json::Value;

/// Tokens OpenAI adds per chat message, and to prime the reply.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// Tokens in `text` (the tokenizer's tables are parsed on first use; [`warm_up`] does it early).
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    tiktoken_rs::cl100k_base_singleton().count_ordinary(text) as u64
}

/// The text of `cl100k_base` token ids (the tokenizer of OpenAI's embedding models); `None`
/// when an id is not in its vocabulary or the bytes are not UTF-8.
pub fn decode(tokens: &[u32]) -> Option<String> {
    tiktoken_rs::cl100k_base_singleton().decode(tokens).ok()
}

/// Loads the tokenizer's tables (about 100 ms), so the first estimate does not pay for it.
pub fn warm_up() {
    let _ = count("warm up");
}

/// Tokens a chat request's `messages` cost as a prompt.
pub fn chat_prompt(messages: &[Value]) -> u64 {
    let mut n = REPLY_PRIMING;
    for m in messages {
        n += PER_MESSAGE;
        if let Some(role) = m.get("role").and_then(Value::as_str) {
            n += count(role);
        }
        n += count(&crate::providers::content_text(m.get("content")));
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            n += count(name);
        }
    }
    n
}

/// Tokens in a batch of embedding inputs.
pub fn inputs(texts: &[String]) -> u64 {
    texts.iter().map(|t| count(t)).sum()
}

/// Text longer than this is counted on a blocking thread (a MiB takes tens of milliseconds).
const INLINE_BYTES: usize = 16 * 1024;

/// Runs a count of `bytes` of text inline when short, else off the async runtime; a count that
/// could not run falls back to the quick estimate.
async fn off_runtime(bytes: usize, f: impl FnOnce() -> u64 + Send + 'static) -> u64 {
    if bytes <= INLINE_BYTES {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| quick(bytes))
}

/// [`chat_prompt`] and [`count`] of an answer, off the runtime when they are long:
/// (prompt tokens, completion tokens).
pub async fn chat_estimate(messages: Vec<Value>, answer: String) -> (u64, u64) {
    let prompt_bytes: usize = messages
        .iter()
        .map(|m| crate::providers::content_text(m.get("content")).len())
        .sum();
    let prompt = off_runtime(prompt_bytes, move || chat_prompt(&messages)).await;
    let answer_bytes = answer.len();
    let completion = off_runtime(answer_bytes, move || count(&answer)).await;
    (prompt, completion)
}

/// [`inputs`], off the runtime when they are long.
pub async fn inputs_estimate(texts: Vec<String>) -> u64 {
    let bytes = texts.iter().map(String::len).sum();
    off_runtime(bytes, move || inputs(&texts)).await
}

/// A quick estimate of `bytes` of text: a quarter, rounded up.
pub fn quick(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// What a chat request may cost, from its raw body: a quick estimate of its messages (or
/// Heady's `message` / `input`) plus `max_tokens` (or `max_completion_tokens`), else
/// `default_max_tokens`. A body that is not a JSON object is charged its size plus the default
/// (the pipeline refuses it, and the reservation is given back).
pub fn chat_reservation(body: &[u8], default_max_tokens: u64) -> u64 {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(body) else {
        return quick(body.len()) + default_max_tokens;
    };
    let mut prompt_bytes = 0usize;
    let mut messages = 0u64;
    if let Some(Value::Array(ms)) = v.get("messages") {
        for m in ms {
            messages += 1;
            prompt_bytes += crate::providers::content_text(m.get("content")).len();
        }
    }
    for shortcut in ["message", "input"] {
        if let Some(Value::String(s)) = v.get(shortcut) {
            messages += 1;
            prompt_bytes += s.len();
        }
    }
    let completion = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .unwrap_or(default_max_tokens);
    quick(prompt_bytes) + messages * PER_MESSAGE + REPLY_PRIMING + completion
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_like_cl100k() {
        // tiktoken: "hello world" is 2 tokens in cl100k_base.
        assert_eq!(count("hello world"), 2);
        assert_eq!(count(""), 0);
        let prompt = chat_prompt(&[json!({"role": "user", "content": "hello world"})]);
        // 3 (message) + 1 (role "user") + 2 (content) + 3 (priming).
        assert_eq!(prompt, 9);
    }

    #[test]
    fn reservations_use_max_tokens_or_the_default() {
        let body =
            br#"{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"12345678"}]}"#;
        assert_eq!(chat_reservation(body, 1024), 2 + 3 + 3 + 50);
        let body = br#"{"message":"1234"}"#;
        assert_eq!(chat_reservation(body, 100), 1 + 3 + 3 + 100);
        assert_eq!(chat_reservation(b"not json", 100), 2 + 100);
    }
}
