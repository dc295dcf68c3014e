//! `iii recv`: what a function writes into a new channel, to a file or standard output.

use std::time::Duration;

use iii_tokio::worker::{Channel, ChannelItem, Error};
use serde_json::{json, Value};

use super::local::Sink;
use super::{call, create_channel, messages, payload_with, progress, stream_failed};
use crate::call::print_json;
use crate::cli::RecvArgs;
use crate::exit::Failure;
use crate::payload;
use crate::session::Session;

/// What the transfer loop waits for.
enum Event {
    /// The function answered.
    Answer(Result<Value, Failure>),
    /// The channel delivered an item, ended (`None`) or failed.
    Item(Result<Option<ChannelItem>, Error>),
}

/// Runs `iii recv`.
pub(crate) async fn run(
    session: &mut Session,
    args: &RecvArgs,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let payload = payload::ref_payload(&args.transfer.payload, &args.field)?;
    let mut sink = Sink::open(&args.output).await?;
    let outcome = receive(session, args, timeout, payload, &mut sink).await;
    if outcome.is_err() {
        sink.failed_transfer().await;
    }
    outcome
}

/// The transfer of `iii recv` into `sink`, whose file the caller cleans up on failure.
async fn receive(
    session: &mut Session,
    args: &RecvArgs,
    timeout: Option<Duration>,
    payload: serde_json::Map<String, Value>,
    sink: &mut Sink,
) -> Result<(), Failure> {
    let transfer = &args.transfer;
    let iii = session.iii().clone();
    let Channel {
        writer,
        mut reader,
        writer_ref,
        ..
    } = create_channel(&iii, transfer.buffer_size).await?;
    // The function opens the writing end with the ref; our unused local writer must
    // not be dropped while it may (see Session::park).
    session.park(writer);
    let payload = payload_with(payload, &args.field, json!(writer_ref));
    let bar = progress::bar(transfer.size, transfer.no_progress);
    let interrupted = tokio::signal::ctrl_c();
    let call = call(&iii, &transfer.function, payload, timeout);
    tokio::pin!(interrupted, call);

    // Dropping `reader` on an early return releases our end, so the function's writer
    // fails instead of blocking.
    let mut received = 0u64;
    let mut answer: Option<Value> = None;
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut interrupted => return Err(Failure::Interrupted),
            result = &mut call, if answer.is_none() => Event::Answer(result),
            item = reader.next_item() => Event::Item(item),
        };
        match event {
            // An error ends the transfer now (the writer may never close); a result
            // waits for the end of the stream.
            Event::Answer(result) => answer = Some(result?),
            Event::Item(Ok(Some(ChannelItem::Binary(data)))) => {
                sink.write(&data).await?;
                received += data.len() as u64;
                bar.set_position(received);
            }
            Event::Item(Ok(Some(ChannelItem::Text(text)))) => {
                messages::show(&bar, args.messages, received, &text);
            }
            Event::Item(Ok(None)) => break,
            Event::Item(Err(error)) => {
                bar.abandon();
                return Err(match answer {
                    Some(_) => Failure::Stream {
                        bytes: received,
                        error: Box::new(error),
                    },
                    None => stream_failed(call, received, error, transfer.error_grace).await,
                });
            }
        }
    }
    sink.finish().await?;
    let result = match answer {
        Some(result) => result,
        None => {
            bar.set_message("waiting for the result");
            tokio::select! {
                biased;
                _ = &mut interrupted => return Err(Failure::Interrupted),
                result = &mut call => result?,
            }
        }
    };
    bar.finish_and_clear();
    if sink.is_stdout {
        print_json(&mut std::io::stderr().lock(), &result, false)
    } else {
        print_json(&mut std::io::stdout().lock(), &result, false)
    }
}
