//! `iii-bench`: end-to-end benchmarks of an iii engine (see the library docs and
//! BENCHMARKS.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iii_bench::{one_run, summary, Opts, Scenario};

/// Benchmarks of an iii engine (ours in-process by default, or any engine URL).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs one scenario `--runs` times, one JSON line per run.
    Run {
        /// The scenario.
        scenario: Scenario,
        #[command(flatten)]
        opts: Box<Opts>,
    },
    /// Reads JSON lines (files, or stdin when none) and prints a markdown table of
    /// min / median / max per scenario, client and engine.
    Summarize {
        /// JSONL files written by `run`.
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Summarize { files } => match summary::summarize(&files) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("iii-bench: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run { scenario, opts } => {
            // Every connection is a file descriptor (`idle_conns` opens 10 000).
            if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
                eprintln!("iii-bench: cannot raise the open-files limit: {e}");
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(opts.threads.max(1))
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("iii-bench: cannot start tokio: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                for run in 0..opts.runs {
                    match one_run(scenario, &opts, run).await {
                        Ok(line) => {
                            println!("{line}");
                            if let Some(why) = line.get("failed").and_then(|v| v.as_str()) {
                                eprintln!("iii-bench: {} run {run} failed: {why}", scenario.name());
                                return ExitCode::FAILURE;
                            }
                        }
                        Err(e) => {
                            eprintln!("iii-bench: {} run {run} failed: {e}", scenario.name());
                            return ExitCode::FAILURE;
                        }
                    }
                }
                ExitCode::SUCCESS
            })
        }
    }
}
