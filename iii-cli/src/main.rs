//! `iii`: the iii command line, built on the worker SDK (`iii_tokio::worker`).
//!
//! * `iii call <function> [json | -]` calls a function and prints its result;
//! * `iii functions | workers | channels | triggers` list what the engine serves;
//! * `iii send <function> [FILE|-]` streams a file or standard input to a function
//!   through a channel, `iii recv <function> [FILE|-]` the other way round, both in
//!   constant memory;
//! * `iii completions <shell>` prints a completion script.
//!
//! `iii --help` documents every flag and the exit statuses ([`exit::Status`]).

mod call;
mod cli;
mod exit;
mod listing;
mod payload;
mod session;
mod table;
mod transfer;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::{Failure, Status};
use crate::session::Session;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => {
            let outcome = runtime.block_on(run(cli));
            // Do not wait for a blocking read of standard input that may never end
            // (after Ctrl-C, or when the function answered before the input ended).
            runtime.shutdown_background();
            outcome
        }
        Err(error) => Err(Failure::LocalIo {
            context: "cannot start the async runtime".into(),
            source: error,
        }),
    };
    match outcome {
        Ok(()) => ExitCode::from(Status::Success.code()),
        Err(failure) => {
            if failure.status() != Status::BrokenPipe {
                let _ = writeln!(std::io::stderr().lock(), "iii: {failure}");
            }
            ExitCode::from(failure.status().code())
        }
    }
}

/// Connects, runs the command, and shuts the worker down whatever happened.
async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions(args) = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(args.shell, &mut command, "iii", &mut std::io::stdout());
        return Ok(());
    }
    let mut session = Session::open(&cli.connection).await?;
    let timeout = cli.connection.timeout;
    let outcome = match &cli.command {
        Command::Call(args) => call::run(&session, args, timeout).await,
        Command::Functions(args) => {
            let input = listing::filter_input(args);
            listing::run(&session, &listing::FUNCTIONS, input, &args.list, timeout).await
        }
        Command::Triggers(args) => {
            let input = listing::filter_input(args);
            listing::run(&session, &listing::TRIGGERS, input, &args.list, timeout).await
        }
        Command::Workers(args) => {
            let input = serde_json::json!({});
            listing::run(&session, &listing::WORKERS, input, args, timeout).await
        }
        Command::Channels(args) => {
            let input = serde_json::json!({});
            listing::run(&session, &listing::CHANNELS, input, args, timeout).await
        }
        Command::Send(args) => transfer::send::run(&session, args, timeout).await,
        Command::Recv(args) => transfer::recv::run(&mut session, args, timeout).await,
        Command::Describe(args) => listing::describe(&session, &args.function, timeout).await,
        Command::Completions(_) => Ok(()),
    };
    session.close().await;
    outcome
}
