//! `iii functions | workers | channels | triggers`: tables and `--json`.

use serde_json::Value;

use crate::support::{iii, run, Backend, Engine, BACKEND, FUNCTIONS};

/// The table's lines, split into cells on runs of two or more spaces.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_listed_as_a_table_and_as_json() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    let table = run(iii(&engine.url, &["functions"]), None).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let rows = cells(&table.stdout_text());
    assert_eq!(
        rows[0],
        ["FUNCTION", "NAMESPACE", "WORKER", "DESCRIPTION"],
        "{table:?}"
    );
    let mut listed: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
    listed.sort_unstable();
    let mut expected = FUNCTIONS.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected, "{table:?}");
    assert!(
        rows[1..]
            .iter()
            .all(|row| row[1..] == ["default", BACKEND, "-"]),
        "{table:?}"
    );

    let json = run(iii(&engine.url, &["functions", "--json"]), None).await;
    assert_eq!(json.code, Some(0), "{json:?}");
    let list = json.json();
    let ids: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|f| f["function_id"].as_str())
        .collect();
    assert_eq!(ids.len(), FUNCTIONS.len(), "{json:?}");

    let prefixed = run(
        iii(&engine.url, &["functions", "--prefix", "files.", "--json"]),
        None,
    )
    .await;
    let ids: Vec<Value> = prefixed
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|f| f["function_id"].clone())
        .collect();
    assert_eq!(ids, ["files.generate", "files.hash"], "{prefixed:?}");

    let all = run(iii(&engine.url, &["functions", "--all"]), None).await;
    assert!(
        all.stdout_text().contains("engine::channels::create"),
        "{all:?}"
    );
    assert!(
        !table.stdout_text().contains("engine::"),
        "the engine's own functions only with --all: {table:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_listed_without_the_command_itself() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    let table = run(iii(&engine.url, &["workers"]), None).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let rows = cells(&table.stdout_text());
    assert_eq!(
        rows[0],
        [
            "NAME",
            "ID",
            "RUNTIME",
            "VERSION",
            "PID",
            "FUNCTIONS",
            "ACTIVE",
            "CONNECTED"
        ],
        "{table:?}"
    );
    assert_eq!(rows.len(), 2, "only the backend: {table:?}");
    assert_eq!(rows[1][0], BACKEND);
    assert_eq!(rows[1][2], "rust");
    assert_eq!(rows[1][4], std::process::id().to_string());
    assert_eq!(rows[1][5], FUNCTIONS.len().to_string());

    let json = run(iii(&engine.url, &["workers", "--json"]), None).await;
    let workers = json.json();
    let names: Vec<&str> = workers
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, [BACKEND], "{json:?}");
}

