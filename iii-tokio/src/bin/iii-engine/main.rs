//! `iii-engine`: an iii engine on one port. Starts with no configuration on
//! 127.0.0.1:49134; every limit is a flag (see `--help`) and a key of the configuration
//! file that `--config` reads (the reference engine's format). Once listening it prints
//! its URL (`ws://ip:port`, `wss://ip:port` with TLS) as one line on standard output;
//! logs go to standard error (`RUST_LOG` sets the level, default `info`; `--log-format`
//! text or JSON lines; colours only on a terminal).
//!
//! Exit status: 0 after a clean stop (SIGTERM/SIGINT: it drains first, see
//! `--drain-timeout-secs`; a second signal stops at once), 1 when it cannot listen or its
//! engine task ends unexpectedly (a supervisor should restart it), 2 for settings that
//! cannot work (a TLS certificate or key file that cannot be used among them).
//!
//! SIGHUP reloads the certificate and key of every TLS listener from their files (and
//! so does a change of the files, seen within 10 s): new connections get the new
//! certificate, open ones keep theirs; a pair that cannot be used is logged and the
//! previous certificate stays in use.
//!
//! Besides the WebSocket routes, the port answers `GET /healthz` (200 while serving, 503
//! while draining) and `GET /metrics` (Prometheus), behind the token when one is set.

mod args;
mod config;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::CommandFactory;
use iii_tokio::engine::{bind, EngineExit, EngineServer, EngineSettings};
use tracing_subscriber::EnvFilter;

use args::{token_on_command_line, Args, LogFormat};

