//! Stripe's meter events API as the usage meter's sink: each sealed Enterprise bucket becomes
//! one `POST /v1/billing/meter_events`, its report identifier the event's `identifier` (Stripe
//! counts an identifier once, so a report resent after a lost answer is not billed twice).

use super::Billing;
use crate::usage::meter::{MeterEvent, MeterSink, MeterSinkError, SinkFuture};

impl MeterSink for Billing {
    fn send<'a>(&'a self, event: &'a MeterEvent) -> SinkFuture<'a> {
        Box::pin(async move {
            self.stripe
                .create_meter_event(
                    &event.event_name,
                    &event.customer,
                    event.value,
                    &event.identifier,
                    event.timestamp,
                )
                .await
                .map(|_| ())
                .map_err(|e| MeterSinkError(e.to_string()))
        })
    }
}
