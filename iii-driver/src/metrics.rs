//! The engine's `/metrics` (Prometheus text exposition) and the counters the transport
//! keeps next to the core's.
//!
//! Nothing here sits on the relay's path: the core counts in plain integers inside the
//! engine task ([`EngineMetrics`]), the transport counts rare events (refusals before the
//! engine, connections in their upgrade) in atomics, and a scrape asks the engine task
//! for one copy of both and encodes it with `prometheus-client`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::slots::{SlotBudget, SlotRefusal};
use iii_core::engine::{
    ChannelOutcome, EngineMetrics, EngineStats, FunctionCalls, InvocationOutcome, LatencyHistogram,
    Quota, RateBound, RefusalReason, CHANNEL_OUTCOMES, LATENCY_BUCKETS, OTHER_FUNCTIONS,
    OTHER_REFUSALS, QUOTAS,
};
use prometheus_client::collector::Collector;

use crate::memory::MemoryUse;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The HTTP statuses the transport answers itself: before the engine decides on an
/// upgrade, and for `/metrics` and `/healthz`.
const TRANSPORT_STATUSES: [u16; 7] = [400, 401, 403, 405, 426, 431, 503];

/// What the transport counts itself.
#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    /// Connections refused before their upgrade whose 503 is being written.
    pub(crate) refusing: AtomicUsize,
    /// Requests refused before the engine saw them, by [`TRANSPORT_STATUSES`].
    refused: [AtomicU64; 7],
    /// TLS handshakes that failed (the connection never reached the engine).
    tls_failed: AtomicU64,
    /// Certificate reloads: done, failed.
    tls_reloads: [AtomicU64; 2],
}

