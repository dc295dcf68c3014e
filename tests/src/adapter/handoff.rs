//! Channel handoff and cancellation: an end handed to another worker by its ref while
//! the local end is dropped unused, writes abandoned part-way, `poll_write`'s contract,
//! the `Sink`, and a reader that closes early.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use iii_driver::worker::{ChannelReader, ChannelWriter, EndOutcome, Error, Iii, WorkerOptions};
use iii_driver::Runtime;

use super::{with_timeout, worker, WAIT};

/// A worker created on `creator_rt` makes a channel, keeps only its reader (the local
/// writer is dropped unused, as destructuring does), and hands the writer ref to a
/// worker on `user_rt`, which writes through it. The stream arrives whole and clean.
pub async fn dropped_unused_writer_leaves_the_handed_off_ref_working<RC: Runtime, RU: Runtime>(
    creator_rt: RC,
    user_rt: RU,
    url: &str,
) {
    let creator = worker(creator_rt, url, "handoff-creator").await;
    let user = worker(user_rt, url, "handoff-user").await;
    let channel = creator.create_channel(None).await.expect("create");
    let writer_ref = channel.writer_ref;
    let mut reader = channel.reader; // `channel.writer` is dropped here, never used
    let remote = ChannelWriter::new(&user, &writer_ref);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    remote
        .write(&data)
        .await
        .expect("the handed-off writer works");
    remote.close().await.expect("clean close");
    let received = with_timeout(reader.read_all()).await.expect("a clean end");
    assert_eq!(received, data);
    creator.shutdown().await;
    user.shutdown().await;
}

/// The mirror image: the local reader is dropped unused, a worker on `user_rt` reads
/// through the handed-off reader ref while the creator writes.
pub async fn dropped_unused_reader_leaves_the_handed_off_ref_working<RC: Runtime, RU: Runtime>(
    creator_rt: RC,
    user_rt: RU,
    url: &str,
) {
    let creator = worker(creator_rt, url, "handoff-writer-side").await;
    let user = worker(user_rt, url, "handoff-reader-side").await;
    let iii_driver::worker::Channel {
        writer, reader_ref, ..
    } = creator.create_channel(None).await.expect("create");
    let mut remote = ChannelReader::new(&user, &reader_ref);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let reading = async { with_timeout(remote.read_all()).await };
    let writing = async {
        writer.write(&data).await.expect("write");
        writer.close().await.expect("close");
    };
    let (received, ()) = futures_util::join!(reading, writing);
    assert_eq!(received.expect("a clean end"), data);
    creator.shutdown().await;
    user.shutdown().await;
}

/// Writes of numbered records, each raced against a short timer while nobody reads, so
/// that once the window is full they are abandoned (one of them part-way). The reader
/// then sees whole records only, in order, none twice: every completed write, at most
/// the one abandoned part-way, and a write made afterwards.
pub async fn abandoned_writes_are_all_or_nothing<R: Runtime>(rt: R, url: &str) {
    let iii = worker(rt, url, "cancelling-writer").await;
    let channel = iii.create_channel(Some(4)).await.expect("create");
    let mut reader = channel.reader;
    const RECORD: usize = 150_000;
    let record = |index: u32| {
        let mut record = Vec::with_capacity(RECORD);
        record.extend_from_slice(&index.to_le_bytes());
        record.resize(RECORD, index as u8);
        record
    };
    let mut completed = Vec::new();
    let mut abandoned = Vec::new();
    // The window, the engine's buffer and the sockets' buffers fill within this.
    for index in 0..160u32 {
        if abandoned.len() == 4 {
            break;
        }
        let data = record(index);
        let write = channel.writer.write(&data);
        let timer = super::timer(Duration::from_millis(3));
        futures_util::pin_mut!(write);
        match futures_util::future::select(write, timer).await {
            futures_util::future::Either::Left((result, _)) => {
                result.expect("write");
                completed.push(index);
            }
            futures_util::future::Either::Right(_) => abandoned.push(index),
        }
    }
    assert!(!abandoned.is_empty(), "the window never filled");
    let last = 1000;
    let finishing = async {
        with_timeout(channel.writer.write(&record(last)))
            .await
            .expect("a write after the abandoned ones");
        with_timeout(channel.writer.close()).await.expect("close");
    };
    let reading = async { with_timeout(reader.read_all()).await.expect("read") };
    let ((), all) = futures_util::join!(finishing, reading);
    assert_eq!(
        all.len() % RECORD,
        0,
        "only whole records are in the stream"
    );
    let indices: Vec<u32> = all
        .chunks(RECORD)
        .map(|record| {
            let index = u32::from_le_bytes(record[..4].try_into().expect("4 bytes"));
            assert!(
                record[4..].iter().all(|&b| b == index as u8),
                "record {index} is whole"
            );
            index
        })
        .collect();
    let mut expected = completed.clone();
    if indices.len() == completed.len() + 2 {
        // The write abandoned part-way was finished in the background.
        expected.push(abandoned[0]);
    }
    expected.push(last);
    assert_eq!(
        indices, expected,
        "completed {completed:?}, abandoned {abandoned:?}"
    );
    iii.shutdown().await;
}