/// Waits until the engine has taken `bytes` bytes from channel `id`'s writer.
async fn wait_received(backend: &Backend, id: &str, bytes: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = backend
            .iii
            .trigger("engine::channels::list", serde_json::json!({}))
            .await
            .expect("list channels");
        let received = list["channels"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["channel_id"] == id))
            .and_then(|c| c["bytes_in"].as_u64());
        if received == Some(bytes) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never got the bytes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_channels_are_listed() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;

    let empty = run(iii(&engine.url, &["channels"]), None).await;
    assert_eq!(empty.code, Some(0), "{empty:?}");
    assert_eq!(
        cells(&empty.stdout_text()).len(),
        1,
        "only the header: {empty:?}"
    );

    let channel = backend.iii.create_channel(Some(8)).await.expect("channel");
    channel.writer.write(&[7u8; 3000]).await.expect("write");
    let id = channel.writer_ref.channel_id.clone();
    wait_received(&backend, &id, 3000).await;

    let table = run(iii(&engine.url, &["channels"]), None).await;
    let rows = cells(&table.stdout_text());
    assert_eq!(
        rows[0],
        [
            "CHANNEL", "WRITER", "READER", "BUFFERED", "PAUSED", "RECEIVED", "BLOCKED", "OWNER",
            "OWNER ID"
        ],
        "{table:?}"
    );
    let row = rows
        .iter()
        .find(|row| row[0] == id)
        .unwrap_or_else(|| panic!("channel {id} not listed: {table:?}"));
    assert_eq!(row[1], "attached", "{table:?}");
    assert_eq!(row[2], "waiting", "{table:?}");
    assert_eq!(row[7], BACKEND, "the owner by its name: {table:?}");

    let json = run(iii(&engine.url, &["channels", "--json"]), None).await;
    let channels = json.json();
    let listed = channels
        .as_array()
        .expect("an array")
        .iter()
        .find(|c| c["channel_id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("channel {id} not in JSON: {json:?}"));
    assert_eq!(listed["bytes_in"], 3000, "{json:?}");
    assert_eq!(listed["buffer_size"], 8, "{json:?}");
}

/// `blocked_ms` of channel `id` in `engine::channels::list`.
async fn blocked_ms(backend: &Backend, id: &str) -> Option<u64> {
    let list = backend
        .iii
        .trigger("engine::channels::list", serde_json::json!({}))
        .await
        .expect("list channels");
    list["channels"]
        .as_array()?
        .iter()
        .find(|c| c["channel_id"] == id)?["blocked_ms"]
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_paused_now_counts_as_blocked() {
    let engine = Engine::start().await;
    let backend = Backend::start(&engine.url).await;
    // Two messages of buffer and no reader: the writer is paused and stays so.
    let channel = backend.iii.create_channel(Some(2)).await.expect("channel");
    let id = channel.writer_ref.channel_id.clone();
    let writing = tokio::spawn(async move {
        // The whole channel stays alive (its unused reader end too) while writing.
        let channel = channel;
        // Whole 64 KiB frames: smaller writes that wait for credit merge into one frame.
        let frame = vec![1u8; 64 * 1024];
        for _ in 0..16 {
            if channel.writer.write(&frame).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    });
    // The pause under way is counted: without it BLOCKED stays 0 until it ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blocked_ms(&backend, &id).await.unwrap_or(0) == 0 {
        if std::time::Instant::now() >= deadline {
            let list = backend
                .iii
                .trigger("engine::channels::list", serde_json::json!({}))
                .await;
            panic!("a paused writer never counted as blocked: {list:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let table = run(iii(&engine.url, &["channels"]), None).await;
    let rows = cells(&table.stdout_text());
    let row = rows
        .iter()
        .find(|row| row[0] == id)
        .unwrap_or_else(|| panic!("channel {id} not listed: {table:?}"));
    assert_eq!(row[4], "yes", "paused: {table:?}");
    writing.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_types_are_listed() {
    let engine = Engine::start().await;
    let _backend = Backend::start(&engine.url).await;

    let table = run(iii(&engine.url, &["triggers"]), None).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let rows = cells(&table.stdout_text());
    assert_eq!(
        rows,
        [
            vec!["TRIGGER TYPE", "NAMESPACE", "WORKER", "DESCRIPTION"],
            vec!["test.tick", "default", BACKEND, "Fires on test ticks"],
        ],
        "{table:?}"
    );

    let all = run(iii(&engine.url, &["triggers", "--all", "--json"]), None).await;
    let ids: Vec<String> = all
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains(&"test.tick".to_owned()), "{all:?}");
    assert!(
        ids.iter().any(|id| id.starts_with("engine::")),
        "--all includes the engine's: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_formats_a_function_was_registered_with() {
    use iii_tokio::worker::FunctionDef;
    use serde_json::json;
    let engine = Engine::start().await;
    let described = crate::support::worker(&engine.url, "described", None).await;
    let request = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let def = FunctionDef::new("math.add")
        .description("adds")
        .request_format(request.clone())
        .response_format(json!({"type": "integer"}));
    described
        .register_function(def, |input: Value| async move {
            Ok::<_, iii_tokio::worker::Error>(input)
        })
        .expect("register");
    described
        .wait_registered(std::time::Duration::from_secs(10))
        .await
        .expect("registered");

    let out = run(iii(&engine.url, &["describe", "math.add"]), None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let row = out.json();
    assert_eq!(row["function_id"], "math.add", "{out:?}");
    assert_eq!(row["worker_name"], "described");
    assert_eq!(row["description"], "adds");
    assert_eq!(row["request_format"], request);
    assert_eq!(row["response_format"], json!({"type": "integer"}));

    let missing = run(iii(&engine.url, &["describe", "math.sub"]), None).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("function_not_found"), "{missing:?}");
}
