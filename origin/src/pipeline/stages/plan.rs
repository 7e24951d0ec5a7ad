//! Stage 2, plan: the brain router's candidate list (providers of the action's service group,
//! pinned model first, fallback order by priority, weighted first pick), the pattern engine's
//! preference, breakers, then Monte Carlo readiness against the deadline: proceed, switch to a
//! provider likely to make it, or refuse early with 503 `not_ready`.

use super::entry::Entered;
use super::ingest::Ingested;
use crate::error::{Error, ErrorCode};
use crate::pipeline::{Inbound, Pipeline, PlanTrace, ProviderEstimate};
use heady_shared::readiness::{estimate, estimate_chain, SeededRng};
use std::collections::VecDeque;

/// What plan hands on: the providers to try, in order, and the request's deadline.
pub struct Planned {
    pub candidates: VecDeque<usize>,
    /// When the request's deadline passes (retries must fit before it).
    pub deadline: std::time::Instant,
    /// Retries made so far, per provider index.
    pub retries: Vec<u32>,
    /// The wait before the next call (a retry's backoff), for its attempt record.
    pub waited_ms: Option<u64>,
}

pub const NO_PROVIDER: &str = "no inference provider is configured: set HEADY_OPENAI_BASE_URL (and HEADY_OPENAI_API_KEY) for one OpenAI-compatible endpoint such as a local Ollama (http://127.0.0.1:11434/v1), or add [[providers]] entries to the config file";

