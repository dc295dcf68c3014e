//! Shared by the examples: an engine to talk to, and workers connected to it.

use std::time::Duration;

use iii_tokio::worker::{connect, Iii, WorkerOptions};

/// The engine the examples use: `III_URL` if set, otherwise one started in-process.
pub(crate) struct Engine {
    pub(crate) url: String,
    _server: Option<iii_tokio::EngineServer>,
}

pub(crate) async fn engine() -> Engine {
    match std::env::var("III_URL") {
        Ok(url) if !url.trim().is_empty() => {
            println!("using the engine at {url}");
            Engine { url, _server: None }
        }
        _ => {
            let server = iii_tokio::bind("127.0.0.1:0", Default::default())
                .await
                .expect("start an in-process engine");
            println!("started an in-process engine at {}", server.url());
            Engine {
                url: server.url(),
                _server: Some(server),
            }
        }
    }
}

/// A worker named `name`, connected to `engine`.
pub(crate) async fn worker(engine: &Engine, name: &str) -> Iii {
    let iii = connect(WorkerOptions {
        url: Some(engine.url.clone()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    })
    .expect("valid options");
    iii.wait_connected(Duration::from_secs(10))
        .await
        .expect("connected to the engine");
    iii
}
