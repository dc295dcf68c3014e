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
