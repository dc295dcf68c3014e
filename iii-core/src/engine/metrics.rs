//! Counters of everything the engine did since it started, kept as plain integers inside
//! the machine (no atomics, no locks: the machine has one owner). An adapter copies them
//! out with [`super::Engine::metrics`] when it is scraped.

use std::collections::BTreeMap;
use std::time::Duration;

use super::output::{ChannelOutcome, Quota, RefusalReason};
use super::ConnKindTag;
use crate::upgrade::Rejection;

/// Upper bounds of the invocation latency buckets, in seconds (the last bucket is
/// unbounded).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// How an invocation ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InvocationOutcome {
    /// Answered with a result.
    Ok,
    /// Answered with an error (by the function or the engine).
    Error,
    /// The engine's `invocation_timeout` passed.
    Timeout,
    /// The function does not exist.
    NotFound,
    /// The serving worker or the caller went away first.
    Stopped,
}

impl InvocationOutcome {
    /// Every outcome, in label order.
    pub const ALL: [InvocationOutcome; 5] = [
        InvocationOutcome::Ok,
        InvocationOutcome::Error,
        InvocationOutcome::Timeout,
        InvocationOutcome::NotFound,
        InvocationOutcome::Stopped,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            InvocationOutcome::Ok => "ok",
            InvocationOutcome::Error => "error",
            InvocationOutcome::Timeout => "timeout",
            InvocationOutcome::NotFound => "not_found",
            InvocationOutcome::Stopped => "stopped",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A cumulative histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencyHistogram {
    /// Observations at or under each bound (cumulative), then the total count.
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// What the engine counted since it started. Counters only grow; gauges are read from
/// [`super::EngineStats`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineMetrics {
    /// Accepted upgrades: control, telemetry, channel reader, channel writer.
    pub accepted: [u64; 4],
    /// Upgrades the engine refused, by HTTP status.
    pub refused_upgrades: RefusedUpgrades,
    /// Invocations by outcome (see [`InvocationOutcome::ALL`] for the order).
    pub invocations: [u64; 5],
    /// Time from a call's arrival to its answer, for calls served by workers.
    pub invocation_latency: LatencyHistogram,
    /// Channels created.
    pub channels_created: u64,
    /// Channels removed, by [`ChannelOutcome`] (see [`CHANNEL_OUTCOMES`]).
    pub channels_removed: [u64; 6],
    /// Channel messages accepted from writers.
    pub channel_messages: u64,
    /// Channel payload bytes accepted from writers.
    pub channel_bytes: u64,
    /// Times a channel writer was paused (backpressure).
    pub writer_pauses: u64,
    /// Requests refused for a quota, by [`Quota`] (see [`QUOTAS`]).
    pub quota_refusals: [u64; 8],
    /// Requests refused for another reason: too deep, reserved id, trigger type owned,
    /// function owned, channel limit, forbidden, not approved.
    pub other_refusals: [u64; 8],
    /// Connections dropped as slow consumers.
    pub slow_consumers: u64,
    /// Built-in calls refused `rate_limited`, by the bound that refused them (see
    /// [`super::RateBound::ALL`] for the order).
    pub builtin_calls_rate_limited: [u64; 3],
    /// Worker log lines (`engine::log::*`) dropped, by the bound that dropped them (see
    /// [`super::RateBound::ALL`] for the order).
    pub worker_log_lines_suppressed: [u64; 3],
    /// Calls served by workers, per function id: the first
    /// [`EngineConfig::metrics_function_labels`](super::EngineConfig::metrics_function_labels)
    /// ids that are called get an entry each, kept for the engine's life, so the label
    /// set a scrape shows is bounded whatever the workers register.
    pub functions: BTreeMap<String, FunctionCalls>,
    /// The calls of every function without an entry in `functions` (label `other`).
    pub other_functions: FunctionCalls,
}

/// The label under which the calls of functions beyond the label cap are counted. A
/// function registered under this very id is counted there too, so the label means one
/// thing.
pub const OTHER_FUNCTIONS: &str = "other";

/// What one function's calls did (calls served by workers).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FunctionCalls {
    /// Calls by outcome (see [`InvocationOutcome::ALL`] for the order).
    pub outcomes: [u64; 5],
    /// Time from a call's arrival to its answer (answers and timeouts).
    pub latency: LatencyHistogram,
}

impl FunctionCalls {
    /// Calls with `outcome`.
    pub fn with(&self, outcome: InvocationOutcome) -> u64 {
        self.outcomes[outcome.index()]
    }
}

/// Upgrades refused by the engine, by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusedUpgrades {
    /// 400 (malformed channel URL).
    pub bad_request: u64,
    /// 401 (token).
    pub unauthorized: u64,
    /// 403 (origin).
    pub forbidden: u64,
    /// 404 (unknown path, channel or key).
    pub not_found: u64,
    /// 503 (connection limit, draining or stopped).
    pub unavailable: u64,
}

/// The channel outcomes in the order of [`EngineMetrics::channels_removed`].
pub const CHANNEL_OUTCOMES: [ChannelOutcome; 6] = [
    ChannelOutcome::Completed,
    ChannelOutcome::WriterLost,
    ChannelOutcome::ReaderGone,
    ChannelOutcome::Oversized,
    ChannelOutcome::Expired,
    ChannelOutcome::Shutdown,
];