impl TransportCounters {
    /// Counts a refusal the transport answered with `status`.
    pub(crate) fn refused(&self, status: u16) {
        if let Some(index) = TRANSPORT_STATUSES.iter().position(|s| *s == status) {
            self.refused[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed TLS handshake.
    pub(crate) fn tls_failed(&self) {
        self.tls_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a certificate reload that was done (`true`) or failed.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn tls_reloaded(&self, done: bool) {
        self.tls_reloads[usize::from(!done)].fetch_add(1, Ordering::Relaxed);
    }
}

/// One copy of everything `/metrics` shows.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) metrics: EngineMetrics,
    pub(crate) stats: EngineStats,
    pub(crate) in_handshake: usize,
    /// Listener names, by index (0 is the main listener).
    pub(crate) listener_names: Vec<String>,
    /// Pre-upgrade slots held, by listener.
    pub(crate) handshakes_by_listener: Vec<usize>,
    /// Connections refused for want of a pre-upgrade slot, by listener, by
    /// [`SlotRefusal::ALL`].
    pub(crate) slot_refusals: Vec<[u64; 3]>,
    pub(crate) transport_refused: [u64; 7],
    pub(crate) tls_failed: u64,
    pub(crate) tls_reloads: [u64; 2],
    pub(crate) memory: MemoryUse,
    pub(crate) draining: bool,
}

impl Snapshot {
    /// Takes the transport's part now; the engine's part comes from its task.
    pub(crate) fn new(
        metrics: EngineMetrics,
        stats: EngineStats,
        transport: &TransportCounters,
        slots: &SlotBudget,
        listener_names: Vec<String>,
        memory: MemoryUse,
        draining: bool,
    ) -> Self {
        let (in_handshake, handshakes_by_listener) = slots.held();
        Self {
            metrics,
            stats,
            in_handshake,
            listener_names,
            handshakes_by_listener,
            slot_refusals: slots.refused(),
            transport_refused: std::array::from_fn(|i| {
                transport.refused[i].load(Ordering::Relaxed)
            }),
            tls_failed: transport.tls_failed.load(Ordering::Relaxed),
            tls_reloads: std::array::from_fn(|i| transport.tls_reloads[i].load(Ordering::Relaxed)),
            memory,
            draining,
        }
    }

    /// The OpenMetrics text of this snapshot.
    pub(crate) fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        registry
            .sub_registry_with_prefix("iii")
            .register_collector(Box::new(self));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

impl Snapshot {
    /// `iii_handshakes_in_progress{listener}` and
    /// `iii_handshakes_refused_total{listener, reason}`.
    fn encode_slots(&self, e: &mut DescriptorEncoder) -> Result {
        let names = &self.listener_names;
        let mut metric = e.encode_descriptor(
            "handshakes_in_progress",
            "Connections holding a pre-upgrade slot (TLS handshake, request head), by listener",
            None,
            MetricType::Gauge,
        )?;
        for (name, held) in names.iter().zip(&self.handshakes_by_listener) {
            let labels = [("listener", name.as_str())];
            metric
                .encode_family(&labels)?
                .encode_gauge(&(*held as i64))?;
        }
        let mut metric = e.encode_descriptor(
            "handshakes_refused",
            "Connections refused for want of a pre-upgrade slot, by listener and by whose \
             share was full (engine, listener, address)",
            None,
            MetricType::Counter,
        )?;
        for (name, refused) in names.iter().zip(&self.slot_refusals) {
            for (reason, count) in SlotRefusal::ALL.iter().zip(refused) {
                let labels = [("listener", name.as_str()), ("reason", reason.label())];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(count, None)?;
            }
        }
        Ok(())
    }
}

/// The content type of [`Snapshot::encode`].
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Result = std::result::Result<(), std::fmt::Error>;

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    let metric = ConstGauge::new(value as i64);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A family of one label: `(label value, value)` rows.
fn family(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    rows: &[(&str, u64)],
) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (value, count) in rows {
        let labels = [(label, *value)];
        let mut row = metric.encode_family(&labels)?;
        match kind {
            MetricType::Gauge => row.encode_gauge(&(*count as i64))?,
            _ => row.encode_counter::<NoLabelSet, u64, u64>(count, None)?,
        }
    }
    Ok(())
}

fn outcome_label(outcome: ChannelOutcome) -> &'static str {
    match outcome {
        ChannelOutcome::Completed => "completed",
        ChannelOutcome::WriterLost => "writer_lost",
        ChannelOutcome::ReaderGone => "reader_gone",
        ChannelOutcome::Oversized => "oversized",
        ChannelOutcome::Expired => "expired",
        ChannelOutcome::Shutdown => "shutdown",
    }
}

fn refusal_label(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::TooDeep => "too_deep",
        RefusalReason::Reserved => "reserved_id",
        RefusalReason::TriggerTypeOwned => "trigger_type_owned",
        RefusalReason::FunctionOwned => "function_owned",
        RefusalReason::ChannelLimit => "channel_limit",
        RefusalReason::Quota(_) => "quota",
        RefusalReason::Forbidden => "forbidden",
        RefusalReason::NotApproved => "not_approved",
        RefusalReason::RateLimited => "rate_limited",
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        let (m, s) = (&self.metrics, &self.stats);
        let e = &mut encoder;
        family(
            e,
            ("connections", "Open connections by kind", MetricType::Gauge),
            "kind",
            &[
                ("control", s.connections_by_kind[0] as u64),
                ("telemetry", s.connections_by_kind[1] as u64),
                ("channel_reader", s.connections_by_kind[2] as u64),
                ("channel_writer", s.connections_by_kind[3] as u64),
                ("pre_upgrade", self.in_handshake as u64),
            ],
        )?;
        family(
            e,
            (
                "connections_accepted",
                "Upgrades accepted by kind",
                MetricType::Counter,
            ),
            "kind",
            &[
                ("control", m.accepted[0]),
                ("telemetry", m.accepted[1]),
                ("channel_reader", m.accepted[2]),
                ("channel_writer", m.accepted[3]),
            ],
        )?;
        let r = &m.refused_upgrades;
        let t = &self.transport_refused;
        family(
            e,
            (
                "upgrades_refused",
                "Requests refused before an upgrade (and /metrics, /healthz), by HTTP status",
                MetricType::Counter,
            ),
            "status",
            &[
                ("400", r.bad_request + t[0]),
                ("401", r.unauthorized + t[1]),
                ("403", r.forbidden + t[2]),
                ("404", r.not_found),
                ("405", t[3]),
                ("426", t[4]),
                ("431", t[5]),
                ("503", r.unavailable + t[6]),
            ],
        )?;
        self.encode_slots(e)?;
        gauge(e, "workers", "Connected workers", s.workers as u64)?;
        gauge(
            e,
            "functions",
            "Registered functions (the engine's own excluded)",
            s.functions as u64,
        )?;
        gauge(e, "trigger_bindings", "Trigger bindings", s.bindings as u64)?;
        gauge(
            e,
            "invocations_pending",
            "Invocations waiting for a worker's answer",
            s.pending_invocations as u64,
        )?;
        let outcomes: Vec<(&str, u64)> = InvocationOutcome::ALL
            .iter()
            .map(|o| (o.label(), m.invocations_with(*o)))
            .collect();
        family(
            e,
            ("invocations", "Invocations by outcome", MetricType::Counter),
            "outcome",
            &outcomes,
        )?;
        let histogram = &m.invocation_latency;
        let buckets = histogram_buckets(histogram);
        e.encode_descriptor(
            "invocation_duration_seconds",
            "Time from a call's arrival to its answer, for calls served by workers",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            histogram.sum_seconds,
            histogram.count,
            &buckets,
            None,
        )?;
        gauge(e, "channels_open", "Live channels", s.channels as u64)?;
        counter(
            e,
            "channels_created",
            "Channels created",
            m.channels_created,
        )?;
        let removed: Vec<(&str, u64)> = CHANNEL_OUTCOMES
            .iter()
            .zip(m.channels_removed)
            .map(|(o, n)| (outcome_label(*o), n))
            .collect();
        family(
            e,
            (
                "channels_removed",
                "Channels removed: completed, or aborted by reason",
                MetricType::Counter,
            ),
            "outcome",
            &removed,
        )?;
        counter(
            e,
            "channel_bytes",
            "Channel payload bytes relayed",
            m.channel_bytes,
        )?;
        counter(
            e,
            "channel_messages",
            "Channel messages relayed",
            m.channel_messages,
        )?;
        counter(
            e,
            "channel_writer_pauses",
            "Times a channel writer was paused (backpressure)",
            m.writer_pauses,
        )?;
        gauge(
            e,
            "channel_buffered_bytes",
            "Bytes held in channel buffers",
            s.channel_buffered_bytes as u64,
        )?;
        gauge(
            e,
            "channel_committed_bytes",
            "Bytes counted against the engine-wide channel budget",
            s.committed_channel_bytes as u64,
        )?;
        let quotas: Vec<(&str, u64)> = QUOTAS
            .iter()
            .zip(m.quota_refusals)
            .map(|(q, n)| (Quota::name(*q), n))
            .collect();
        family(
            e,
            (
                "quota_refusals",
                "Requests refused for a per-worker quota",
                MetricType::Counter,
            ),
            "quota",
            &quotas,
        )?;
        let others: Vec<(&str, u64)> = OTHER_REFUSALS
            .iter()
            .zip(m.other_refusals)
            .map(|(r, n)| (refusal_label(*r), n))
            .collect();
        family(
            e,
            (
                "requests_refused",
                "Requests refused for another reason",
                MetricType::Counter,
            ),
            "reason",
            &others,
        )?;
        let by_bound = |counts: [u64; 3]| -> Vec<(&str, u64)> {
            RateBound::ALL
                .iter()
                .map(|b| (b.label(), counts[b.index()]))
                .collect()
        };
        family(
            e,
            (
                "builtin_calls_rate_limited",
                "Calls of the engine's own functions refused rate_limited, by the bound that refused them",
                MetricType::Counter,
            ),
            "bound",
            &by_bound(m.builtin_calls_rate_limited),
        )?;
        family(
            e,
            (
                "worker_log_lines_suppressed",
                "Worker log lines (engine::log::*) dropped, by the bound that dropped them",
                MetricType::Counter,
            ),
            "bound",
            &by_bound(m.worker_log_lines_suppressed),
        )?;
        counter(
            e,
            "slow_consumers",
            "Connections dropped for not reading",
            m.slow_consumers,
        )?;
        counter(
            e,
            "tls_handshakes_failed",
            "TLS handshakes that failed (those connections never reached the engine)",
            self.tls_failed,
        )?;
        family(
            e,
            (
                "tls_reloads",
                "Certificate reloads by outcome (a failed one keeps the previous certificate)",
                MetricType::Counter,
            ),
            "outcome",
            &[
                ("done", self.tls_reloads[0]),
                ("failed", self.tls_reloads[1]),
            ],
        )?;
        let memory = &self.memory;
        gauge(
            e,
            "memory_budget_bytes",
            "The engine-wide byte budget of messages in progress and unsent output",
            memory.limit as u64,
        )?;
        gauge(
            e,
            "memory_held_bytes",
            "Bytes of messages in progress and unsent output (pongs included) held now",
            memory.used as u64,
        )?;
        gauge(
            e,
            "memory_held_peak_bytes",
            "The most bytes of messages in progress and unsent output ever held at once",
            memory.peak as u64,
        )?;
        family(
            e,
            (
                "memory_cuts",
                "Connections cut by the memory budget, by reason",
                MetricType::Counter,
            ),
            "reason",
            &[
                ("budget", memory.refused),
                ("largest_holder", memory.evicted),
                ("slow_consumer", memory.slow_consumers),
            ],
        )?;
        gauge(
            e,
            "draining",
            "1 while the engine drains before stopping",
            u64::from(self.draining),
        )?;
        encode_functions(e, m)?;
        crate::process_metrics::encode_build(e)
    }
}

/// `iii_function_calls_total{function, outcome}` and
/// `iii_function_call_duration_seconds{function}`: calls served by workers, per function
/// id for the first `metrics_function_labels` functions called, `other` for the rest.
fn encode_functions(e: &mut DescriptorEncoder, m: &EngineMetrics) -> Result {
    let rows: Vec<(&str, &FunctionCalls)> = m
        .functions
        .iter()
        .map(|(id, calls)| (id.as_str(), calls))
        .chain(std::iter::once((OTHER_FUNCTIONS, &m.other_functions)))
        .collect();
    let mut calls = e.encode_descriptor(
        "function_calls",
        "Calls served by workers, by function (the first ones called; `other` for the rest) and outcome",
        None,
        MetricType::Counter,
    )?;
    for (function, counts) in &rows {
        for outcome in InvocationOutcome::ALL {
            let labels = [("function", *function), ("outcome", outcome.label())];
            calls
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&counts.with(outcome), None)?;
        }
    }
    let mut durations = e.encode_descriptor(
        "function_call_duration_seconds",
        "Time from a call's arrival to its answer, by function, for calls served by workers",
        None,
        MetricType::Histogram,
    )?;
    for (function, counts) in &rows {
        let labels = [("function", *function)];
        durations
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                counts.latency.sum_seconds,
                counts.latency.count,
                &histogram_buckets(&counts.latency),
                None,
            )?;
    }
    Ok(())
}

/// The per-bucket counts of a cumulative histogram, as the encoder takes them.
fn histogram_buckets(histogram: &LatencyHistogram) -> Vec<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
    let mut below = 0;
    for (bound, cumulative) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
        buckets.push((*bound, cumulative - below));
        below = cumulative;
    }
    buckets.push((f64::MAX, histogram.count - below));
    buckets
}
