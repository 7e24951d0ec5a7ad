//! Stripe's meter events API as the usage meter's sink: each sealed Enterprise bucket becomes
//! one `POST /v1/billing/meter_events`, its report identifier the event's `identifier` (Stripe
//! counts an identifier once, so a report resent after a lost answer is not billed twice).
//! Stripe's refusals of the event itself (a 4xx other than 401, 403, 409 and 429: a timestamp
//! outside its window, a bad value) are permanent; the rest are retried.

use super::stripe::StripeError;
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
                .map_err(|e| match &e {
                    StripeError::Api { status, .. }
                        if (400..500).contains(status)
                            && ![401, 403, 409, 429].contains(status) =>
                    {
                        MeterSinkError::permanent(e.to_string())
                    }
                    _ => MeterSinkError::transient(e.to_string()),
                })
        })
    }
}
