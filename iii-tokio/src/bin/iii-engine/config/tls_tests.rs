//! TLS in the configuration: `tls_cert_file` and `tls_key_file` in any entry (both or
//! neither), the `--tls-*` and `--rbac-tls-*` flags, and `--print-config`.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};
use iii_tokio::engine::TlsSettings;

use super::layer::render;
use super::tests::{parsed, resolve_with, without_file};
use crate::args::{Args, ArgsError};

const TWO_TLS_LISTENERS: &str = "\
workers:
  - name: iii-worker-manager
    config:
      port: 0
      tls_cert_file: /etc/iii/main.pem
      tls_key_file: /etc/iii/main.key
  - name: iii-worker-manager
    config:
      port: 0
      rbac: {}
      tls_cert_file: /etc/iii/rbac.pem
      tls_key_file: /etc/iii/rbac.key
";

#[test]
fn every_entry_takes_a_certificate_and_key() {
    let resolved = resolve_with(TWO_TLS_LISTENERS, &[]).expect("resolves");
    assert_eq!(
        resolved.args.tls().expect("a pair"),
        Some(TlsSettings::new("/etc/iii/main.pem", "/etc/iii/main.key"))
    );
    assert_eq!(
        resolved.listeners[0].tls,
        Some(TlsSettings::new("/etc/iii/rbac.pem", "/etc/iii/rbac.key"))
    );
    // A flag replaces the file's value.
    let flagged =
        resolve_with(TWO_TLS_LISTENERS, &["--tls-cert-file", "/other.pem"]).expect("resolves");
    assert_eq!(
        flagged.args.tls_cert_file,
        Some(PathBuf::from("/other.pem"))
    );
}

#[test]
fn a_certificate_without_its_key_is_an_error_naming_the_entry() {
    for (text, entry) in [
        (
            "workers:\n  - name: iii-worker-manager\n    config: {tls_cert_file: /c.pem}\n",
            "workers[0]",
        ),
        (
            "workers:\n  - name: iii-worker-manager\n  - name: iii-worker-manager\n    config: {port: 2, rbac: {}, tls_key_file: /k.pem}\n",
            "workers[1]",
        ),
    ] {
        let error = super::ConfigFile::parse(text, super::tests::no_env)
            .expect_err(text)
            .to_string();
        assert!(
            error.contains(&format!("{entry}.config: give both `tls_cert_file`")),
            "{error}"
        );
    }
    let flags = |argv: &[&str]| {
        let matches = Args::command()
            .try_get_matches_from(argv)
            .expect("flags parse");
        Args::from_arg_matches(&matches).expect("args")
    };
    let args = flags(&["iii-engine", "--tls-key-file", "/k.pem"]);
    assert!(matches!(
        args.tls(),
        Err(ArgsError::TlsPair { flags: "tls" })
    ));
    let args = flags(&[
        "iii-engine",
        "--rbac-addr",
        "127.0.0.1:0",
        "--rbac-tls-cert-file",
        "/c.pem",
    ]);
    let error = args.rbac_listener().expect_err("no key");
    assert!(
        error
            .to_string()
            .contains("--rbac-tls-cert-file and --rbac-tls-key-file"),
        "{error}"
    );
    let args = flags(&[
        "iii-engine",
        "--rbac-addr",
        "127.0.0.1:0",
        "--rbac-tls-cert-file",
        "/c.pem",
        "--rbac-tls-key-file",
        "/k.pem",
    ]);
    let listener = args.rbac_listener().expect("usable").expect("a listener");
    assert_eq!(listener.tls, Some(TlsSettings::new("/c.pem", "/k.pem")));
    // The rbac TLS flags need the rbac listener.
    assert!(Args::command()
        .try_get_matches_from(["iii-engine", "--rbac-tls-cert-file", "/c.pem"])
        .is_err());
}

#[test]
fn print_config_writes_the_files_back() {
    let resolved = resolve_with(TWO_TLS_LISTENERS, &[]).expect("resolves");
    let text = render(
        &resolved.args,
        &resolved.matches,
        resolved.file.as_ref(),
        &resolved.listeners,
    )
    .expect("renders");
    for path in ["main.pem", "main.key", "rbac.pem", "rbac.key"] {
        assert!(text.contains(&format!("/etc/iii/{path}")), "{text}");
    }
    let again = resolve_with(&text, &[]).expect("resolves");
    assert_eq!(without_file(again.args), without_file(resolved.args));
    assert_eq!(again.listeners[0].tls, resolved.listeners[0].tls);
    // Without TLS, the keys are written as null and read back as none.
    let plain = parsed("workers:\n  - name: iii-worker-manager\n    config: {tls_cert_file: null, tls_key_file: null}\n");
    assert!(plain.listeners[0].config.tls_cert_file.is_none());
}
