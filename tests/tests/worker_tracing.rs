//! Every invocation runs inside a `tracing` span named `iii.invocation` carrying the
//! function id, the invocation id and the caller's traceparent. (Its own test binary: it
//! installs a global subscriber.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iii_tests::adapter::Flavor;

use iii_tokio::worker::{connect, CallOptions, Error, TraceContext, WorkerOptions};
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// A span's name and its fields as text.
type Recorded = (String, Vec<(String, String)>);

#[derive(Default, Clone)]
struct Spans(Arc<Mutex<Vec<Recorded>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        if let Ok(mut spans) = self.0.lock() {
            spans.push((attrs.metadata().name().to_owned(), fields.0));
        }
    }
}

#[test]
fn each_invocation_runs_in_a_span_with_its_ids() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .expect("the only subscriber of this binary");
    iii_tests::adapter::TokioFlavor::block_on(async {
        let engine = iii_tokio::bind("127.0.0.1:0", Default::default())
            .await
            .expect("engine");
        let options = |name: &str| WorkerOptions {
            url: Some(engine.url()),
            name: Some(name.to_owned()),
            ..WorkerOptions::default()
        };
        let owner = connect(options("span-owner")).expect("owner");
        let caller = connect(options("span-caller")).expect("caller");
        owner
            .register_function("span.check", |_: Value| async move {
                let current = tracing::Span::current();
                let name = current.metadata().map(|m| m.name()).unwrap_or("none");
                Ok::<_, Error>(json!(name))
            })
            .expect("register");
        owner
            .wait_registered(Duration::from_secs(30))
            .await
            .expect("registered");
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let reply = caller
            .trigger_with(
                "span.check",
                json!({}),
                CallOptions {
                    trace: TraceContext {
                        traceparent: Some(traceparent.into()),
                        baggage: None,
                    },
                    ..CallOptions::default()
                },
            )
            .await
            .expect("call");
        assert_eq!(
            reply.value, "iii.invocation",
            "the handler runs in the span"
        );
        let spans = spans.0.lock().expect("lock").clone();
        let (_, fields) = spans
            .iter()
            .find(|(name, _)| name == "iii.invocation")
            .expect("an invocation span");
        let field = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(field("function_id"), "span.check");
        assert_eq!(field("invocation_id").len(), 36, "a UUID: {fields:?}");
        assert_eq!(field("traceparent"), traceparent);
        owner.shutdown().await;
        caller.shutdown().await;
        engine.shutdown().await;
    });
}
