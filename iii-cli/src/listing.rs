//! `iii functions`, `iii workers`, `iii channels`, `iii triggers`: one engine built-in
//! each (`engine::functions::list`, `engine::workers::list`, `engine::channels::list`,
//! `engine::triggers::list`), shown as a table or as JSON.

use std::io::Write;
use std::time::Duration;

use iii_tokio::worker::builtins;
use serde_json::{json, Map, Value};

use iii_tokio::worker::ErrorBody;

use crate::call::print_json;
use crate::cli::{FilterArgs, ListArgs};
use crate::exit::Failure;
use crate::session::{Session, DEFAULT_TIMEOUT};
use crate::table::{self, Column, Format};

/// One listing: the built-in that answers it, the key of its array, and its columns.
#[derive(Debug)]
pub(crate) struct Listing {
    function: &'static str,
    key: &'static str,
    columns: &'static [Column],
}

/// `iii functions`.
pub(crate) const FUNCTIONS: Listing = Listing {
    function: builtins::FUNCTIONS_LIST,
    key: "functions",
    columns: &[
        Column::new("FUNCTION", "function_id", Format::Text),
        Column::new("NAMESPACE", "namespace", Format::Text),
        Column::new("WORKER", "worker_name", Format::Text),
        Column::new("DESCRIPTION", "description", Format::Text),
    ],
};

/// `iii workers`.
pub(crate) const WORKERS: Listing = Listing {
    function: builtins::WORKERS_LIST,
    key: "workers",
    columns: &[
        Column::new("NAME", "name", Format::Text),
        Column::new("ID", "id", Format::Text),
        Column::new("RUNTIME", "runtime", Format::Text),
        Column::new("VERSION", "version", Format::Text),
        Column::new("PID", "pid", Format::Number),
        Column::new("FUNCTIONS", "function_count", Format::Number),
        Column::new("ACTIVE", "active_invocations", Format::Number),
        Column::new("CONNECTED", "connected_ms", Format::Millis),
    ],
};

/// `iii channels`.
pub(crate) const CHANNELS: Listing = Listing {
    function: builtins::CHANNELS_LIST,
    key: "channels",
    columns: &[
        Column::new("CHANNEL", "channel_id", Format::Text),
        Column::new("WRITER", "writer", Format::Text),
        Column::new("READER", "reader", Format::Text),
        Column::new("BUFFERED", "buffered_bytes", Format::Bytes),
        Column::new("PAUSED", "writer_paused", Format::Flag),
        Column::new("RECEIVED", "bytes_in", Format::Bytes),
        Column::new("BLOCKED", "blocked_ms", Format::Millis),
        Column::new("OWNER", "owner_name", Format::Text),
        Column::new("OWNER ID", "owner_worker_id", Format::Text),
    ],
};

/// `iii triggers`.
pub(crate) const TRIGGERS: Listing = Listing {
    function: builtins::TRIGGER_TYPES_LIST,
    key: "triggers",
    columns: &[
        Column::new("TRIGGER TYPE", "id", Format::Text),
        Column::new("NAMESPACE", "namespace", Format::Text),
        Column::new("WORKER", "worker_name", Format::Text),
        Column::new("DESCRIPTION", "description", Format::Text),
    ],
};

/// The engine's filters of `functions` and `triggers`, as the built-ins' input.
pub(crate) fn filter_input(args: &FilterArgs) -> Value {
    let mut input = Map::new();
    if let Some(prefix) = &args.prefix {
        input.insert("prefix".into(), json!(prefix));
    }
    if let Some(search) = &args.search {
        input.insert("search".into(), json!(search));
    }
    if args.all {
        input.insert("include_internal".into(), json!(true));
    }
    Value::Object(input)
}

/// Asks the engine for `listing` and prints it. The command's own worker is left out.
pub(crate) async fn run(
    session: &Session,
    listing: &Listing,
    input: Value,
    args: &ListArgs,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let request = session
        .iii()
        .trigger_with_timeout(listing.function, input, timeout);
    let answer = tokio::select! {
        answer = request => answer,
        _ = tokio::signal::ctrl_c() => return Err(Failure::Interrupted),
    };
    let answer = answer.map_err(|error| Failure::call(listing.function, timeout, error))?;
    let rows = rows(listing, answer, session.name())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &Value::Array(rows), false)
    } else {
        out.write_all(table::render(listing.columns, &rows).as_bytes())
            .and_then(|()| out.flush())
            .map_err(Failure::stdout)
    }
}

/// The rows of an answer, without the entries of the worker named `own_name`.
fn rows(listing: &Listing, mut answer: Value, own_name: &str) -> Result<Vec<Value>, Failure> {
    let rows = match answer.get_mut(listing.key).map(Value::take) {
        Some(Value::Array(rows)) => rows,
        _ => {
            return Err(Failure::Function {
                function: listing.function.to_owned(),
                body: iii_tokio::worker::ErrorBody::new(
                    "unexpected_answer",
                    format!("the answer has no `{}` list: {answer}", listing.key),
                ),
                stream: None,
            })
        }
    };
    let is_own = |row: &Value| {
        listing.key == WORKERS.key && row.get("name").and_then(Value::as_str) == Some(own_name)
    };
    Ok(rows.into_iter().filter(|row| !is_own(row)).collect())
}

/// `iii describe FUNCTION`: the function's row of `engine::functions::list` (internal
/// ones included), as indented JSON; a function that is not registered fails like a
/// call of it would (`function_not_found`, status 1).
pub(crate) async fn describe(
    session: &Session,
    function: &str,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    const LIST: &str = "engine::functions::list";
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
    let input = json!({"prefix": function, "include_internal": true});
    let request = session.iii().trigger_with_timeout(LIST, input, timeout);
    let answer = tokio::select! {
        answer = request => answer,
        _ = tokio::signal::ctrl_c() => return Err(Failure::Interrupted),
    };
    let answer = answer.map_err(|error| Failure::call(LIST, timeout, error))?;
    let row = answer["functions"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["function_id"] == function));
    match row {
        Some(row) => print_json(&mut std::io::stdout().lock(), row, false),
        None => Err(Failure::Function {
            function: function.to_owned(),
            body: ErrorBody::new(
                "function_not_found",
                format!("no function `{function}` is registered at the engine"),
            ),
            stream: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_itself_is_not_listed_among_workers() {
        let answer = json!({"workers": [{"name": "iii-cli:7"}, {"name": "backend"}]});
        let rows = rows(&WORKERS, answer, "iii-cli:7").expect("rows");
        assert_eq!(rows, vec![json!({"name": "backend"})]);
    }

    #[test]
    fn an_answer_without_the_list_is_an_error() {
        let error = rows(&FUNCTIONS, json!({"other": []}), "me").expect_err("no list");
        assert!(error.to_string().contains("no `functions` list"), "{error}");
    }

    #[test]
    fn filters_become_the_engine_input() {
        let args = FilterArgs {
            list: ListArgs { json: false },
            prefix: Some("math.".into()),
            search: None,
            all: true,
        };
        assert_eq!(
            filter_input(&args),
            json!({"prefix": "math.", "include_internal": true})
        );
    }
}
