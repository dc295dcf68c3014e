//! `iii call`: one call, its result printed as JSON.

use std::io::Write;

use serde_json::Value;

use crate::cli::CallArgs;
use crate::exit::Failure;
use crate::payload;
use crate::session::{Session, DEFAULT_TIMEOUT};

/// Calls the function (or sends a void call) and prints the result on standard output.
pub(crate) async fn run(
    session: &Session,
    args: &CallArgs,
    timeout: Option<std::time::Duration>,
) -> Result<(), Failure> {
    let input = match args.payload.as_slice() {
        [] => payload::call_payload(None, args.max_payload_bytes).await?,
        [one] if !payload::is_pair(one) => {
            payload::call_payload(Some(one), args.max_payload_bytes).await?
        }
        pairs => payload::pairs(pairs)?,
    };
    let iii = session.iii();
    if args.void {
        return iii
            .trigger_void(&args.function, input)
            .map_err(|error| Failure::call(&args.function, DEFAULT_TIMEOUT, error));
    }
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let result = tokio::select! {
        result = iii.trigger_with_timeout(&args.function, input, timeout) => result,
        _ = tokio::signal::ctrl_c() => return Err(Failure::Interrupted),
    };
    let result = result.map_err(|error| Failure::call(&args.function, timeout, error))?;
    print_json(&mut std::io::stdout().lock(), &result, args.compact)
}

/// Writes `value` and a newline: indented, or on one line when `compact`.
pub(crate) fn print_json(
    out: &mut impl Write,
    value: &Value,
    compact: bool,
) -> Result<(), Failure> {
    let text = if compact {
        serde_json::to_string(value)
    } else {
        serde_json::to_string_pretty(value)
    }
    .map_err(|error| Failure::Usage(format!("cannot print the result: {error}")))?;
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(Failure::stdout)
}
