//! The settings of built-in call rates (per worker, per listener) and of the log's
//! per-reason rate: flags, environment, file keys and validation.

use std::time::Duration;

use super::tests::{parsed, resolve_with};

#[test]
fn built_in_call_rates_are_flags_file_keys_and_per_listener_quotas() {
    let defaults = resolve_with("", &[]).expect("resolves").args.settings(None);
    assert_eq!(defaults.core.quotas.builtin_calls_per_sec, 1_000);
    assert_eq!(defaults.core.quotas.builtin_call_burst, 1_000);
    let flags = [
        "--builtin-calls-per-sec-per-worker",
        "7",
        "--builtin-call-burst-per-worker",
        "9",
    ];
    let settings = resolve_with("", &flags)
        .expect("resolves")
        .args
        .settings(None);
    assert_eq!(settings.core.quotas.builtin_calls_per_sec, 7);
    assert_eq!(settings.core.quotas.builtin_call_burst, 9);
    let file = "\
workers:
  - name: iii-worker-manager
    config:
      builtin_calls_per_sec_per_worker: 3
  - name: iii-worker-manager
    config:
      port: 2
      rbac: {}
      builtin_call_burst_per_worker: 4
";
    let settings = resolve_with(file, &[])
        .expect("resolves")
        .args
        .settings(None);
    assert_eq!(settings.core.quotas.builtin_calls_per_sec, 3);
    let extra = parsed(file).extra_listeners().expect("usable");
    let quotas = &extra[0].policy.quotas;
    assert_eq!(quotas.builtin_call_burst, 4, "the listener's own value");
    assert_eq!(quotas.builtin_calls_per_sec, 20, "the untrusted default");
    // Zero would refuse every built-in call, connection set-up included.
    let zero = resolve_with("", &["--builtin-call-burst-per-worker", "0"])
        .expect("resolves")
        .args
        .settings(None);
    let refused = zero.validate().expect_err("refused").to_string();
    assert!(refused.contains("builtin_call_burst"), "{refused}");
}

#[test]
fn the_log_rate_per_reason_is_a_flag_and_a_file_key_and_is_validated() {
    let defaults = resolve_with("", &[]).expect("resolves").args.settings(None);
    assert_eq!(defaults.log_lines_per_reason, 10);
    assert_eq!(defaults.log_window, Duration::from_secs(1));
    let file = "\
workers:
  - name: iii-worker-manager
    config:
      log_lines_per_reason: 3
      log_window_ms: 60000
";
    let settings = resolve_with(file, &[])
        .expect("resolves")
        .args
        .settings(None);
    assert_eq!(settings.log_lines_per_reason, 3);
    assert_eq!(settings.log_window, Duration::from_secs(60));
    settings.validate().expect("can work");
    let flags = ["--log-lines-per-reason", "5", "--log-window-ms", "250"];
    let settings = resolve_with(file, &flags)
        .expect("resolves")
        .args
        .settings(None);
    assert_eq!(settings.log_lines_per_reason, 5);
    assert_eq!(settings.log_window, Duration::from_millis(250));
    for (flag, name) in [
        ("--log-lines-per-reason", "log_lines_per_reason"),
        ("--log-window-ms", "log_window"),
    ] {
        let settings = resolve_with("", &[flag, "0"])
            .expect("resolves")
            .args
            .settings(None);
        let refused = settings.validate().expect_err("refused").to_string();
        assert!(refused.contains(name), "{refused}");
    }
}

#[test]
fn engine_wide_and_per_address_bounds_are_flags_file_keys_and_validated() {
    let defaults = resolve_with("", &[]).expect("resolves").args.settings(None);
    assert_eq!(defaults.core.worker_log_lines_per_second_per_ip, 200);
    assert_eq!(defaults.core.worker_log_lines_per_second_total, 1_000);
    assert_eq!(defaults.core.guest_builtin_calls.per_second, 2_000);
    assert_eq!(defaults.core.guest_builtin_calls.burst, 2_000);
    let file = "\
workers:
  - name: iii-worker-manager
    config:
      worker_log_lines_per_second_per_ip: 11
      worker_log_lines_per_second_total: 12
      guest_builtin_calls_per_sec: 13
      guest_builtin_call_burst: 14
  - name: iii-worker-manager
    config:
      port: 2
      rbac: {}
      builtin_calls_per_sec_per_ip: 15
  - name: iii-worker-manager
    config:
      port: 3
  - name: iii-worker-manager
    config:
      port: 4
      builtin_call_burst_per_ip: 16
";
    let settings = resolve_with(file, &["--worker-log-lines-per-second-total", "21"])
        .expect("resolves")
        .args
        .settings(None);
    assert_eq!(settings.core.worker_log_lines_per_second_per_ip, 11);
    assert_eq!(
        settings.core.worker_log_lines_per_second_total, 21,
        "the flag wins"
    );
    assert_eq!(settings.core.guest_builtin_calls.per_second, 13);
    assert_eq!(settings.core.guest_builtin_calls.burst, 14);
    let extra = parsed(file).extra_listeners().expect("usable");
    let rate = |i: usize| {
        extra[i]
            .policy
            .builtin_calls_per_ip
            .map(|r| (r.per_second, r.burst))
    };
    assert_eq!(
        rate(0),
        Some((15, 200)),
        "the rbac listener's own rate, default burst"
    );
    assert_eq!(
        rate(1),
        None,
        "a trusted listener has no per-address bound by default"
    );
    assert_eq!(rate(2), Some((16, 16)), "a burst alone gives the rate too");
    // Per listener only: on the main entry it is an error naming the key.
    let main = "\
workers:
  - name: iii-worker-manager
    config:
      builtin_calls_per_sec_per_ip: 5
";
    let refused = resolve_with(main, &[]).expect_err("refused").to_string();
    assert!(
        refused.contains("builtin_calls_per_sec_per_ip"),
        "{refused}"
    );
    // The --rbac-* flags set the flag listener's.
    let args = resolve_with(
        "",
        &[
            "--rbac-addr",
            "127.0.0.1:0",
            "--rbac-builtin-calls-per-sec-per-ip",
            "7",
        ],
    )
    .expect("resolves")
    .args;
    let listener = args.rbac_listener().expect("valid").expect("one");
    let per_ip = listener.policy.builtin_calls_per_ip.expect("set");
    assert_eq!((per_ip.per_second, per_ip.burst), (7, 200));
    for (flag, name) in [
        (
            "--worker-log-lines-per-second-per-ip",
            "worker_log_lines_per_second_per_ip",
        ),
        (
            "--worker-log-lines-per-second-total",
            "worker_log_lines_per_second_total",
        ),
        ("--guest-builtin-calls-per-sec", "guest_builtin_calls"),
        ("--guest-builtin-call-burst", "guest_builtin_calls"),
    ] {
        let settings = resolve_with("", &[flag, "0"])
            .expect("resolves")
            .args
            .settings(None);
        let refused = settings.validate().expect_err("refused").to_string();
        assert!(refused.contains(name), "{refused}");
    }
}
