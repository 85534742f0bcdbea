//! `event_log`: the idempotency and audit record of inbound events.

use serde_json::Value;

use super::{StoreResult, Transaction};
use crate::domain::ids::RunId;

pub(super) const RECORD: &str =
    "INSERT INTO event_log (event_key, event_type, event_payload, processed_at, run_id)
     VALUES ($1, $2, $3, now(), $4)
     ON CONFLICT (event_key) DO NOTHING";

/// Records an event as processed. Returns `false` when its key was already
/// recorded (a duplicate). Concurrent transactions with the same key wait for
/// each other on the primary key, so exactly one of them sees `true`.
pub async fn record(
    tx: &Transaction<'_>,
    event_key: &str,
    event_type: &str,
    payload: &Value,
    run_id: Option<&RunId>,
) -> StoreResult<bool> {
    let stmt = tx.prepare_cached(RECORD).await?;
    let n = tx
        .execute(&stmt, &[&event_key, &event_type, payload, &run_id])
        .await?;
    Ok(n == 1)
}
