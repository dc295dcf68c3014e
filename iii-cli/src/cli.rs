//! The command line's grammar (clap derive): every command, flag and default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use iii_tokio::worker::DEFAULT_URL;

use crate::exit::exit_codes_help;

/// Call iii functions, list what an engine serves, and pipe data through channels.
///
/// `iii` connects to the engine as a worker (named `iii-cli:<pid>`) for the duration of
/// one command.
#[derive(Debug, Parser)]
#[command(name = "iii", version, after_help = exit_codes_help(), max_term_width = 100)]
pub(crate) struct Cli {
    /// How to reach the engine.
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The engine to talk to, for every command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct ConnectionArgs {
    /// Engine URL, ws://host:port [default: ws://127.0.0.1:49134, also when blank].
    #[arg(long, env = "III_URL", global = true, hide_env_values = true)]
    url: Option<String>,
    /// Bearer token sent when connecting (for an engine started with --token).
    #[arg(long, env = "III_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// How long to wait for the engine to accept the connection (e.g. 10s, 500ms). A
    /// connection that fails is diagnosed after at most 1 s (nothing listening, HTTP 401).
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub(crate) connect_timeout: Duration,
    /// Deadline of the call (e.g. 30s, 2m, 1h). Default: 30 s for `call` and the
    /// listings; none for `send` and `recv`, whose call lasts as long as the stream.
    #[arg(long, global = true, value_name = "DURATION", value_parser = positive_duration)]
    pub(crate) timeout: Option<Duration>,
}

impl ConnectionArgs {
    /// The engine URL: `--url` or `III_URL` unless blank, else [`DEFAULT_URL`].
    pub(crate) fn url(&self) -> &str {
        self.url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .unwrap_or(DEFAULT_URL)
    }
}

/// The commands (each repeats the exit statuses in its help).
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Call a function and print its result as JSON (`iii trigger` too, the official
    /// `iii` command's name for it).
    #[command(visible_alias = "trigger", after_help = exit_codes_help())]
    Call(CallArgs),
    /// List the functions registered at the engine.
    #[command(after_help = exit_codes_help())]
    Functions(FilterArgs),
    /// List the workers connected to the engine (other than this command).
    #[command(after_help = exit_codes_help())]
    Workers(ListArgs),
    /// List the channels open at the engine, with their buffers and counters.
    #[command(after_help = exit_codes_help())]
    Channels(ListArgs),
    /// List the trigger types registered at the engine.
    #[command(after_help = exit_codes_help())]
    Triggers(FilterArgs),
    /// Stream a file or standard input to a function through a new channel.
    ///
    /// Creates a channel, calls FUNCTION with the channel's reader ref in its payload
    /// (under --field), writes the input into the channel, closes it at the end of the
    /// input and prints the function's result. Ctrl-C aborts the channel, so the
    /// function sees an error rather than a short stream.
    #[command(after_help = exit_codes_help())]
    Send(SendArgs),
    /// Stream what a function writes into a new channel to a file or standard output.
    ///
    /// Creates a channel, calls FUNCTION with the channel's writer ref in its payload
    /// (under --field), and writes the binary stream to OUTPUT until the function closes
    /// it. Text messages on the channel go to standard error (see --messages). The
    /// function's result is printed on standard output, or on standard error when
    /// standard output carries the stream.
    #[command(after_help = exit_codes_help())]
    Recv(RecvArgs),
    /// Show one function as the engine lists it: its worker, description, metadata,
    /// and the `request_format` and `response_format` it was registered with (JSON).
    #[command(after_help = exit_codes_help())]
    Describe(DescribeArgs),
    /// Print a completion script for SHELL on standard output (no engine needed), e.g.
    /// `iii completions bash > ~/.local/share/bash-completion/completions/iii`.
    Completions(CompletionsArgs),
}

/// `iii describe`.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// The function id.
    #[arg(value_name = "FUNCTION", value_parser = function_id)]
    pub(crate) function: String,
}

/// `iii completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub(crate) shell: clap_complete::Shell,
}

/// `iii call`.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The function id.
    #[arg(value_name = "FUNCTION", value_parser = function_id)]
    pub(crate) function: String,
    /// The payload as JSON, `-` to read it from standard input, or KEY=VALUE pairs for
    /// an object (`a=1 name=joe`: VALUE as JSON where it is JSON, otherwise a string).
    /// Default: `{}`.
    #[arg(value_name = "JSON | KEY=VALUE")]
    pub(crate) payload: Vec<String>,
    /// Fire and forget: send the call without waiting for a result (nothing printed;
    /// the function's errors are not reported).
    #[arg(long)]
    pub(crate) void: bool,
    /// Print the result on one line instead of indented.
    #[arg(long)]
    pub(crate) compact: bool,
    /// Largest payload read from standard input, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub(crate) max_payload_bytes: u64,
}

