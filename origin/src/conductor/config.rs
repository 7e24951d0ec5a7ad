//! `[conductor]`: the Task Router's table is the seed's 12 service groups plus these.

use crate::settings::{invalid, ConfigError, KeyDoc, Ty};
use heady_shared::groups::ServiceGroup;
use heady_shared::GroupTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConductorConfig {
    /// Extra service groups (or extra actions for existing ones).
    pub groups: Vec<ServiceGroup>,
}

impl ConductorConfig {
    /// The seed's table extended by `groups`: what the conductor and the pipeline route with.
    pub fn group_table(&self) -> Result<GroupTable, ConfigError> {
        let mut table = GroupTable::default();
        table
            .extend(self.groups.clone())
            .map_err(|e| invalid("conductor.groups", e.to_string()))?;
        Ok(table)
    }

    /// One entry as the reference documents it (every field is required).
    pub fn sample_group() -> ServiceGroup {
        ServiceGroup {
            name: "translation".into(),
            weight: 0.65,
            actions: vec!["translate".into()],
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("conductor.groups", Ty::Table, "extra service groups, or extra actions for a seed group: `[[conductor.groups]]` entries (below); env: a TOML array of inline tables"),
    KeyDoc::new("conductor.groups[].name", Ty::Str, "group name (a seed group's name adds actions to it)").required(),
    KeyDoc::new("conductor.groups[].weight", Ty::Float, "share of concurrency and queue priority under load, in (0, 1]").required(),
    KeyDoc::new("conductor.groups[].actions", Ty::List, "actions routed to the group").required(),
];
