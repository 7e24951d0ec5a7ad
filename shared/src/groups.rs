//! The conductor's Task Router table: service groups, their weights and their actions.
//!
//! The table is data. `GroupTable::default()` is the seed's 12 groups; operators extend it
//! (new groups, or new actions for an existing group) from config with `GroupTable::extend`.
//! A weight drives load-aware scaling: a group's share of concurrency and its queue priority.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceGroup {
    pub name: String,
    pub weight: f64,
    pub actions: Vec<String>,
}

/// The answer of the Task Router for one action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub action: String,
    pub group: String,
    pub weight: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("unknown action {action:?}: no service group lists it")]
    UnknownAction { action: String },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TableError {
    #[error("group {group:?}: weight must be a finite number in (0, 1] (got {weight})")]
    BadWeight { group: String, weight: f64 },
    #[error("group name must be 1-64 characters of [a-z0-9_-] (got {0:?})")]
    BadGroupName(String),
    #[error("group {group:?}: action name must be 1-64 characters of [a-z0-9_-] (got {action:?})")]
    BadActionName { group: String, action: String },
    #[error("action {action:?} is listed by both group {first:?} and group {second:?}")]
    DuplicateAction {
        action: String,
        first: String,
        second: String,
    },
    #[error("group {group:?} has no actions")]
    NoActions { group: String },
}

const SEED: &[(&str, f64, &[&str])] = &[
    (
        "reasoning",
        1.0,
        &["chat", "complete", "analyze", "refactor"],
    ),
    ("coding", 0.95, &["code", "refactor_logic", "pr_review"]),
    ("intelligence", 0.9, &["meta", "logic", "brain"]),
    ("sims", 0.85, &["simulate", "predict", "monte_carlo"]),
    ("embedding", 0.8, &["embed", "store"]),
    ("swarm", 0.8, &["forage", "hive", "swarm_nudge"]),
    ("search", 0.75, &["search", "query"]),
    ("battle", 0.7, &["validate", "arena"]),
    ("creative", 0.6, &["generate", "remix"]),
    ("vision", 0.5, &["scan", "detect", "ocr"]),
    ("governance", 0.4, &["audit", "policy", "compliance"]),
    ("ops", 0.3, &["health", "deploy", "status"]),
];

