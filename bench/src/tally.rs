//! Checked calls: a unique payload per call, and a tally of what came back (answered
//! right, lost, mismatched, errors, unexpected answers) with a latency histogram.

use std::time::Duration;

use hdrhistogram::Histogram;
use iii_core::wire::json::CALLER_WORKER_ID;
use serde_json::{json, Value};

use crate::scenarios::Fields;
use crate::shared::round;

/// The payload of call `seq`: unique per call, and more than a counter (a 64-bit tag
/// mixed from `seq`), so that an answer carrying another call's data cannot pass.
pub fn payload(seq: u64) -> Value {
    json!({ "seq": seq, "tag": format!("{:016x}", splitmix64(seq)) })
}

/// True when `answer` is call `seq`'s payload, give or take the `_caller_worker_id` key
/// the engine adds to the data of every call (the echo hands it back).
pub fn echoes(seq: u64, answer: &Value) -> bool {
    let (Some(got), Value::Object(sent)) = (answer.as_object(), payload(seq)) else {
        return false;
    };
    sent.iter().all(|(key, value)| got.get(key) == Some(value))
        && got
            .keys()
            .all(|key| sent.contains_key(key) || key == CALLER_WORKER_ID)
}

/// SplitMix64's output function: a bijective mix of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The latest latency a histogram records (longer ones are recorded as this), in ns.
const MAX_NANOS: u64 = 3_600_000_000_000;

/// What a set of checked calls saw.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Answered with exactly the payload sent.
    pub ok: u64,
    /// Never answered within the call timeout (or the connection was lost).
    pub lost: u64,
    /// Answered with something else than the payload sent.
    pub mismatched: u64,
    /// Answered with an error.
    pub errors: u64,
    /// Answers to no outstanding call (unknown or repeated invocation id, or late).
    pub unexpected: u64,
    /// Latency of the calls answered right, in nanoseconds.
    pub latency: Histogram<u64>,
    /// The first problem seen, for the report.
    pub first_problem: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self {
            ok: 0,
            lost: 0,
            mismatched: 0,
            errors: 0,
            unexpected: 0,
            latency: Histogram::new_with_bounds(1, MAX_NANOS, 3)
                .expect("constant bounds: 1 <= low, high >= 2 * low, 3 significant figures"),
            first_problem: None,
        }
    }

    /// Checks the answer of call `seq` against its payload and counts it.
    pub fn check(&mut self, seq: u64, answer: &Value, elapsed: Duration) {
        if echoes(seq, answer) {
            self.ok += 1;
            let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(MAX_NANOS);
            self.latency.saturating_record(nanos.clamp(1, MAX_NANOS));
        } else {
            self.mismatched += 1;
            self.note(|| format!("call {seq}: sent {}, got {answer}", payload(seq)));
        }
    }

    /// Counts a call that was never answered.
    pub fn lost(&mut self, seq: u64, why: &str) {
        self.lost += 1;
        self.note(|| format!("call {seq} lost: {why}"));
    }

    /// Counts a call answered with an error.
    pub fn error(&mut self, seq: u64, error: &str) {
        self.errors += 1;
        self.note(|| format!("call {seq} failed: {error}"));
    }

    /// Counts an answer to no outstanding call.
    pub fn unexpected(&mut self, what: &str) {
        self.unexpected += 1;
        self.note(|| format!("unexpected answer: {what}"));
    }

    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }

    /// Adds `other`'s counts and samples.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.lost += other.lost;
        self.mismatched += other.mismatched;
        self.errors += other.errors;
        self.unexpected += other.unexpected;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }

    /// Calls that went wrong in any way.
    pub fn problems(&self) -> u64 {
        self.lost + self.mismatched + self.errors + self.unexpected
    }

    /// `Err` describing the problems, if any.
    pub fn result(&self) -> Result<(), String> {
        if self.problems() == 0 {
            return Ok(());
        }
        Err(format!(
            "{} lost, {} mismatched, {} errors, {} unexpected; first: {}",
            self.lost,
            self.mismatched,
            self.errors,
            self.unexpected,
            self.first_problem.as_deref().unwrap_or("?")
        ))
    }

    /// Adds the counts and the p50/p99/p99.9/max latency (µs) as `{prefix}...` fields.
    pub fn fields(&self, f: &mut Fields, prefix: &str) {
        for (name, n) in [
            ("ok", self.ok),
            ("lost", self.lost),
            ("mismatched", self.mismatched),
            ("errors", self.errors),
            ("unexpected", self.unexpected),
        ] {
            f.insert(format!("{prefix}{name}"), json!(n));
        }
        self.latency_fields(f, prefix);
    }

    /// Adds only the latency percentiles (µs) as `{prefix}p50_us` and so on.
    pub fn latency_fields(&self, f: &mut Fields, prefix: &str) {
        let micros = |nanos: u64| round(nanos as f64 / 1e3);
        let h = &self.latency;
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
            f.insert(
                format!("{prefix}{name}_us"),
                json!(micros(h.value_at_quantile(q))),
            );
        }
        f.insert(format!("{prefix}max_us"), json!(micros(h.max())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_may_add_the_caller_id_and_nothing_else() {
        let mut answer = payload(7);
        answer[CALLER_WORKER_ID] = json!("w1");
        assert!(echoes(7, &answer));
        answer["extra"] = json!(1);
        assert!(!echoes(7, &answer));
        let mut short = payload(7);
        short.as_object_mut().map(|o| o.remove("tag"));
        assert!(!echoes(7, &short));
        assert!(!echoes(7, &json!("x")));
    }

    #[test]
    fn payloads_are_unique_and_checked_whole() {
        assert_ne!(payload(1), payload(2));
        assert_ne!(payload(1)["tag"], payload(2)["tag"]);
        let mut t = Tally::new();
        t.check(1, &payload(1), Duration::from_micros(5));
        t.check(1, &payload(2), Duration::from_micros(5));
        let mut other = payload(3);
        other["tag"] = json!("0");
        t.check(3, &other, Duration::from_micros(5));
        assert_eq!((t.ok, t.mismatched), (1, 2));
        t.lost(4, "timed out");
        t.error(5, "boom");
        t.unexpected("id x");
        assert_eq!(t.problems(), 5);
        assert!(t.result().is_err());
        assert!(t
            .first_problem
            .as_deref()
            .is_some_and(|p| p.contains("call 1")));
    }

    #[test]
    fn merge_adds_counts_and_samples() {
        let mut a = Tally::new();
        a.check(0, &payload(0), Duration::from_micros(10));
        let mut b = Tally::new();
        b.check(1, &payload(1), Duration::from_micros(1000));
        b.lost(2, "gone");
        a.merge(b);
        assert_eq!((a.ok, a.lost, a.latency.len()), (2, 1, 2));
        assert!(a.first_problem.is_some());
        let mut f = Fields::new();
        a.fields(&mut f, "x_");
        assert_eq!(f["x_ok"], 2);
        assert!(f["x_max_us"].as_f64().is_some_and(|us| us >= 999.0));
    }
}
