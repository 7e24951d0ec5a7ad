//! The conductor: Task Router (heady-shared's group table) and Vector Zone. Brain Router and
//! Pattern Engine arrive with the pipeline; `layers` in a decision says which were consulted.

pub mod config;

use heady_shared::zone::zone_of;
use heady_shared::{GroupTable, Route, RouteError, Zone};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    pub layer: &'static str,
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub route: Route,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<Zone>,
    pub layers: Vec<Layer>,
}

pub struct Conductor {
    table: GroupTable,
}

impl Conductor {
    pub fn new(table: GroupTable) -> Self {
        Conductor { table }
    }

    pub fn table(&self) -> &GroupTable {
        &self.table
    }

    /// Routes an action; with an embedding of the request text, also places it in a zone.
    pub fn decide(&self, action: &str, embedding: Option<&[f32]>) -> Result<Decision, RouteError> {
        let route = self.table.route(action)?;
        let mut layers = vec![Layer {
            layer: "task_router",
            result: route.reason.clone(),
        }];
        let zone = embedding.and_then(|e| zone_of(e).ok());
        if let Some(z) = &zone {
            layers.push(Layer {
                layer: "vector_zone",
                result: format!("text falls in octant {}", z.zone),
            });
        }
        Ok(Decision {
            route,
            zone,
            layers,
        })
    }
}
