//! `iii-engine`: an iii engine on one port. Starts with no configuration on
//! 127.0.0.1:49134; every limit is a flag (see `--help`). Once listening it prints its
//! URL (`ws://ip:port`) as one line on standard output; logs go to standard error
//! (`RUST_LOG` sets the level, default `info`).

use std::time::Duration;

use clap::Parser;
use iii_tokio::engine::{bind, EngineSettings, DEFAULT_ADDR};
use tracing_subscriber::EnvFilter;

/// An iii engine: workers connect at ws://ADDR/, channel ends at ws://ADDR/ws/channels/….
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "III_ENGINE_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Require `Authorization: Bearer <TOKEN>` on worker control connections (401 otherwise).
    #[arg(long, env = "III_ENGINE_TOKEN")]
    token: Option<String>,
    /// Largest control message from a worker, in bytes (1009 beyond).
    #[arg(long, default_value_t = defaults().core.max_control_message_bytes)]
    max_control_message_bytes: usize,
    /// Control messages queued for one slow worker, in bytes, before it is closed (1008).
    #[arg(long, default_value_t = defaults().core.max_control_queue_bytes)]
    max_control_queue_bytes: usize,
    /// Messages in flight per connection before the engine waits for the socket.
    #[arg(long, default_value_t = defaults().core.send_credit)]
    send_credit: usize,
    /// Channel buffer in messages when a channel is created without `buffer_size`.
    #[arg(long, default_value_t = defaults().core.default_channel_buffer)]
    default_channel_buffer: usize,
    /// Largest channel `buffer_size` (larger requests are clamped).
    #[arg(long, default_value_t = defaults().core.max_channel_buffer)]
    max_channel_buffer: usize,
    /// Bytes one channel may hold; its writer is paused before exceeding it.
    #[arg(long, default_value_t = defaults().core.channel_buffer_bytes)]
    channel_buffer_bytes: usize,
    /// Largest single channel message, in bytes (writer 1009, reader 1011 beyond).
    #[arg(long, default_value_t = defaults().core.max_channel_message_bytes)]
    max_channel_message_bytes: usize,
    /// Seconds a channel waits for an end that never attaches before it expires.
    #[arg(long, default_value_t = defaults().core.channel_attach_timeout.as_secs())]
    channel_attach_timeout_secs: u64,
    /// Channels that may exist at once.
    #[arg(long, default_value_t = defaults().core.max_channels)]
    max_channels: usize,
    /// Connections that may exist at once (503 beyond).
    #[arg(long, default_value_t = defaults().core.max_connections)]
    max_connections: usize,
    /// Milliseconds a new TCP connection has to send its upgrade request.
    #[arg(long, default_value_t = defaults().handshake_timeout.as_millis() as u64)]
    handshake_timeout_ms: u64,
    /// Largest HTTP upgrade request head, in bytes (431 beyond).
    #[arg(long, default_value_t = defaults().max_request_head)]
    max_request_head_bytes: usize,
    /// WebSocket read buffer per connection, in bytes: what an idle connection keeps.
    #[arg(long, default_value_t = defaults().read_buffer_bytes)]
    read_buffer_bytes: usize,
    /// Largest single socket read, in bytes (its buffer exists only while data arrives).
    #[arg(long, default_value_t = defaults().socket_read_bytes)]
    socket_read_bytes: usize,
    /// WebSocket write buffer per connection, in bytes.
    #[arg(long, default_value_t = defaults().write_buffer_bytes)]
    write_buffer_bytes: usize,
    /// Runtime threads. 1 runs everything on one thread (lowest call latency: no
    /// cross-thread wake-ups); more spread channel streams over cores. Default: one per
    /// core.
    #[arg(long)]
    threads: Option<std::num::NonZeroUsize>,
}

/// The documented defaults, from the one place that defines them.
fn defaults() -> EngineSettings {
    EngineSettings::default()
}

impl Args {
    fn settings(&self) -> EngineSettings {
        let mut settings = EngineSettings::default();
        let core = &mut settings.core;
        core.max_control_message_bytes = self.max_control_message_bytes;
        core.max_control_queue_bytes = self.max_control_queue_bytes;
        core.send_credit = self.send_credit;
        core.default_channel_buffer = self.default_channel_buffer;
        core.max_channel_buffer = self.max_channel_buffer;
        core.channel_buffer_bytes = self.channel_buffer_bytes;
        core.max_channel_message_bytes = self.max_channel_message_bytes;
        core.channel_attach_timeout = Duration::from_secs(self.channel_attach_timeout_secs);
        core.max_channels = self.max_channels;
        core.max_connections = self.max_connections;
        core.auth_token = self.token.clone().filter(|t| !t.trim().is_empty());
        settings.handshake_timeout = Duration::from_millis(self.handshake_timeout_ms);
        settings.max_request_head = self.max_request_head_bytes;
        settings.read_buffer_bytes = self.read_buffer_bytes;
        settings.socket_read_bytes = self.socket_read_bytes;
        settings.write_buffer_bytes = self.write_buffer_bytes;
        settings
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
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
        Ok(runtime) => runtime.block_on(serve(args)),
        Err(error) => {
            eprintln!("iii-engine: cannot start the runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let settings = args.settings();
    if let Err(error) = settings.core.validate() {
        tracing::error!(%error, "invalid settings");
        return std::process::ExitCode::from(2);
    }
    let server = match bind(&args.addr, settings).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(addr = %args.addr, %error, "cannot listen");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = stop_signal();
    println!("{}", server.url());
    tracing::info!(url = %server.url(), "iii engine ready; Ctrl-C to stop");
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// Watches Ctrl-C and, on Unix, SIGTERM from now on (the handlers are installed before
/// the URL is printed, so a supervisor that signals as soon as it reads the URL still
/// gets a clean shutdown); the future completes on the first of them.
fn stop_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut interrupt)) => {
                return Box::pin(async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                });
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot watch SIGTERM/SIGINT; Ctrl-C only")
            }
        }
    }
    Box::pin(async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot wait for Ctrl-C");
        }
    })
}