/// `poll_write` returns `Pending` only when it took nothing of that buffer: a retry
/// with another buffer is not credited with the first one's bytes.
pub async fn poll_write_pending_takes_nothing<R: Runtime>(rt: R, url: &str) {
    let mut options = WorkerOptions {
        url: Some(url.to_owned()),
        name: Some("poll-writer".into()),
        ..WorkerOptions::default()
    };
    options.core.writer_window_bytes = 64 * 1024;
    let iii = Iii::connect(rt, options).expect("options");
    iii.wait_connected(WAIT).await.expect("connected");
    let channel = iii.create_channel(Some(1)).await.expect("create");
    let mut writer = channel.writer;
    let mut reader = channel.reader;
    // Write the filler until a call finds the window full and returns `Pending`.
    let filler = vec![b'f'; 64 * 1024];
    let mut filled = 0usize;
    loop {
        let polled = futures_util::future::poll_fn(|cx| {
            Poll::Ready(futures_util::AsyncWrite::poll_write(
                Pin::new(&mut writer),
                cx,
                &filler,
            ))
        })
        .await;
        match polled {
            Poll::Ready(Ok(n)) => filled += n,
            Poll::Ready(Err(error)) => panic!("write failed: {error}"),
            Poll::Pending => break,
        }
        assert!(filled < 256 << 20, "the window never filled");
    }
    // Another buffer now: what follows the filler is all of it, and no more filler.
    let second = vec![b'B'; 1000];
    futures_util::io::AsyncWriteExt::write_all(&mut writer, &second)
        .await
        .expect("write B");
    futures_util::io::AsyncWriteExt::close(&mut writer)
        .await
        .expect("close");
    let all = with_timeout(reader.read_all()).await.expect("read");
    assert_eq!(all.len(), filled + second.len());
    assert!(all[..filled].iter().all(|&b| b == b'f'));
    assert!(
        all[filled..].iter().all(|&b| b == b'B'),
        "nothing of the buffer that got Pending"
    );
    iii.shutdown().await;
}

/// The writer is a `Sink<Bytes>`: items arrive whole and in order; closing the sink
/// ends the stream cleanly.
pub async fn writer_is_a_sink<R: Runtime>(rt: R, url: &str) {
    let iii = worker(rt, url, "sink-writer").await;
    let channel = iii.create_channel(None).await.expect("create");
    let mut writer = channel.writer;
    let mut reader = channel.reader;
    let items: Vec<Bytes> = (0..40u8)
        .map(|i| Bytes::from(vec![i; 1 + usize::from(i) * 9_000]))
        .collect();
    let expected: Vec<u8> = items.iter().flat_map(|b| b.iter().copied()).collect();
    let sending = async {
        let mut stream = futures_util::stream::iter(items.into_iter().map(Ok::<_, Error>));
        writer.send_all(&mut stream).await.expect("send_all");
        SinkExt::close(&mut writer).await.expect("close");
    };
    let (received, ()) = futures_util::join!(with_timeout(reader.read_all()), sending);
    assert_eq!(received.expect("clean end"), expected);
    iii.shutdown().await;
}

/// A reader that closes early: the writer's next writes fail with a typed channel
/// error instead of filling buffers nobody reads.
pub async fn closed_reader_fails_the_writer<R: Runtime>(rt: R, url: &str) {
    let writer_side = worker(rt.clone(), url, "closing-reader-writer").await;
    let reader_side = worker(rt, url, "closing-reader").await;
    let channel = writer_side.create_channel(None).await.expect("create");
    let mut reader = ChannelReader::new(&reader_side, &channel.reader_ref);
    channel.writer.write(b"first").await.expect("write");
    let first = with_timeout(reader.next_binary()).await.expect("read");
    assert_eq!(first.as_deref(), Some(&b"first"[..]));
    with_timeout(reader.close())
        .await
        .expect("close the reader");
    assert!(matches!(reader.next_binary().await, Err(Error::Closed)));
    let failure = write_until_it_fails(&channel.writer).await;
    assert!(
        matches!(failure, Error::Channel(EndOutcome::Aborted { .. })),
        "{failure:?}"
    );
    writer_side.shutdown().await;
    reader_side.shutdown().await;
}

/// A reader closed before it ever read still tells the writer.
pub async fn reader_closed_before_reading_fails_the_writer<R: Runtime>(rt: R, url: &str) {
    let iii = worker(rt, url, "early-closer").await;
    let channel = iii.create_channel(None).await.expect("create");
    let mut reader = channel.reader;
    with_timeout(reader.close()).await.expect("close");
    let failure = write_until_it_fails(&channel.writer).await;
    // The engine dropped the channel when its only attached end left: the writer's
    // connect is refused.
    assert!(
        matches!(
            failure,
            Error::Channel(EndOutcome::Aborted { .. } | EndOutcome::Refused { .. })
        ),
        "{failure:?}"
    );
    iii.shutdown().await;
}

/// Writes 64 KiB at a time until a write fails (at most 256 MiB), and returns the error.
async fn write_until_it_fails<R: Runtime>(writer: &ChannelWriter<R>) -> Error {
    let chunk = vec![0u8; 64 * 1024];
    with_timeout(async {
        for _ in 0..4096 {
            if let Err(error) = writer.write(&chunk).await {
                return error;
            }
        }
        panic!("256 MiB written to a closed reader");
    })
    .await
}
