//! `GET /api/account/usage`: the date range asked for, checked, and the answer built from the
//! stored rows. Pure: today is an argument.

use super::store::DailyRow;
use super::{Counts, UsageError};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;

/// The longest range one request may ask for, in days (a leap year).
pub const MAX_DAYS: i64 = 366;

fn bad(field: &'static str, message: impl Into<String>) -> UsageError {
    UsageError::Invalid {
        field,
        message: message.into(),
    }
}

fn date(field: &'static str, text: &str) -> Result<NaiveDate, UsageError> {
    let shown: String = text.chars().take(40).collect();
    if text.len() != 10 {
        return Err(bad(
            field,
            format!("{shown:?} is not a date like 2026-12-31 (YYYY-MM-DD)"),
        ));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        bad(
            field,
            format!("{shown:?} is not a date like 2026-12-31 (YYYY-MM-DD)"),
        )
    })
}

/// `from` and `to` (inclusive, UTC days). Defaults: the first of `today`'s month, and today.
/// Refused: a malformed date (naming the parameter), `from` after `to`, or more than
/// [`MAX_DAYS`] days.
pub fn range(
    from: Option<&str>,
    to: Option<&str>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), UsageError> {
    let to = match to {
        Some(t) => date("to", t)?,
        None => today,
    };
    let from = match from {
        Some(f) => date("from", f)?,
        None => NaiveDate::from_ymd_opt(to.year(), to.month(), 1).unwrap_or(to),
    };
    if from > to {
        return Err(bad("from", format!("{from} is after to ({to})")));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_DAYS {
        return Err(bad(
            "to",
            format!("the range {from} to {to} is {days} days; ask for at most {MAX_DAYS}"),
        ));
    }
    Ok((from, to))
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Some of it was counted by the tokenizer (the provider reported no usage).
    pub estimated: bool,
    pub estimated_requests: u64,
}

impl Line {
    fn of(day: Option<String>, model: Option<String>, c: &Counts) -> Line {
        Line {
            day,
            model,
            requests: c.requests,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            total_tokens: c.total_tokens(),
            estimated: c.estimated_requests > 0,
            estimated_requests: c.estimated_requests,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub account: String,
    pub from: String,
    pub to: String,
    /// By day, then model.
    pub days: Vec<Line>,
    /// By model over the range.
    pub models: Vec<Line>,
    pub totals: Line,
}

/// The answer for `account` over `from..=to` from its stored rows.
pub fn report(account: &str, from: NaiveDate, to: NaiveDate, rows: &[DailyRow]) -> Report {
    let mut totals = Counts::default();
    let mut models: Vec<(String, Counts)> = Vec::new();
    for r in rows {
        totals.add(&r.counts);
        match models.iter_mut().find(|(m, _)| *m == r.model) {
            Some((_, c)) => c.add(&r.counts),
            None => models.push((r.model.clone(), r.counts)),
        }
    }
    models.sort_by(|a, b| a.0.cmp(&b.0));
    Report {
        account: account.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        days: rows
            .iter()
            .map(|r| Line::of(Some(r.day.to_string()), Some(r.model.clone()), &r.counts))
            .collect(),
        models: models
            .iter()
            .map(|(m, c)| Line::of(None, Some(m.clone()), c))
            .collect(),
        totals: Line::of(None, None, &totals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn field(e: UsageError) -> &'static str {
        match e {
            UsageError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn defaults_to_this_month_and_names_the_bad_parameter() {
        let today = day("2026-12-07");
        assert_eq!(
            range(None, None, today).unwrap(),
            (day("2026-12-01"), today)
        );
        assert_eq!(
            range(Some("2026-11-30"), Some("2026-12-01"), today).unwrap(),
            (day("2026-11-30"), day("2026-12-01"))
        );
        // Without from: the first of to's month.
        assert_eq!(
            range(None, Some("2026-02-14"), today).unwrap().0,
            day("2026-02-01")
        );
        for (from, to, want) in [
            (Some("2026-13-01"), None, "from"),
            (Some("2026-1-01"), None, "from"),
            (Some("yesterday"), None, "from"),
            (None, Some("2026-02-30"), "to"),
            (Some("2026-12-02"), Some("2026-12-01"), "from"),
            (Some("2025-01-01"), Some("2026-01-02"), "to"),
        ] {
            assert_eq!(
                field(range(from, to, today).unwrap_err()),
                want,
                "{from:?} {to:?}"
            );
        }
        // 366 days is allowed.
        assert!(range(Some("2024-01-01"), Some("2024-12-31"), today).is_ok());
    }
}