/// Fallback order: by priority; within a priority, a weighted random order (Efraimidis-
/// Spirakis keys u^(1/w)), so weights set the share of first picks.
pub fn fallback_order(items: &[(usize, u32, f64)], seed: u64) -> Vec<usize> {
    let mut rng = SeededRng::new(seed);
    let mut keyed: Vec<(u32, f64, usize)> = items
        .iter()
        .map(|(i, prio, w)| {
            (
                *prio,
                rng.unit().max(f64::MIN_POSITIVE).powf(1.0 / w.max(1e-9)),
                *i,
            )
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
    keyed.into_iter().map(|k| k.2).collect()
}

/// Orders the candidates and decides whether the request can make its deadline. `trace`
/// keeps the reasoning, also when the answer is a refusal.
pub fn run(
    p: &Pipeline,
    inbound: &Inbound,
    entered: &Entered,
    ingested: &Ingested,
    trace: &mut PlanTrace,
) -> Result<Planned, Error> {
    if p.providers.is_empty() {
        p.metrics.refused("no_provider");
        return Err(Error::new(ErrorCode::NoProvider, NO_PROVIDER));
    }
    let group = ingested.route.group.clone();
    let model = ingested.chat.model.clone().filter(|m| m != "heady");
    let serving: Vec<(usize, u32, f64)> = p
        .providers
        .iter()
        .enumerate()
        .filter(|(_, e)| e.serves(&group))
        .map(|(i, e)| (i, e.config.priority, e.config.weight))
        .collect();
    if serving.is_empty() {
        p.metrics.refused("no_provider");
        return Err(Error::new(
            ErrorCode::NoProvider,
            format!("no provider serves service group {group:?} (action {:?}): add {group:?} to a provider's groups, or leave its groups empty to serve every group", inbound.action),
        ));
    }
    *trace = PlanTrace {
        deadline_ms: entered.deadline_ms,
        ..PlanTrace::default()
    };
    // A provider that cannot do what the request needs is skipped, never sent a request
    // stripped of it.
    let needs = &ingested.chat.needs;
    let serving: Vec<(usize, u32, f64)> = serving
        .into_iter()
        .filter(|(i, _, _)| {
            let config = &p.providers[*i].config;
            let lacks: Vec<&str> = needs
                .iter()
                .filter(|f| !config.can(**f))
                .map(|f| f.name())
                .collect();
            if !lacks.is_empty() {
                trace
                    .skipped
                    .push(format!("{}: {}", config.name, lacks.join(", ")));
            }
            lacks.is_empty()
        })
        .collect();
    if serving.is_empty() {
        p.metrics.refused("unsupported_feature");
        let asked: Vec<&str> = needs.iter().map(|f| f.name()).collect();
        return Err(Error::new(
            ErrorCode::UnsupportedFeature,
            format!(
                "this request needs {} and no provider serving service group {group:?} can do it ({}); providers[].features says what each can do",
                asked.join(", "),
                trace.skipped.iter().map(|s| s.replace(": ", " lacks ")).collect::<Vec<_>>().join("; ")
            ),
        ));
    }
    let mut order = fallback_order(&serving, entered.seed);
    if let Some(m) = &model {
        let pinned: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| p.providers[*i].config.model.as_deref() == Some(m.as_str()))
            .collect();
        if pinned.is_empty() {
            // A model no provider names goes to providers that forward the client's model.
            order.retain(|i| p.providers[*i].config.model.is_none());
            if order.is_empty() {
                return Err(Error::new(ErrorCode::ModelNotFound,
                    format!("model: {m:?} is not served here; GET /v1/models lists the models (\"heady\" lets the router choose)"),
                ));
            }
        } else {
            let rest: Vec<usize> = order.into_iter().filter(|i| !pinned.contains(i)).collect();
            order = pinned;
            order.extend(rest);
        }
    } else {
        let names: Vec<&str> = order
            .iter()
            .map(|i| p.providers[*i].config.name.as_str())
            .collect();
        if let Some((pos, why)) = p.patterns.prefer(&inbound.action, &names) {
            let i = order.remove(pos);
            order.insert(0, i);
            trace.pattern = Some(why);
        }
    }
    let now = p.now_ms();
    let mut retry_in = u64::MAX;
    order.retain(|i| {
        let h = p.lock_health(*i);
        let open = !h.breaker.would_admit(now);
        if open {
            if let heady_shared::breaker::Admit::No { retry_in_ms } = h.breaker.clone().admit(now) {
                retry_in = retry_in.min(retry_in_ms);
            }
        }
        !open
    });
    if order.is_empty() {
        p.metrics.refused("providers_unavailable");
        return Err(Error::new(ErrorCode::ProvidersUnavailable,
            format!("every provider for service group {group:?} has an open circuit breaker; retry in {} ms", if retry_in == u64::MAX { 0 } else { retry_in }),
        ).with_retry_after(retry_in.div_ceil(1000).max(1)));
    }
    // Monte Carlo readiness per candidate against the time left.
    let cfg = &p.config.readiness;
    let left = entered.deadline_ms as f64 - entered.started.elapsed().as_secs_f64() * 1e3;
    let histories: Vec<Vec<(bool, f64)>> = order
        .iter()
        .map(|i| p.lock_health(*i).history(now))
        .collect();
    let mut chosen = None;
    for (k, (i, h)) in order.iter().zip(&histories).enumerate() {
        let e = if h.len() >= cfg.min_observations {
            estimate(h, left, cfg.trials, entered.seed ^ *i as u64)
        } else {
            None
        };
        trace.estimates.push(ProviderEstimate {
            provider: p.providers[*i].config.name.clone(),
            p: e.map(|e| e.p),
            observations: h.len(),
        });
        // Unknown providers are tried (that is how they earn a history).
        if chosen.is_none() && e.is_none_or(|e| e.p >= cfg.threshold) {
            chosen = Some(k);
        }
    }
    let Some(k) = chosen else {
        p.metrics.refused("not_ready");
        let est: Vec<String> = trace
            .estimates
            .iter()
            .map(|e| {
                format!(
                    "{} p={:.3} ({} outcomes)",
                    e.provider,
                    e.p.unwrap_or(0.0),
                    e.observations
                )
            })
            .collect();
        let msg = format!(
            "no provider is likely to answer within the {} ms deadline (readiness threshold {}): {}",
            entered.deadline_ms,
            cfg.threshold,
            est.join("; ")
        );
        trace.decision = "refuse".into();
        return Err(Error::new(ErrorCode::NotReady, msg).with_retry_after(1));
    };
    trace.decision = if k == 0 {
        "proceed".into()
    } else {
        format!("switch to {}", p.providers[order[k]].config.name)
    };
    if k > 0 {
        let i = order.remove(k);
        order.insert(0, i);
    }
    let chain: Vec<&[(bool, f64)]> = order
        .iter()
        .map(|i| {
            let pos = trace
                .estimates
                .iter()
                .position(|e| e.provider == p.providers[*i].config.name)
                .unwrap_or(0);
            histories[pos].as_slice()
        })
        .collect();
    // One candidate: its own estimate is the chain's.
    trace.chain_p = if chain.len() == 1 {
        trace.estimates[0].p
    } else {
        estimate_chain(&chain, left, cfg.trials, entered.seed).map(|e| e.p)
    };
    trace.order = order
        .iter()
        .map(|i| p.providers[*i].config.name.clone())
        .collect();
    Ok(Planned {
        candidates: order.into(),
        deadline: entered.started + std::time::Duration::from_millis(entered.deadline_ms),
        retries: vec![0; p.providers.len()],
        waited_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_first_then_weighted_picks() {
        let items = [(0, 1, 1.0), (1, 0, 3.0), (2, 0, 1.0)];
        let mut first = [0u32; 3];
        for seed in 0..4_000u64 {
            let o = fallback_order(&items, heady_shared::zone::splitmix64(seed));
            assert_eq!(o.len(), 3);
            assert_eq!(o[2], 0, "priority 1 always last");
            first[o[0]] += 1;
        }
        let share = first[1] as f64 / 4_000.0;
        assert!(
            (share - 0.75).abs() < 0.04,
            "weight 3 vs 1 -> ~75% first picks, got {share}"
        );
    }
}
