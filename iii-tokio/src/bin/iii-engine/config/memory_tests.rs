//! The memory settings in the configuration file and the flags: the engine-wide byte
//! budget, the engine-wide control queue and the telemetry message limit.

use super::tests::resolved;

#[test]
fn memory_limits_are_settings_of_the_file_and_the_flags() {
    let defaults = resolved("", &[]).settings(None);
    assert_eq!(defaults.memory_budget_bytes, 512 << 20);
    assert_eq!(defaults.core.max_total_control_queue_bytes, 1 << 30);
    assert_eq!(defaults.core.max_telemetry_message_bytes, 4 << 20);
    let file = "\
workers:
  - name: iii-worker-manager
    config:
      memory_budget_bytes: 33554432
      max_total_control_queue_bytes: 100000000
      max_telemetry_message_bytes: 65536
";
    let settings = resolved(file, &[]).settings(None);
    assert_eq!(settings.memory_budget_bytes, 32 << 20);
    assert_eq!(settings.core.max_total_control_queue_bytes, 100_000_000);
    assert_eq!(settings.core.max_telemetry_message_bytes, 64 << 10);
    settings.validate().expect("these can work");
    let settings = resolved(file, &["--memory-budget-bytes", "67108864"]).settings(None);
    assert_eq!(settings.memory_budget_bytes, 64 << 20, "the flag wins");
    for (flag, name) in [
        ("--memory-budget-bytes", "memory_budget_bytes"),
        (
            "--max-total-control-queue-bytes",
            "max_total_control_queue_bytes",
        ),
        (
            "--max-telemetry-message-bytes",
            "max_telemetry_message_bytes",
        ),
    ] {
        let refused = resolved("", &[flag, "0"])
            .settings(None)
            .validate()
            .expect_err("zero is refused")
            .to_string();
        assert!(refused.contains(name), "{refused}");
    }
    let refused = resolved("", &["--memory-budget-bytes", "1000"])
        .settings(None)
        .validate()
        .expect_err("under 1 MiB is refused")
        .to_string();
    assert!(refused.contains("memory_budget_bytes"), "{refused}");
}
