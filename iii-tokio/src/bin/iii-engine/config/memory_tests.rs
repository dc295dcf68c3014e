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

#[test]
fn how_the_memory_budget_is_shared_out_is_set_by_the_file_and_the_flags() {
    let defaults = resolved("", &[]).settings(None);
    assert_eq!(defaults.memory_small_holding_bytes, 256 << 10);
    assert_eq!(defaults.memory_reserve_fraction, 8);
    assert_eq!(defaults.pong_room_bytes, 16 << 10);
    let file = "\
workers:
  - name: iii-worker-manager
    config:
      memory_small_holding_bytes: 65536
      memory_reserve_fraction: 4
      pong_room_bytes: 4096
";
    let settings = resolved(file, &[]).settings(None);
    assert_eq!(settings.memory_small_holding_bytes, 64 << 10);
    assert_eq!(settings.memory_reserve_fraction, 4);
    assert_eq!(settings.pong_room_bytes, 4 << 10);
    settings.validate().expect("these can work");
    let flagged = resolved(
        file,
        &[
            "--memory-small-holding-bytes",
            "131072",
            "--memory-reserve-fraction",
            "16",
            "--pong-room-bytes",
            "8192",
        ],
    )
    .settings(None);
    assert_eq!(
        flagged.memory_small_holding_bytes,
        128 << 10,
        "the flag wins"
    );
    assert_eq!(flagged.memory_reserve_fraction, 16);
    assert_eq!(flagged.pong_room_bytes, 8 << 10);
    for (args, name) in [
        (
            ["--memory-small-holding-bytes", "0"],
            "memory_small_holding_bytes",
        ),
        (
            ["--memory-small-holding-bytes", "2097152"],
            "memory_small_holding_bytes",
        ),
        (
            ["--memory-reserve-fraction", "1"],
            "memory_reserve_fraction",
        ),
        (["--pong-room-bytes", "0"], "pong_room_bytes"),
    ] {
        let mut args = args.to_vec();
        args.extend(["--memory-budget-bytes", "1048576"]);
        let refused = resolved("", &args)
            .settings(None)
            .validate()
            .expect_err("refused")
            .to_string();
        assert!(refused.contains(name), "{args:?}: {refused}");
    }
}
