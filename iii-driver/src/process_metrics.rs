//! The `process_*` metrics Prometheus clients conventionally export (CPU seconds,
//! resident memory, open file descriptors, start time), and the engine's build
//! information. On Linux they are read from `/proc/self` at each scrape; elsewhere the
//! `process_*` lines are absent (never a made-up value).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;

type Result = std::result::Result<(), std::fmt::Error>;

/// What the operating system says about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub(crate) resident_bytes: u64,
    /// Open file descriptors.
    pub(crate) open_fds: u64,
    /// The soft limit on open file descriptors.
    pub(crate) max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub(crate) start_time_seconds: f64,
}

impl ProcessStats {
    /// This process's figures now; `None` where they cannot be read (not Linux, or no
    /// `/proc`).
    pub(crate) fn read() -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            linux::read()
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

/// `iii_build_info{version} 1` (encoded under the registry's `iii` prefix).
pub(crate) fn encode_build(encoder: &mut DescriptorEncoder) -> Result {
    let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
    info.encode(encoder.encode_descriptor(
        "build",
        "The engine's version (the iii-rs release)",
        None,
        info.metric_type(),
    )?)
}

/// The `process_*` metrics, registered without the `iii_` prefix (every Prometheus
/// client names them so); nothing where they cannot be read.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes",
                Some(process.resident_bytes as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                Some(process.open_fds as f64),
            ),
            (
                "process_max_fds",
                "The limit on open file descriptors",
                process.max_fds.map(|max| max as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                Some(process.start_time_seconds),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::ProcessStats;

    /// Reads `/proc/self/stat` (CPU ticks, start ticks after boot), `/proc/self/statm`
    /// (resident pages), `/proc/self/fd`, `/proc/self/limits` and `/proc/stat` (boot
    /// time).
    pub(super) fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: the fields
        // that follow start after the last ')'.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        // `fields[0]` is field 3 (state): field N is `fields[N - 3]`.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let start_time_seconds = boot_time as f64 + field(22)? as f64 / ticks;
        let resident_pages = std::fs::read_to_string("/proc/self/statm")
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()?;
        let resident_bytes = resident_pages * rustix::param::page_size() as u64;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|line| line.starts_with("Max open files"))?
                    .split_whitespace()
                    .nth(3)?
                    .parse::<u64>()
                    .ok()
            });
        Some(ProcessStats {
            cpu_seconds,
            resident_bytes,
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured_on_linux() {
        let stats = ProcessStats::read().expect("/proc is readable");
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds >= 3, "stdin, stdout, stderr at least");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0);
        assert!(stats.start_time_seconds > now - 86_400.0 * 365.0);
        assert!(stats.max_fds.is_some_and(|max| max >= stats.open_fds));
    }
}
