//! The ground floor: helpers every layer may use, which use nothing of the
//! crate but the domain's trace context. [`errors`]: an error with its
//! causes; [`tally`]: summaries that add up field by field; [`shutdown`]:
//! SIGTERM/SIGINT and the periodic-task loop; [`supervise`]: a worker's
//! background tasks, whose failure stops it; [`backpressure`]: the count of
//! committed run requests the consumer pauses on; [`prometheus`]: the metric
//! names and the exporter; [`telemetry`]: logging and traces.

pub mod backpressure;
pub mod errors;
pub mod prometheus;
pub mod shutdown;
pub mod supervise;
pub(crate) mod tally;
pub mod telemetry;