#[derive(Debug, Clone, PartialEq)]
pub struct GroupTable {
    groups: Vec<ServiceGroup>,
    by_action: HashMap<String, usize>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Default for GroupTable {
    fn default() -> Self {
        let groups = SEED
            .iter()
            .map(|(name, weight, actions)| ServiceGroup {
                name: name.to_string(),
                weight: *weight,
                actions: actions.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        GroupTable::new(groups).expect("the seed table is valid")
    }
}

impl GroupTable {
    /// Builds a table, validating names, weights and that every action has one group.
    pub fn new(groups: Vec<ServiceGroup>) -> Result<Self, TableError> {
        let mut table = GroupTable {
            groups: Vec::new(),
            by_action: HashMap::new(),
        };
        table.extend(groups)?;
        Ok(table)
    }

    /// Adds operator groups. A group whose name exists gains the listed actions (and takes
    /// the new weight); a new name becomes a new group. On error the table is unchanged.
    pub fn extend(&mut self, extra: Vec<ServiceGroup>) -> Result<(), TableError> {
        let mut next = self.clone();
        for group in extra {
            if !valid_name(&group.name) {
                return Err(TableError::BadGroupName(group.name));
            }
            if !(group.weight.is_finite() && group.weight > 0.0 && group.weight <= 1.0) {
                return Err(TableError::BadWeight {
                    group: group.name,
                    weight: group.weight,
                });
            }
            if group.actions.is_empty() {
                return Err(TableError::NoActions { group: group.name });
            }
            let idx = match next.groups.iter().position(|g| g.name == group.name) {
                Some(i) => {
                    next.groups[i].weight = group.weight;
                    i
                }
                None => {
                    next.groups.push(ServiceGroup {
                        name: group.name.clone(),
                        weight: group.weight,
                        actions: Vec::new(),
                    });
                    next.groups.len() - 1
                }
            };
            for action in group.actions {
                if !valid_name(&action) {
                    return Err(TableError::BadActionName {
                        group: group.name.clone(),
                        action,
                    });
                }
                match next.by_action.get(&action) {
                    Some(&i) if i == idx => continue,
                    Some(&i) => {
                        return Err(TableError::DuplicateAction {
                            action,
                            first: next.groups[i].name.clone(),
                            second: group.name.clone(),
                        })
                    }
                    None => {
                        next.by_action.insert(action.clone(), idx);
                        next.groups[idx].actions.push(action);
                    }
                }
            }
        }
        *self = next;
        Ok(())
    }

    pub fn groups(&self) -> &[ServiceGroup] {
        &self.groups
    }

    pub fn group(&self, name: &str) -> Option<&ServiceGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Task Router: the service group of an action. Unknown actions are an error, never a default.
    pub fn route(&self, action: &str) -> Result<Route, RouteError> {
        let idx = self
            .by_action
            .get(action)
            .ok_or_else(|| RouteError::UnknownAction {
                action: action.to_string(),
            })?;
        let g = &self.groups[*idx];
        Ok(Route {
            action: action.to_string(),
            group: g.name.clone(),
            weight: g.weight,
            reason: format!(
                "action {:?} is listed by service group {:?} (weight {})",
                action, g.name, g.weight
            ),
        })
    }

    /// Load-aware scaling: split `slots` concurrency slots across groups in proportion to
    /// weight (largest remainder, so the shares always add up to `slots`). Every group keeps
    /// at least one slot when there are enough slots to go round.
    pub fn concurrency_shares(&self, slots: u32) -> Vec<(String, u32)> {
        let total: f64 = self.groups.iter().map(|g| g.weight).sum();
        if self.groups.is_empty() || total <= 0.0 {
            return Vec::new();
        }
        let floor_one = slots as usize >= self.groups.len();
        let reserved = if floor_one {
            self.groups.len() as u32
        } else {
            0
        };
        let spare = slots - reserved;
        let exact: Vec<f64> = self
            .groups
            .iter()
            .map(|g| spare as f64 * g.weight / total)
            .collect();
        let mut shares: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
        let mut left = spare - shares.iter().sum::<u32>();
        let mut order: Vec<usize> = (0..shares.len()).collect();
        // Largest remainder first; ties go to the heavier group, then table order.
        order.sort_by(|&a, &b| {
            let ra = exact[a] - exact[a].floor();
            let rb = exact[b] - exact[b].floor();
            rb.total_cmp(&ra)
                .then(self.groups[b].weight.total_cmp(&self.groups[a].weight))
                .then(a.cmp(&b))
        });
        for i in order {
            if left == 0 {
                break;
            }
            shares[i] += 1;
            left -= 1;
        }
        self.groups
            .iter()
            .zip(shares)
            .map(|(g, s)| (g.name.clone(), s + u32::from(floor_one)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_table_has_twelve_groups_with_their_weights() {
        let t = GroupTable::default();
        assert_eq!(t.groups().len(), 12);
        let r = t.route("pr_review").unwrap();
        assert_eq!((r.group.as_str(), r.weight), ("coding", 0.95));
        assert!(r.reason.contains("coding"));
        assert_eq!(t.route("ocr").unwrap().group, "vision");
        assert_eq!(t.route("status").unwrap().weight, 0.3);
    }

    #[test]
    fn unknown_action_is_an_error() {
        let t = GroupTable::default();
        assert_eq!(
            t.route("teleport"),
            Err(RouteError::UnknownAction {
                action: "teleport".into()
            })
        );
    }

    #[test]
    fn operators_extend_the_table() {
        let mut t = GroupTable::default();
        t.extend(vec![
            ServiceGroup {
                name: "translation".into(),
                weight: 0.65,
                actions: vec!["translate".into()],
            },
            ServiceGroup {
                name: "ops".into(),
                weight: 0.35,
                actions: vec!["restart".into()],
            },
        ])
        .unwrap();
        assert_eq!(t.groups().len(), 13);
        assert_eq!(t.route("translate").unwrap().group, "translation");
        assert_eq!(t.route("restart").unwrap().weight, 0.35);
        assert_eq!(t.route("health").unwrap().weight, 0.35);
    }

    #[test]
    fn bad_extensions_are_rejected_and_leave_the_table_unchanged() {
        let mut t = GroupTable::default();
        let before = t.clone();
        let dup = ServiceGroup {
            name: "x".into(),
            weight: 0.5,
            actions: vec!["chat".into()],
        };
        assert!(matches!(
            t.extend(vec![dup]),
            Err(TableError::DuplicateAction { .. })
        ));
        let w = ServiceGroup {
            name: "y".into(),
            weight: f64::NAN,
            actions: vec!["q".into()],
        };
        assert!(matches!(
            t.extend(vec![w]),
            Err(TableError::BadWeight { .. })
        ));
        let n = ServiceGroup {
            name: "Bad Name".into(),
            weight: 0.5,
            actions: vec!["q".into()],
        };
        assert!(matches!(
            t.extend(vec![n]),
            Err(TableError::BadGroupName(_))
        ));
        let e = ServiceGroup {
            name: "z".into(),
            weight: 0.5,
            actions: vec![],
        };
        assert!(matches!(
            t.extend(vec![e]),
            Err(TableError::NoActions { .. })
        ));
        assert_eq!(t, before);
    }

    #[test]
    fn heavier_groups_get_more_concurrency() {
        let t = GroupTable::default();
        let shares = t.concurrency_shares(100);
        assert_eq!(shares.iter().map(|s| s.1).sum::<u32>(), 100);
        let get = |n: &str| shares.iter().find(|s| s.0 == n).unwrap().1;
        assert!(get("reasoning") > get("ops"));
        assert!(get("ops") >= 1);
    }

    proptest! {
        #[test]
        fn shares_always_sum_to_slots(slots in 0u32..10_000) {
            let t = GroupTable::default();
            let shares = t.concurrency_shares(slots);
            prop_assert_eq!(shares.iter().map(|s| s.1).sum::<u32>(), slots);
        }
    }
}
