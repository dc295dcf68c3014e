//! Workers logging through the engine (`engine::log::*`) from many sessions: the engine's
//! log gets at most the engine-wide number of their lines, and one summary line counts
//! the rest. (Its own test binary: it installs a global subscriber.)

use std::sync::{Arc, Mutex};

use iii_tests::peer::{Patience, Peer};
use iii_tokio::engine::{bind, EngineSettings};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Every event at any level, with its fields as text.
#[derive(Default, Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        if let Ok(mut lines) = self.0.lock() {
            lines.push(text.0);
        }
    }
}

impl Lines {
    fn matching(&self, needle: &str) -> Vec<String> {
        self.0
            .lock()
            .map(|lines| {
                lines
                    .iter()
                    .filter(|l| l.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

const WORKERS: usize = 20;
const LINES_EACH: usize = 5;
const TOTAL: usize = 8;

#[tokio::test]
async fn worker_log_lines_from_many_sessions_are_bounded_engine_wide_and_summarised_with_a_count() {
    let lines = Lines::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(lines.clone()))
        .expect("the only subscriber of this binary");
    let mut settings = EngineSettings::default();
    settings.core.worker_log_lines_per_second_total = TOTAL;
    let server = bind("127.0.0.1:0", settings).await.expect("bind");
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(Peer::connect(&server.url()).await.expect("worker"));
    }
    for (w, worker) in workers.iter_mut().enumerate() {
        for i in 0..LINES_EACH {
            let message = format!("flood-{w}-{i}");
            let answer = worker
                .call("engine::log::info", json!({ "message": message }))
                .await;
            assert!(answer.get("error").is_none(), "{answer}");
        }
    }
    // The bucket holds TOTAL lines and refills TOTAL a second: the bound does not depend
    // on how fast the flood runs.
    let bound = TOTAL as u64 * (started.elapsed().as_secs() + 2);
    let patience = Patience::new();
    while lines.matching("worker log lines suppressed").is_empty() {
        patience.wait("a summary line").await;
    }
    // No more lines than the engine-wide bucket allows get through, and every other
    // one is counted.
    let logged = lines.matching("flood-").len();
    assert!(
        logged >= TOTAL && logged as u64 <= bound,
        "{logged} lines logged (bound {bound})"
    );
    let patience = Patience::new();
    loop {
        let counted: u64 = lines
            .matching("worker log lines suppressed")
            .iter()
            .filter_map(|l| {
                let (_, rest) = l.split_once("engine_wide=")?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        if counted as usize + logged == WORKERS * LINES_EACH {
            break;
        }
        assert!(
            counted as usize + logged < WORKERS * LINES_EACH,
            "over-counted"
        );
        patience.wait("every dropped line counted").await;
    }
    assert!(workers[0].is_served().await);
    server.shutdown().await;
}
