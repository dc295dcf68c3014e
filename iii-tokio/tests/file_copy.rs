//! `tokio::io::copy` into a channel writer and out of a reader, as the `file_copy`
//! example does, on real files.

use std::time::Duration;

use iii_tokio::worker::{connect, ChannelReader, WorkerOptions};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_copied_through_a_channel_with_tokio_io_copy() {
    let engine = iii_tokio::bind("127.0.0.1:0", Default::default())
        .await
        .expect("engine");
    let options = |name: &str| WorkerOptions {
        url: Some(engine.url()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    };
    let sender = connect(options("copy-sender")).expect("sender");
    let receiver = connect(options("copy-receiver")).expect("receiver");
    sender
        .wait_connected(Duration::from_secs(30))
        .await
        .expect("connected");
    let dir = std::env::temp_dir().join(format!("iii-file-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let source = dir.join("source.bin");
    let destination = dir.join("copy.bin");
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &data).expect("source file");

    let channel = sender.create_channel(None).await.expect("channel");
    let mut reader = ChannelReader::new(&receiver, &channel.reader_ref);
    let copy_out = {
        let destination = destination.clone();
        tokio::spawn(async move {
            let mut file = tokio::fs::File::create(&destination).await?;
            let n = tokio::io::copy(&mut reader, &mut file).await?;
            file.flush().await?;
            Ok::<_, std::io::Error>(n)
        })
    };
    let mut writer = channel.writer;
    let mut file = tokio::fs::File::open(&source).await.expect("open");
    let sent = tokio::io::copy(&mut file, &mut writer)
        .await
        .expect("copy in");
    writer.shutdown().await.expect("clean close");
    let received = copy_out.await.expect("task").expect("copy out");
    assert_eq!((sent, received), (data.len() as u64, data.len() as u64));
    assert_eq!(std::fs::read(&destination).expect("copy"), data);
    std::fs::remove_dir_all(&dir).expect("clean up");
    sender.shutdown().await;
    receiver.shutdown().await;
    engine.shutdown().await;
}
