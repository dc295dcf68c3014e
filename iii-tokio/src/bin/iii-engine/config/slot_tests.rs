//! The pre-upgrade and admission slots in the configuration: engine-wide in the main
//! entry (and flags), per listener in a further entry (and the `--rbac-*` flags).

use super::tests::resolve_with;

const SLOTS: &str = "\
workers:
  - name: iii-worker-manager
    config:
      port: 0
      max_handshakes: 500
      reserved_handshakes: 100
      max_handshakes_per_ip: 50
      max_pending_admissions: 64
  - name: iii-worker-manager
    config:
      port: 0
      rbac: {auth_function_id: auth::check}
      max_handshakes: 200
      max_pending_admissions: 8
";

#[test]
fn slots_are_engine_wide_in_the_main_entry_and_shares_in_a_further_one() {
    let resolved = resolve_with(SLOTS, &[]).expect("resolves");
    let settings = resolved.args.settings(None);
    assert_eq!(settings.max_handshakes, 500);
    assert_eq!(settings.reserved_handshakes, 100);
    assert_eq!(settings.max_handshakes_per_ip, 50);
    assert_eq!(settings.core.max_pending_admissions, 64);
    let rbac = &resolved.listeners[0];
    assert_eq!(rbac.max_handshakes, Some(200));
    assert_eq!(rbac.policy.max_pending_admissions, Some(8));
    // Flags win over the file.
    let flagged = resolve_with(SLOTS, &["--max-handshakes-per-ip", "7"]).expect("resolves");
    assert_eq!(flagged.args.settings(None).max_handshakes_per_ip, 7);
    // The untrusted listener of the flags takes its shares too.
    let flags = resolve_with(
        "workers: []\n",
        &[
            "--rbac-addr",
            "127.0.0.1:0",
            "--rbac-max-handshakes",
            "30",
            "--rbac-max-pending-admissions",
            "4",
        ],
    )
    .expect("resolves");
    let listener = flags
        .args
        .rbac_listener()
        .expect("valid")
        .expect("a listener");
    assert_eq!(listener.max_handshakes, Some(30));
    assert_eq!(listener.policy.max_pending_admissions, Some(4));
}

#[test]
fn a_reserve_leaving_the_other_listeners_nothing_is_refused() {
    let resolved = resolve_with(
        &SLOTS.replace("reserved_handshakes: 100", "reserved_handshakes: 500"),
        &[],
    )
    .expect("resolves");
    let mut settings = resolved.args.settings(None);
    settings.listeners = resolved.listeners;
    let error = settings.validate().expect_err("no slot for the others");
    assert!(error.to_string().contains("reserved_handshakes"), "{error}");
    settings.reserved_handshakes = 100;
    settings.max_handshakes_per_ip = 0;
    let error = settings.validate().expect_err("zero");
    assert!(
        error.to_string().contains("max_handshakes_per_ip"),
        "{error}"
    );
}
