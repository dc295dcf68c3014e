//! What every client agrees on: function names, the write size, the per-position byte
//! pattern and its check, percentiles. Std only: the standalone published-SDK client
//! (`bench/published`, outside the workspace) compiles this same file with
//! `#[path = "../../src/shared.rs"]`, so all clients verify streams identically.

/// The channel write size.
pub const CHUNK: usize = 64 * 1024;
/// The echo function served by the callee.
pub const ECHO: &str = "bench::echo";
/// The channel-sink function served by the callee.
pub const SINK: &str = "bench::sink";
/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;
/// Distinct chunks a stream cycles through (chunk `i` of a stream is `pattern_byte(i % 16)`
/// repeated [`CHUNK`] times).
pub const PATTERN_CHUNKS: u64 = 16;

/// The byte filling the `k`-th of the [`PATTERN_CHUNKS`] chunks.
pub fn pattern_byte(k: u8) -> u8 {
    k.wrapping_mul(17).wrapping_add(1)
}

/// The byte expected at stream offset `at`.
pub fn expected(at: u64) -> u8 {
    pattern_byte(((at / CHUNK as u64) % PATTERN_CHUNKS) as u8)
}

/// Checks the first and last byte of a chunk received at offset `at`.
pub fn verify(at: u64, chunk: &[u8]) -> Result<(), String> {
    let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
        return Ok(());
    };
    let end = at + chunk.len() as u64 - 1;
    if *first != expected(at) || *last != expected(end) {
        return Err(format!("wrong data at offset {at}"));
    }
    Ok(())
}

/// Percentile (nearest rank) of sorted microsecond samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50 / p90 / p99 / max of `samples` (sorted here), rounded: the latency fields.
pub fn summary(samples: &mut [f64]) -> [(&'static str, f64); 4] {
    samples.sort_by(f64::total_cmp);
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)]
        .map(|(name, p)| (name, round(percentile(samples, p))))
}

/// Rounds to one decimal (the JSON output's precision).
pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_changes_at_chunk_boundaries_and_cycles() {
        let c = CHUNK as u64;
        assert_eq!(expected(0), pattern_byte(0));
        assert_eq!(expected(c - 1), pattern_byte(0));
        assert_eq!(expected(c), pattern_byte(1));
        assert_eq!(expected(PATTERN_CHUNKS * c), pattern_byte(0));
        assert_ne!(pattern_byte(0), pattern_byte(1));
    }

    #[test]
    fn verify_checks_both_ends_of_a_chunk() {
        let c = CHUNK as u64;
        let mut chunk = vec![pattern_byte(0); CHUNK];
        assert!(verify(0, &chunk).is_ok());
        assert!(verify(c, &chunk).is_err());
        chunk[CHUNK - 1] = pattern_byte(1);
        assert!(verify(0, &chunk).is_err());
        // A chunk straddling a boundary: first byte of chunk 0, last byte of chunk 1.
        assert!(verify(c - 1, &[pattern_byte(0), pattern_byte(1)]).is_ok());
        assert!(verify(7, &[]).is_ok());
    }

    #[test]
    fn summary_is_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summary(&mut samples);
        assert_eq!(
            s,
            [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)]
        );
        assert!(percentile(&[], 50.0).is_nan());
    }
}
