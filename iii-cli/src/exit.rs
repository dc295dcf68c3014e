//! Why a command failed, and the exit status each failure gets.
//!
//! The statuses are part of the command line's interface: `--help` prints
//! [`exit_codes_help`] and the README repeats the same table (a test keeps them equal).

use std::fmt;
use std::io;
use std::time::Duration;

use iii_tokio::worker::{Error, ErrorBody};

/// The exit statuses of `iii`, one per kind of outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Everything worked.
    Success = 0,
    /// The function failed: it, or the engine on its behalf (`function_not_found`,
    /// `invocation_stopped` when its worker went away), answered with an error.
    FunctionFailed = 1,
    /// The command line, a payload or the URL is not usable.
    Usage = 2,
    /// The engine cannot be reached, refused the connection, or the connection was lost
    /// before the answer came.
    Connection = 3,
    /// No answer within `--timeout`.
    Timeout = 4,
    /// The channel failed (aborted, lost, refused) and the function reported no error:
    /// the data did not arrive whole.
    Stream = 5,
    /// A local file, standard input or standard output failed.
    LocalIo = 6,
    /// Interrupted by Ctrl-C (the channel was aborted, so the function sees an error).
    Interrupted = 130,
    /// Standard output was closed by its reader (e.g. `| head`); nothing is printed.
    BrokenPipe = 141,
}

impl Status {
    /// Every status, in the order of the help text.
    pub(crate) const ALL: [Status; 9] = [
        Status::Success,
        Status::FunctionFailed,
        Status::Usage,
        Status::Connection,
        Status::Timeout,
        Status::Stream,
        Status::LocalIo,
        Status::Interrupted,
        Status::BrokenPipe,
    ];

    /// The numeric status.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// One line saying when this status is returned.
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::FunctionFailed => {
                "the function failed (or the engine for it: function_not_found, invocation_stopped)"
            }
            Status::Usage => "bad arguments, payload or URL",
            Status::Connection => {
                "cannot connect, refused (e.g. HTTP 401), or lost before the answer"
            }
            Status::Timeout => "no answer within --timeout",
            Status::Stream => {
                "the channel failed (aborted, lost) and the function reported no error, \
                 or `send`'s function returned before reading all of the input"
            }
            Status::LocalIo => "reading the input or writing the output failed",
            Status::Interrupted => "interrupted (Ctrl-C); an open channel is aborted",
            Status::BrokenPipe => "standard output was closed by its reader (quietly)",
        }
    }
}

/// The "Exit status" section of `--help`.
pub(crate) fn exit_codes_help() -> String {
    let mut text = String::from("Exit status:\n");
    for status in Status::ALL {
        text.push_str(&format!("  {:>3}  {}\n", status.code(), status.meaning()));
    }
    text
}

/// Why a command failed. Its `Display` is the message printed after `iii: `.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// An argument, payload or option is not usable.
    #[error("{0}")]
    Usage(String),
    /// The engine could not be reached or refused us.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The engine URL.
        url: String,
        /// What went wrong, for a person.
        reason: String,
    },
    /// The connection was lost (or the worker stopped) before the answer came.
    #[error("the connection to the engine was lost before `{function}` answered ({error})")]
    Lost {
        /// The function called.
        function: String,
        /// The SDK's error (boxed: it is large, and failures are rare).
        error: Box<Error>,
    },
    /// The function (or the engine for it) answered with an error.
    #[error("`{function}` failed: {}{}", ErrorText(.body), StreamNote(.stream))]
    Function {
        /// The function called.
        function: String,
        /// Its error.
        body: ErrorBody,
        /// How the channel ended, when it failed too.
        stream: Option<String>,
    },
    /// No answer in time.
    #[error("no answer from `{function}` within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The function called.
        function: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The channel failed and the function reported nothing.
    #[error("the channel failed after {bytes} bytes: {error}")]
    Stream {
        /// Bytes moved before the failure.
        bytes: u64,
        /// The SDK's error (boxed, as above).
        error: Box<Error>,
    },
    /// A local read or write failed.
    #[error("{context}: {source}")]
    LocalIo {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// Standard output's reader went away.
    #[error("standard output was closed")]
    BrokenPipe,
    /// `iii send`: the function answered before it had read all of the input (its
    /// result is printed; the rest of the input was never delivered).
    #[error(
        "`{function}` returned before reading all of the input ({sent} bytes sent): \
         the rest was not delivered"
    )]
    Unread {
        /// The function called.
        function: String,
        /// Bytes written into the channel before the answer.
        sent: u64,
    },
}

