//! Counters of what the pipeline delivered, by outcome, on the admin port's `/metrics`:
//! `persys_notifications_total{outcome}` (delivered, retried, failed),
//! `persys_dora_devlake_pushes_total{outcome}` (sent, retried, waiting, skipped, failed) and
//! `persys_dora_deployments_recorded_total`.

use persys_kit::metrics::Metrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

/// The outcome of one attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// What came of it.
    pub outcome: &'static str,
}

/// Attempts counted by outcome.
pub type Outcomes = Family<Outcome, Counter>;

/// Counts one attempt that came to `outcome`.
pub fn count(family: &Outcomes, outcome: &'static str) {
    family.get_or_create(&Outcome { outcome }).inc();
}

/// Registers `family` as `name` (without the `persys_` prefix and `_total` suffix).
pub fn register(metrics: &Metrics, name: &str, help: &str, family: &Outcomes) {
    metrics.with_registry(|r| r.register(name, help, family.clone()));
}