/// The quotas in the order of [`EngineMetrics::quota_refusals`].
pub const QUOTAS: [Quota; 8] = [
    Quota::Functions,
    Quota::TriggerTypes,
    Quota::Bindings,
    Quota::EngineBindings,
    Quota::PendingInvocations,
    Quota::Channels,
    Quota::RegistrationBytes,
    Quota::TotalRegistrationBytes,
];

/// The other refusal reasons in the order of [`EngineMetrics::other_refusals`].
pub const OTHER_REFUSALS: [RefusalReason; 8] = [
    RefusalReason::TooDeep,
    RefusalReason::Reserved,
    RefusalReason::TriggerTypeOwned,
    RefusalReason::FunctionOwned,
    RefusalReason::ChannelLimit,
    RefusalReason::Forbidden,
    RefusalReason::NotApproved,
    RefusalReason::RateLimited,
];

impl EngineMetrics {
    pub(super) fn accepted(&mut self, kind: ConnKindTag) {
        let index = match kind {
            ConnKindTag::Control => 0,
            ConnKindTag::Telemetry => 1,
            ConnKindTag::ChannelReader => 2,
            ConnKindTag::ChannelWriter => 3,
        };
        self.accepted[index] += 1;
    }

    pub(super) fn refused_upgrade(&mut self, rejection: Rejection) {
        let refused = &mut self.refused_upgrades;
        match rejection {
            Rejection::BadRequest => refused.bad_request += 1,
            Rejection::Unauthorized => refused.unauthorized += 1,
            Rejection::Forbidden => refused.forbidden += 1,
            Rejection::NotFound => refused.not_found += 1,
            Rejection::Overloaded | Rejection::Unavailable => refused.unavailable += 1,
        }
    }

    pub(super) fn invocation(&mut self, outcome: InvocationOutcome, latency: Option<Duration>) {
        self.invocations[outcome.index()] += 1;
        if let Some(latency) = latency {
            self.invocation_latency.observe(latency);
        }
    }

    /// Counts a call of `function_id` served by a worker, in its own entry while fewer
    /// than `labels` functions have one, otherwise under [`OTHER_FUNCTIONS`].
    pub(super) fn function_call(
        &mut self,
        labels: usize,
        function_id: &str,
        outcome: InvocationOutcome,
        latency: Option<Duration>,
    ) {
        let own = function_id != OTHER_FUNCTIONS
            && (self.functions.contains_key(function_id) || self.functions.len() < labels);
        let entry = match own {
            true => self.functions.entry(function_id.to_owned()).or_default(),
            false => &mut self.other_functions,
        };
        entry.outcomes[outcome.index()] += 1;
        if let Some(latency) = latency {
            entry.latency.observe(latency);
        }
    }

    pub(super) fn channel_removed(&mut self, outcome: ChannelOutcome) {
        if let Some(index) = CHANNEL_OUTCOMES.iter().position(|o| *o == outcome) {
            self.channels_removed[index] += 1;
        }
    }

    pub(super) fn refused(&mut self, reason: RefusalReason) {
        match reason {
            RefusalReason::Quota(quota) => {
                if let Some(index) = QUOTAS.iter().position(|q| *q == quota) {
                    self.quota_refusals[index] += 1;
                }
            }
            other => {
                if let Some(index) = OTHER_REFUSALS.iter().position(|r| *r == other) {
                    self.other_refusals[index] += 1;
                }
            }
        }
    }

    /// Invocations with `outcome`.
    pub fn invocations_with(&self, outcome: InvocationOutcome) -> u64 {
        self.invocations[outcome.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_labels_are_capped_and_the_rest_are_other() {
        let mut metrics = EngineMetrics::default();
        let ms = Some(Duration::from_millis(3));
        for id in ["a", "b", "c", "a", OTHER_FUNCTIONS] {
            metrics.function_call(2, id, InvocationOutcome::Ok, ms);
        }
        metrics.function_call(2, "b", InvocationOutcome::Timeout, ms);
        metrics.function_call(2, "d", InvocationOutcome::Stopped, None);
        let ids: Vec<&str> = metrics.functions.keys().map(String::as_str).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(metrics.functions["a"].with(InvocationOutcome::Ok), 2);
        assert_eq!(metrics.functions["b"].with(InvocationOutcome::Timeout), 1);
        assert_eq!(metrics.functions["b"].latency.count, 2);
        let other = &metrics.other_functions;
        assert_eq!(other.with(InvocationOutcome::Ok), 2, "c and `other` itself");
        assert_eq!(other.with(InvocationOutcome::Stopped), 1);
        assert_eq!(other.latency.count, 2, "a stopped call has no latency");
    }

    #[test]
    fn the_histogram_is_cumulative() {
        let mut histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_secs(60));
        assert_eq!(histogram.count, 2);
        assert_eq!(histogram.buckets[0], 0); // ≤ 100 µs
        assert_eq!(histogram.buckets[2], 1); // ≤ 500 µs
        assert_eq!(histogram.buckets[13], 1); // ≤ 30 s: the 60 s one is only in +Inf
        assert!((histogram.sum_seconds - 60.0003).abs() < 1e-9);
    }
}