impl Failure {
    /// The exit status for this failure.
    pub(crate) fn status(&self) -> Status {
        match self {
            Failure::Usage(_) => Status::Usage,
            Failure::Connect { .. } | Failure::Lost { .. } => Status::Connection,
            Failure::Function { .. } => Status::FunctionFailed,
            Failure::Timeout { .. } => Status::Timeout,
            Failure::Stream { .. } | Failure::Unread { .. } => Status::Stream,
            Failure::LocalIo { .. } => Status::LocalIo,
            Failure::Interrupted => Status::Interrupted,
            Failure::BrokenPipe => Status::BrokenPipe,
        }
    }

    /// A failed write to standard output: quiet [`Failure::BrokenPipe`] when its reader
    /// is gone, [`Failure::LocalIo`] otherwise.
    pub(crate) fn stdout(error: io::Error) -> Failure {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::LocalIo {
                context: "cannot write to standard output".into(),
                source: error,
            }
        }
    }

    /// The failure of calling `function` (or of an SDK request made for it).
    pub(crate) fn call(function: &str, timeout: Duration, error: Error) -> Failure {
        let function = function.to_owned();
        match error {
            Error::Remote(body) => Failure::Function {
                function,
                body,
                stream: None,
            },
            Error::Timeout | Error::CallTimeout { .. } => Failure::Timeout { function, timeout },
            Error::InvalidOption(message) => Failure::Usage(message),
            Error::Invoke(error) => Failure::Usage(error.to_string()),
            error => Failure::Lost {
                function,
                error: Box::new(error),
            },
        }
    }
}

/// An error body as `code: message`, with the stack trace on the following lines.
struct ErrorText<'a>(&'a ErrorBody);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)?;
        if let Some(trace) = self
            .0
            .stacktrace
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        {
            for line in trace.trim_end().lines() {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

/// " (the channel …)" when the stream failed as well.
struct StreamNote<'a>(&'a Option<String>);

impl fmt::Display for StreamNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(stream) => write!(f, "\n  (the channel failed too: {stream})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_and_all_listed_in_the_help() {
        let help = exit_codes_help();
        let mut codes: Vec<u8> = Status::ALL.iter().map(|s| s.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Status::ALL.len());
        for status in Status::ALL {
            assert!(help.contains(&format!("{:>3}  {}", status.code(), status.meaning())));
        }
    }

    #[test]
    fn the_readme_lists_the_same_statuses() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("| status | meaning |\n|---|---|\n")
            .nth(1)
            .expect("the README's exit status table");
        let rows: Vec<&str> = table.lines().take_while(|l| l.starts_with('|')).collect();
        let expected: Vec<String> = Status::ALL
            .iter()
            .map(|s| format!("| {} | {} |", s.code(), s.meaning()))
            .collect();
        assert_eq!(rows, expected, "README.md and --help disagree");
    }

    #[test]
    fn call_errors_map_to_their_statuses() {
        let timeout = Duration::from_secs(1);
        let remote = Error::Remote(ErrorBody::new("function_not_found", "nope"));
        assert_eq!(
            Failure::call("f", timeout, remote).status(),
            Status::FunctionFailed
        );
        assert_eq!(
            Failure::call("f", timeout, Error::Timeout).status(),
            Status::Timeout
        );
        assert_eq!(
            Failure::call("f", timeout, Error::Disconnected).status(),
            Status::Connection
        );
        assert_eq!(
            Failure::stdout(io::Error::from(io::ErrorKind::BrokenPipe)).status(),
            Status::BrokenPipe
        );
        assert_eq!(
            Failure::stdout(io::Error::from(io::ErrorKind::StorageFull)).status(),
            Status::LocalIo
        );
    }

    #[test]
    fn function_errors_show_code_message_and_stack() {
        let mut body = ErrorBody::new("invocation_failed", "boom");
        body.stacktrace = Some("at a\nat b\n".into());
        let failure = Failure::Function {
            function: "f".into(),
            body,
            stream: Some("aborted".into()),
        };
        assert_eq!(
            failure.to_string(),
            "`f` failed: invocation_failed: boom\n    at a\n    at b\n  (the channel failed too: aborted)"
        );
    }
}
