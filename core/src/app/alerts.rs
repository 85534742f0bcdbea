//! Alerts raised outside a use case's own transaction (a dead-lettered
//! message): one transaction that queues them in the outbox.

use crate::domain::alert::Alert;
use crate::domain::ids::OutboxId;
use crate::in_transaction;
use crate::store::{outbox, StoreError};

use super::Context;

/// Queues `alerts` (none when alerts are off); an alert already queued for
/// the same transition is left out. Returns the rows to publish.
pub async fn queue(ctx: &Context, alerts: &[Alert]) -> Result<Vec<OutboxId>, StoreError> {
    if !ctx.alerts || alerts.is_empty() {
        return Ok(Vec::new());
    }
    in_transaction!(ctx.pool, StoreError, |tx| outbox::insert_alerts(
        &tx, alerts
    )
    .await?)
}