/// The listings without filters.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print the engine's list as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The listings the engine can filter.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Table or JSON.
    #[command(flatten)]
    pub(crate) list: ListArgs,
    /// Only ids that start with this.
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Only ids that contain this (case-insensitive).
    #[arg(long)]
    pub(crate) search: Option<String>,
    /// Include the engine's own (`engine::…`) and internal entries.
    #[arg(long)]
    pub(crate) all: bool,
}

/// What `send` and `recv` share.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    /// The function id.
    #[arg(value_name = "FUNCTION", value_parser = function_id)]
    pub(crate) function: String,
    /// The rest of the payload, a JSON object; the channel ref is added under --field.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub(crate) payload: String,
    /// The channel's buffer at the engine, in messages (of up to 64 KiB). Default: the
    /// engine's.
    #[arg(long, value_name = "MESSAGES")]
    pub(crate) buffer_size: Option<usize>,
    /// Expected size in bytes, for the progress bar's percentage and ETA when it cannot
    /// be known (a pipe; anything `recv` receives).
    #[arg(long, value_name = "BYTES")]
    pub(crate) size: Option<u64>,
    /// Never draw the progress bar (it is drawn only when standard error is a terminal).
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// After the channel fails, how long to wait for the function's own error, which
    /// usually says why (reported instead of the channel's).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) error_grace: Duration,
}

/// `iii send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Function, payload and transfer settings.
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
    /// The payload field that carries the channel's reader ref.
    #[arg(long, value_name = "NAME", default_value = "reader")]
    pub(crate) field: String,
    /// Bytes read from the input at a time (sent as channel messages of up to 64 KiB).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    pub(crate) read_bytes: u32,
    /// The file to send, or `-` for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) input: PathArg,
}

/// `iii recv`.
#[derive(Debug, Args)]
pub(crate) struct RecvArgs {
    /// Function, payload and transfer settings.
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
    /// The payload field that carries the channel's writer ref.
    #[arg(long, value_name = "NAME", default_value = "writer")]
    pub(crate) field: String,
    /// How text messages on the channel are written to standard error: `text` as they
    /// are, one a line; `json` one object a line, `{"offset": <stream bytes before it>,
    /// "text": "<message>"}`; `none` dropped.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = MessageFormat::Text)]
    pub(crate) messages: MessageFormat,
    /// The file to write (created or truncated), or `-` for standard output.
    #[arg(value_name = "FILE", default_value = "-")]
    pub(crate) output: PathArg,
}

/// How channel text messages are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MessageFormat {
    /// The message itself, one a line.
    Text,
    /// `{"offset": N, "text": "..."}`, one a line.
    Json,
    /// Not shown.
    None,
}

/// A file path, or `-` for a standard stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathArg {
    /// Standard input or output.
    Std,
    /// A file.
    File(PathBuf),
}

impl std::str::FromStr for PathArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "" => Err("the path is empty (use - for the standard stream)".into()),
            "-" => Ok(PathArg::Std),
            path => Ok(PathArg::File(PathBuf::from(path))),
        }
    }
}

fn function_id(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("the function id is empty".into())
    } else {
        Ok(text.to_owned())
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        Err("must be longer than zero".into())
    } else {
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        assert_eq!(positive_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("ten").is_err());
    }

    #[test]
    fn a_blank_url_is_the_default() {
        let url = |args: &[&str]| Cli::parse_from(args).connection.url().to_owned();
        assert_eq!(url(&["iii", "workers"]), DEFAULT_URL);
        assert_eq!(url(&["iii", "--url", " ", "workers"]), DEFAULT_URL);
        assert_eq!(url(&["iii", "workers", "--url", "ws://h:1"]), "ws://h:1");
    }

    #[test]
    fn every_argument_is_documented() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let documented = arg.get_help().is_some_and(|h| !h.to_string().is_empty());
                assert!(documented, "{path} {} has no help", arg.get_id());
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&Cli::command(), "iii");
    }

    #[test]
    fn paths_and_dashes() {
        assert_eq!("-".parse(), Ok(PathArg::Std));
        assert_eq!("a/b".parse(), Ok(PathArg::File("a/b".into())));
        assert!("".parse::<PathArg>().is_err());
    }
}