/// Exit status for settings that cannot work.
const BAD_SETTINGS: u8 = 2;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let first = Args::command().get_matches_from(&argv);
    let resolved = config::resolve(&argv, &first, config::process_env);
    // The file may choose the format; when it cannot be read, the flag or variable does.
    let format = match &resolved {
        Ok(resolved) => resolved.args.log_format,
        Err(_) => first
            .get_one::<LogFormat>("log_format")
            .copied()
            .unwrap_or(LogFormat::Text),
    };
    init_logging(format);
    let resolved = match resolved {
        Ok(resolved) => resolved,
        Err(config::ResolveError::Args(error)) => error.exit(),
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::from(BAD_SETTINGS);
        }
    };
    config::log_file(resolved.file.as_ref());
    let (args, matches) = (&resolved.args, &resolved.matches);
    if token_on_command_line(matches) {
        tracing::warn!(
            "the token was given with --token: other users can read it in the process list; \
             use --token-file or III_ENGINE_TOKEN"
        );
    }
    let settings = match (|| {
        let mut settings = args.settings(args.token()?);
        settings.metrics_token = args.metrics_token()?;
        settings.tls = args.tls()?;
        settings.listeners = resolved.listeners.clone();
        settings.listeners.extend(args.rbac_listener()?);
        Ok::<_, args::ArgsError>(settings)
    })() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(%error, "invalid settings");
            return ExitCode::from(BAD_SETTINGS);
        }
    };
    if let Err(error) = settings.validate() {
        tracing::error!(%error, "invalid settings");
        return ExitCode::from(BAD_SETTINGS);
    }
    if args.print_config {
        return config::print(&resolved, &settings.listeners);
    }
    raise_open_files_limit(&settings);
    let runtime = match args.threads.map(std::num::NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    match runtime {
        Ok(runtime) => runtime.block_on(serve(&args.addr, settings, args.drain_timeout())),
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error at `RUST_LOG` (default `info`), in `format`; text is coloured
/// only when standard error is a terminal (a file or a log collector gets no escape
/// codes). The WebSocket library is held at `info` whatever `RUST_LOG` says: at `debug`
/// and `trace` it prints frames and URLs, which carry reattach tokens and channel keys.
fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for quiet in ["tungstenite=info", "async_tungstenite=info"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Raises the soft limit on open files to the hard limit: every connection is a file
/// descriptor, and the default soft limit (often 1024) is far below what the connection
/// limits allow. A limit below `max_connections + max_handshakes` is a warning only when
/// the operator raised those settings: the defaults (100 000 connections) are above most
/// machines' hard limit, and a warning on every default start would teach people to
/// ignore warnings; it is then an info line.
fn raise_open_files_limit(settings: &EngineSettings) {
    let wanted = settings
        .core
        .max_connections
        .saturating_add(settings.max_handshakes) as u64;
    let defaults = EngineSettings::default();
    let chosen = settings.core.max_connections != defaults.core.max_connections
        || settings.max_handshakes != defaults.max_handshakes;
    const SHORT: &str = "the open-files limit is below max_connections + max_handshakes; \
                         connections beyond it are shed";
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted && chosen => {
            tracing::warn!(open_files = limit, wanted, "{SHORT}")
        }
        Ok(limit) if limit < wanted => tracing::info!(open_files = limit, wanted, "{SHORT}"),
        Ok(limit) => tracing::debug!(open_files = limit, "open-files limit"),
        Err(error) => tracing::info!(%error, "cannot raise the open-files limit"),
    }
}

async fn serve(addr: &str, settings: EngineSettings, drain_timeout: Duration) -> ExitCode {
    let auth = settings.core.auth_token.is_some();
    let origins = settings.core.allowed_origins.clone();
    let server = match bind(addr, settings).await {
        Ok(server) => server,
        Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => {
            tracing::error!(%addr, %error, "cannot start the engine");
            return ExitCode::from(BAD_SETTINGS);
        }
        Err(error) => {
            tracing::error!(%addr, %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = Signals::install();
    let mut hangups = Hangups::install();
    println!("{}", server.url());
    tracing::info!(
        url = %server.url(),
        auth = if auth { "bearer token required" } else { "off: any local process may connect" },
        allowed_origins = ?origins,
        "iii engine ready; Ctrl-C to stop"
    );
    for (index, listener) in server.handle().settings().listeners.iter().enumerate() {
        let policy = &listener.policy;
        tracing::info!(
            listener = %policy.name,
            url = %server.listener_url(index + 1).unwrap_or_default(),
            workers = if policy.rbac.is_some() { "untrusted (rbac)" } else { "trusted" },
            auth_function = policy.rbac.as_ref().and_then(|r| r.auth_function_id.as_deref()).unwrap_or("none"),
            "further listener ready"
        );
    }
    let engine = server.handle().clone();
    loop {
        tokio::select! {
            () = signals.next() => break,
            () = hangups.next() => reload_tls(&server),
            exit = engine.stopped() => return died(exit),
        }
    }
    tracing::info!(
        drain_timeout_secs = drain_timeout.as_secs(),
        "stopping: new workers get 503 while in-flight work finishes; a second signal stops at once"
    );
    let drained = server.drain(drain_timeout);
    tokio::select! {
        outcome = drained => {
            tracing::info!(?outcome, "stopped");
            ExitCode::SUCCESS
        }
        () = signals.next() => {
            tracing::info!("second signal: stopping now");
            engine.shutdown().await;
            ExitCode::SUCCESS
        }
        exit = engine.stopped() => match exit {
            EngineExit::Shutdown => ExitCode::SUCCESS,
            other => died(other),
        },
    }
}

/// SIGHUP: reloads every TLS listener's certificate and key, logging the outcome (a
/// failure keeps the previous certificate; each failing listener is logged at warn by
/// the engine too).
fn reload_tls(server: &EngineServer) {
    match server.reload_tls() {
        Ok(0) => tracing::info!("SIGHUP: no TLS listener, nothing to reload"),
        Ok(listeners) => tracing::info!(listeners, "SIGHUP: TLS certificates reloaded"),
        Err(error) => tracing::error!(
            %error,
            "SIGHUP: a TLS certificate was not reloaded; its listener keeps the previous one"
        ),
    }
}

/// The engine task ended by itself: nothing can be served any more, so exit (non-zero
/// unless it was a clean shutdown) and let a supervisor restart us.
fn died(exit: EngineExit) -> ExitCode {
    tracing::error!(?exit, "the engine task ended; exiting");
    match exit {
        EngineExit::Shutdown => ExitCode::SUCCESS,
        EngineExit::Panicked | EngineExit::Abandoned => ExitCode::FAILURE,
    }
}

/// SIGTERM and SIGINT (Ctrl-C), watched from the moment they are installed: before the
/// URL is printed, so a supervisor that signals as soon as it reads the URL still gets a
/// clean stop.
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

/// SIGHUP (on Unix), which asks for a certificate reload; watched from before the URL is
/// printed, like [`Signals`].
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = signal(SignalKind::hangup())
                .map_err(|error| {
                    tracing::warn!(
                        %error,
                        "cannot watch SIGHUP: certificates are reloaded when their files change only"
                    );
                })
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGHUP (never, where it cannot be watched).
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(interrupt)) => Self {
                    unix: Some((term, interrupt)),
                },
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot watch SIGTERM/SIGINT; Ctrl-C only");
                    Self { unix: None }
                }
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, interrupt)) = &mut self.unix {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            return;
        }
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot wait for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
