//! `iii send`: a file or standard input into a function through a new channel.

use std::cell::Cell;
use std::time::Duration;

use bytes::BytesMut;
use iii_tokio::worker::{Channel, ChannelWriter, Error};
use indicatif::ProgressBar;
use serde_json::json;

use super::local::Source;
use super::{call, create_channel, payload_with, progress, stream_failed};
use crate::call::print_json;
use crate::cli::SendArgs;
use crate::exit::Failure;
use crate::payload;
use crate::session::Session;

/// Why sending the input through the channel failed.
enum CopyError {
    /// Reading the input failed.
    Local(Failure),
    /// The channel failed.
    Channel(Error),
}

/// Runs `iii send`.
pub(crate) async fn run(
    session: &Session,
    args: &SendArgs,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let transfer = &args.transfer;
    let payload = payload::ref_payload(&transfer.payload, &args.field)?;
    let mut source = Source::open(&args.input).await?;
    let iii = session.iii();
    let Channel {
        writer, reader_ref, ..
    } = create_channel(iii, transfer.buffer_size).await?;
    let payload = payload_with(payload, &args.field, json!(reader_ref));
    let bar = progress::bar(source.size.or(transfer.size), transfer.no_progress);
    let interrupted = tokio::signal::ctrl_c();
    let call = call(iii, &transfer.function, payload, timeout);
    tokio::pin!(interrupted, call);

    let sent = Cell::new(0u64);
    let input_ended = Cell::new(false);
    let sent_all = tokio::select! {
        biased;
        _ = &mut interrupted => {
            writer.abort();
            return Err(Failure::Interrupted);
        }
        answer = &mut call => {
            if input_ended.get() {
                // Everything was written and the end sent: only our close's handshake
                // was still under way when the answer came.
                bar.finish_and_clear();
                return print_json(&mut std::io::stdout().lock(), &answer?, false);
            }
            // The function answered before the input ended: nobody reads the rest, and
            // `tar c | iii send backup.store` must not report success for part of it.
            writer.abort();
            let result = answer.inspect_err(|_| bar.abandon())?;
            bar.abandon();
            print_json(&mut std::io::stdout().lock(), &result, false)?;
            return Err(Failure::Unread {
                function: transfer.function.clone(),
                sent: sent.get(),
            });
        }
        sent_all = send_all(&mut source, &writer, &bar, args.read_bytes as usize, (&sent, &input_ended)) => sent_all,
    };
    match sent_all {
        Ok(()) => {}
        Err(CopyError::Local(failure)) => {
            writer.abort();
            return Err(failure);
        }
        Err(CopyError::Channel(error)) => {
            bar.abandon();
            return Err(stream_failed(call, sent.get(), error, transfer.error_grace).await);
        }
    }
    bar.set_message("waiting for the result");
    let result = tokio::select! {
        biased;
        _ = &mut interrupted => return Err(Failure::Interrupted),
        answer = &mut call => answer,
    };
    bar.finish_and_clear();
    print_json(&mut std::io::stdout().lock(), &result?, false)
}

/// Copies `source` into `writer` in chunks of at most `chunk` bytes, counting into
/// `sent`, then sets `ended` and closes the channel. Each write waits until the worker has taken the
/// chunk under its write window, so at most a window and a chunk are held, whatever the
/// input's size.
async fn send_all(
    source: &mut Source,
    writer: &ChannelWriter,
    bar: &ProgressBar,
    chunk: usize,
    (sent, ended): (&Cell<u64>, &Cell<bool>),
) -> Result<(), CopyError> {
    let mut buf = BytesMut::new();
    while source
        .read(&mut buf, chunk)
        .await
        .map_err(CopyError::Local)?
    {
        let data = buf.split().freeze();
        let len = data.len() as u64;
        writer.write_bytes(data).await.map_err(CopyError::Channel)?;
        sent.set(sent.get() + len);
        bar.set_position(sent.get());
    }
    ended.set(true);
    writer.close().await.map_err(CopyError::Channel)
}
