//! Call slots: how many legacy calls run at once, in either mode. Waiting for
//! a slot is the caller's time, bounded by the caller's budget only; it never
//! counts against the call's own timeout.

use std::sync::Arc;

use assessments_common::budget::Budget;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::error::LegacyError;

/// Waits for one of `limit` call slots within `budget`: `Saturated` if none
/// frees in time, `ShuttingDown` once the slots are closed.
pub(super) async fn acquire_slot(
    permits: &Arc<Semaphore>,
    budget: &Budget,
    limit: usize,
) -> Result<OwnedSemaphorePermit, LegacyError> {
    if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
        return Ok(permit);
    }
    // Only a real wait is traced: its own subsegment under the legacy call.
    let span = tracing::trace_span!(target: "xray", "legacy slot wait", running = limit);
    let bound = budget.as_bound();
    let wait = bound
        .run(Arc::clone(permits).acquire_owned())
        .instrument(span);
    match wait.await {
        Err(waited) => Err(LegacyError::Saturated {
            waited,
            running: limit,
        }),
        Ok(Err(_closed)) => Err(LegacyError::ShuttingDown),
        Ok(Ok(permit)) => Ok(permit),
    }
}
