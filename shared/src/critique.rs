//! Self-critique: a quality score in [0, 1] for a model's answer, from cheap checks that need
//! no second model: empty, cut off by the length limit, a refusal, invalid JSON when JSON was
//! asked for, degenerate repetition, and for tool calls: a call to a tool the request did not
//! declare or with arguments that are not a JSON object, or no call where one was required.
//! A tool call is an answer: an answer with calls and no text is not empty.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Issue {
    Empty,
    TruncatedByLength,
    Refusal,
    InvalidJson,
    Repetition,
    /// A tool call naming a tool the request did not declare, or whose arguments are not a
    /// JSON object.
    InvalidToolCall,
    /// `tool_choice` required a call (or a named one) and the answer has none (or another).
    MissingToolCall,
}

impl Issue {
    /// What the issue costs off a perfect score.
    pub fn penalty(self) -> f64 {
        match self {
            Issue::Empty => 1.0,
            Issue::InvalidJson => 0.7,
            Issue::Refusal => 0.6,
            Issue::Repetition => 0.6,
            Issue::TruncatedByLength => 0.3,
            Issue::InvalidToolCall => 0.7,
            Issue::MissingToolCall => 0.6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Critique {
    pub score: f64,
    pub issues: Vec<Issue>,
}

/// One tool call of an answer: the function's name and its arguments as sent (a JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolUse {
    pub name: String,
    pub arguments: String,
}

/// What the request's `tool_choice` asks of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice<'a> {
    /// `auto` or absent: calls are allowed, not required.
    #[default]
    Auto,
    /// `none`: no call.
    None,
    /// `required`: at least one call.
    Required,
    /// `{"type":"function","function":{"name":...}}`: a call to this tool.
    Named(&'a str),
}

/// What the scorer looks at.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub text: &'a str,
    /// OpenAI's `finish_reason` ("stop", "length", ...), when known.
    pub finish_reason: Option<&'a str>,
    /// The request asked for a JSON answer (`response_format` json_object / json_schema).
    pub json_expected: bool,
    /// The answer's tool calls.
    pub tool_calls: &'a [ToolUse],
    /// The names of the tools the request declared.
    pub tools: &'a [String],
    pub tool_choice: ToolChoice<'a>,
}

impl<'a> Answer<'a> {
    /// A text answer to a request without tools.
    pub fn text(text: &'a str, finish_reason: Option<&'a str>, json_expected: bool) -> Self {
        Answer {
            text,
            finish_reason,
            json_expected,
            tool_calls: &[],
            tools: &[],
            tool_choice: ToolChoice::Auto,
        }
    }
}

const REFUSALS: &[&str] = &[
    "i'm sorry, but i can't",
    "i am sorry, but i can't",
    "i'm sorry, but i cannot",
    "i cannot help with",
    "i can't help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "as an ai language model, i cannot",
    "i won't be able to help",
];

pub fn score(a: Answer<'_>) -> Critique {
    let mut issues = Vec::new();
    let text = a.text.trim();
    let calls = a.tool_calls;
    if text.is_empty() && calls.is_empty() {
        issues.push(Issue::Empty);
    } else {
        if a.finish_reason == Some("length") {
            issues.push(Issue::TruncatedByLength);
        }
        if !text.is_empty() {
            if is_refusal(text) {
                issues.push(Issue::Refusal);
            }
            if a.json_expected && serde_json::from_str::<serde_json::Value>(text).is_err() {
                issues.push(Issue::InvalidJson);
            }
            if is_degenerate(text) {
                issues.push(Issue::Repetition);
            }
        }
        let well_formed = |c: &ToolUse| {
            (a.tools.is_empty() || a.tools.contains(&c.name))
                && matches!(
                    serde_json::from_str::<serde_json::Value>(&c.arguments),
                    Ok(serde_json::Value::Object(_))
                )
        };
        if a.tool_choice == ToolChoice::None && !calls.is_empty() || !calls.iter().all(well_formed)
        {
            issues.push(Issue::InvalidToolCall);
        }
    }
    let missing = match a.tool_choice {
        ToolChoice::Required => calls.is_empty(),
        ToolChoice::Named(name) => !calls.iter().any(|c| c.name == name),
        ToolChoice::Auto | ToolChoice::None => false,
    };
    if missing {
        issues.push(Issue::MissingToolCall);
    }
    let score = issues
        .iter()
        .fold(1.0f64, |s, i| s - i.penalty())
        .clamp(0.0, 1.0);
    Critique { score, issues }
}

/// A refusal opens the answer (first 200 characters), not a quote of one further down.
fn is_refusal(text: &str) -> bool {
    let head: String = text.chars().take(200).collect::<String>().to_lowercase();
    let head = head.replace('\u{2019}', "'");
    REFUSALS.iter().any(|r| head.contains(r))
}

/// Degenerate repetition: among 24+ words, under 30% of the word trigrams are distinct; or a
/// long answer without spaces made of one short unit repeated.
fn is_degenerate(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() >= 24 {
        let grams: std::collections::HashSet<(&str, &str, &str)> =
            words.windows(3).map(|w| (w[0], w[1], w[2])).collect();
        return (grams.len() as f64) < 0.3 * (words.len() - 2) as f64;
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() >= 64 {
        for unit in 1..=8 {
            if chars.iter().enumerate().all(|(i, c)| *c == chars[i % unit]) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> Critique {
        score(Answer::text(text, Some("stop"), false))
    }

    fn call(name: &str, arguments: &str) -> ToolUse {
        ToolUse {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn tool_calls_are_answers() {
        let tools = vec!["get_weather".to_string()];
        let with = |calls: &[ToolUse], choice| {
            score(Answer {
                text: "",
                finish_reason: Some("tool_calls"),
                json_expected: false,
                tool_calls: calls,
                tools: &tools,
                tool_choice: choice,
            })
        };
        let good = [call("get_weather", r#"{"city":"Paris"}"#)];
        assert_eq!(with(&good, ToolChoice::Auto).score, 1.0);
        assert_eq!(with(&good, ToolChoice::Required).score, 1.0);
        assert_eq!(with(&good, ToolChoice::Named("get_weather")).score, 1.0);
        assert_eq!(
            with(&[call("get_weather", "{\"city\":")], ToolChoice::Auto).issues,
            vec![Issue::InvalidToolCall]
        );
        assert_eq!(
            with(&[call("get_weather", "[1]")], ToolChoice::Auto).issues,
            vec![Issue::InvalidToolCall]
        );
        assert_eq!(
            with(&[call("launch", "{}")], ToolChoice::Auto).issues,
            vec![Issue::InvalidToolCall]
        );
        assert_eq!(with(&[], ToolChoice::Auto).issues, vec![Issue::Empty]);
        assert_eq!(
            with(&[], ToolChoice::Required).issues,
            vec![Issue::Empty, Issue::MissingToolCall]
        );
        assert_eq!(
            with(&good, ToolChoice::Named("get_time")).issues,
            vec![Issue::MissingToolCall]
        );
        assert_eq!(
            with(&good, ToolChoice::None).issues,
            vec![Issue::InvalidToolCall]
        );
        let text_instead = score(Answer {
            text: "It is sunny in Paris.",
            finish_reason: Some("stop"),
            json_expected: false,
            tool_calls: &[],
            tools: &tools,
            tool_choice: ToolChoice::Required,
        });
        assert_eq!(text_instead.issues, vec![Issue::MissingToolCall]);
    }

    #[test]
    fn a_plain_answer_scores_full() {
        let c = s("Paris is the capital of France. It sits on the Seine.");
        assert_eq!(
            c,
            Critique {
                score: 1.0,
                issues: vec![]
            }
        );
    }

    #[test]
    fn each_issue_is_found() {
        assert_eq!(s("   ").issues, vec![Issue::Empty]);
        assert_eq!(s("   ").score, 0.0);
        assert_eq!(
            s("I'm sorry, but I can't help with that request.").issues,
            vec![Issue::Refusal]
        );
        let rep = "the cat sat ".repeat(20);
        assert_eq!(s(&rep).issues, vec![Issue::Repetition]);
        assert_eq!(s(&"ha".repeat(50)).issues, vec![Issue::Repetition]);
        let cut = score(Answer::text("The answer begins", Some("length"), false));
        assert_eq!(cut.issues, vec![Issue::TruncatedByLength]);
        assert!((cut.score - 0.7).abs() < 1e-9);
        let bad_json = score(Answer::text("{\"a\": 1", Some("stop"), true));
        assert_eq!(bad_json.issues, vec![Issue::InvalidJson]);
        let good_json = score(Answer::text("{\"a\": 1}", Some("stop"), true));
        assert_eq!(good_json.score, 1.0);
    }

    #[test]
    fn a_quoted_refusal_late_in_the_answer_is_fine() {
        let text = format!(
            "{} Some people write \"I'm sorry, but I can't\".",
            "Word ".repeat(50).trim_end()
        );
        assert!(!is_refusal(&text));
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_total(text in ".{0,300}", json in any::<bool>(), len in any::<bool>()) {
            let c = score(Answer::text(&text, Some(if len { "length" } else { "stop" }), json));
            prop_assert!((0.0..=1.0).contains(&c.score));
            prop_assert_eq!(c.issues.is_empty(), c.score == 1.0);
        }
    }
}
