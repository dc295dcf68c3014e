//! A flood of refused requests is counted in full by the metrics while the log gets a
//! bounded number of lines per reason and a summary of the rest. (Its own test binary:
//! it installs a global subscriber.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iii_tests::peer::{Patience, Peer};
use iii_tokio::engine::{bind, EngineSettings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The messages of the events logged at info or above, with their fields as text.
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
        if *event.metadata().level() > tracing::Level::INFO {
            return;
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        if let Ok(mut lines) = self.0.lock() {
            lines.push(text.0);
        }
    }
}

impl Lines {
    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .map(|lines| lines.iter().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }
}

/// The value of metric line `name` in the engine's `/metrics`.
async fn metric(addr: &str, name: &str) -> u64 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response))
        .await
        .expect("in time")
        .expect("read");
    response
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

const REFUSED: u64 = 2_000;

#[tokio::test]
async fn refused_requests_are_all_counted_but_logged_a_few_times_per_reason_with_a_summary() {
    let lines = Lines::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(lines.clone()))
        .expect("the only subscriber of this binary");
    let mut settings = EngineSettings::default();
    settings.core.quotas.functions = 1;
    settings.log_lines_per_reason = 5;
    // One window for the flood: the bound below does not depend on how fast it runs.
    settings.log_window = Duration::from_millis(1_500);
    let server = bind("127.0.0.1:0", settings).await.expect("bind");
    let addr = server.local_addr().to_string();
    let mut flooder = Peer::connect(&server.url()).await.expect("flooder");
    let started = std::time::Instant::now();
    flooder.register("kept").await;
    for i in 0..REFUSED {
        flooder.register(&format!("refused::{i}")).await;
        if i % 500 == 0 {
            // A second reason in the same window is logged on its own allowance.
            flooder
                .send(json!({"type": "registerfunction", "id": "engine::mine"}))
                .await;
        }
    }
    let counted = r#"iii_quota_refusals_total{quota="functions"}"#;
    let patience = Patience::new();
    while metric(&addr, counted).await < REFUSED {
        patience.wait("every refusal counted").await;
    }
    assert_eq!(metric(&addr, counted).await, REFUSED);
    let windows = started.elapsed().as_millis() / 1_500 + 2;
    // The window's summary counts what it suppressed, once the window has passed.
    let patience = Patience::new();
    while lines.count("log lines suppressed") == 0 {
        patience.wait("a summary line").await;
    }
    let refused_lines = lines.count("request refused");
    // Per window the flood spans: 5 quota lines and at most 4 reserved-id ones.
    assert!(
        refused_lines as u128 <= windows * (5 + 4),
        "{refused_lines} lines for {REFUSED} refusals in {windows} windows"
    );
    assert!(lines.count("Functions") >= 1, "the quota reason is logged");
    let summary = lines
        .0
        .lock()
        .expect("lock")
        .iter()
        .find(|l| l.contains("log lines suppressed"))
        .cloned()
        .unwrap_or_default();
    assert!(summary.contains("quota_exceeded/functions="), "{summary}");
    assert!(flooder.is_served().await);
    server.shutdown().await;
}
