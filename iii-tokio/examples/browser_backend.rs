//! The backend of the browser example (`iii-browser/example/run.sh`): serves
//! `api::get::users` and `stream-producer` (writes text messages and bytes to the
//! channel whose writer ref it is given, then closes it), and calls the page's
//! `ui::show-notification` every 3 seconds. Connects to `III_URL`.

use std::time::Duration;

use iii_tokio::worker::{connect, ChannelRef, ChannelWriter, Error, WorkerOptions};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let iii = connect(WorkerOptions {
        name: Some("browser-example-backend".into()),
        ..Default::default()
    })?;
    iii.register_function("api::get::users", |_input: Value| async move {
        Ok::<_, Error>(json!([
            {"id": 1, "name": "Ada"},
            {"id": 2, "name": "Grace"},
            {"id": 3, "name": "Linus"}
        ]))
    })?;
    let me = iii.clone();
    iii.register_function("stream-producer", move |input: Value| {
        let iii = me.clone();
        async move {
            let writer_ref: ChannelRef = serde_json::from_value(input["outputChannel"].clone())?;
            let writer = ChannelWriter::new(&iii, &writer_ref);
            for (i, word) in ["hello", "from", "the", "backend"].iter().enumerate() {
                writer
                    .send_message(&format!("progress {}/4", i + 1))
                    .await?;
                writer.write(format!("{word} ").as_bytes()).await?;
            }
            writer.close().await?;
            Ok::<_, Error>(json!({ "written": 4 }))
        }
    })?;
    iii.wait_connected(Duration::from_secs(30)).await?;
    println!("backend connected; calling ui::show-notification every 3 s (Ctrl-C stops)");
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tick += 1;
        let note = json!({"title": "backend", "body": format!("tick {tick}")});
        // No page connected yet: function_not_found, which is fine here.
        if let Err(error) = iii.trigger("ui::show-notification", note).await {
            eprintln!("ui::show-notification: {error}");
        }
    }
}
