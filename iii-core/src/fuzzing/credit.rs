//! The `credit` target.

use std::collections::VecDeque;

use crate::fuzzing::{Input, MAX_OPS};

use bytes::Bytes;

use crate::outbox::Outbox;
use crate::wire::Message;

/// `credit`: arbitrary push / release / sent / take_credit sequences on one [`Outbox`],
/// checked step by step against a model: in-flight never exceeds the credit, queued
/// counts and bytes match, pushes overflow exactly when the model says so, and every
/// accepted message is released once, in order.
pub fn credit(data: &[u8]) {
    let mut input = Input::new(data);
    let asked = input.below(5);
    let credit = asked.max(1);
    let mut outbox = Outbox::new(asked);
    let mut queue: VecDeque<(u32, usize)> = VecDeque::new();
    let mut in_flight = 0usize;
    let mut next_tag = 0u32;
    let mut accepted: Vec<u32> = Vec::new();
    let mut released: Vec<u32> = Vec::new();
    let release = |outbox: &mut Outbox, queue: &mut VecDeque<(u32, usize)>, in_flight: usize| {
        let expected = if in_flight < credit {
            queue.pop_front()
        } else {
            None
        };
        let got = outbox.release().map(|message| {
            let Message::Binary(bytes) = message else {
                panic!("a text message came out of a binary-only outbox");
            };
            let tag = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            (tag, bytes.len())
        });
        assert_eq!(got, expected, "release");
        got
    };
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        match input.below(6) {
            0 | 1 => {
                let len = 4 + input.below(64);
                let limit = match input.below(4) {
                    0 => usize::MAX,
                    _ => input.below(512),
                };
                let mut body = vec![0u8; len];
                body[..4].copy_from_slice(&next_tag.to_le_bytes());
                let queued: usize = queue.iter().map(|(_, l)| l).sum();
                let fits = queue.is_empty() || queued.saturating_add(len) <= limit;
                let pushed = outbox.push(Message::Binary(Bytes::from(body)), limit);
                assert_eq!(pushed.is_ok(), fits, "push of {len} with limit {limit}");
                if fits {
                    queue.push_back((next_tag, len));
                    accepted.push(next_tag);
                }
                next_tag += 1;
            }
            2 => {
                if let Some((tag, _)) = release(&mut outbox, &mut queue, in_flight) {
                    in_flight += 1;
                    released.push(tag);
                }
            }
            3 => {
                let count = match input.below(3) {
                    0 => usize::MAX,
                    _ => input.below(4),
                };
                assert_eq!(outbox.sent(count), count.min(in_flight), "sent({count})");
                in_flight -= count.min(in_flight);
            }
            4 => {
                let expected = in_flight < credit;
                assert_eq!(outbox.take_credit(), expected, "take_credit");
                if expected {
                    in_flight += 1;
                }
            }
            _ => assert_eq!(outbox.has_credit(), in_flight < credit),
        }
        assert!(outbox.in_flight() <= credit, "in flight over credit");
        assert_eq!(outbox.in_flight(), in_flight, "in-flight count");
        assert_eq!(outbox.queued(), queue.len(), "queued count");
        let queued: usize = queue.iter().map(|(_, l)| l).sum();
        assert_eq!(outbox.queued_bytes(), queued, "queued bytes");
    }
    // Return all credit and drain: every accepted message comes out exactly once, in order.
    loop {
        outbox.sent(usize::MAX);
        in_flight = 0;
        match release(&mut outbox, &mut queue, in_flight) {
            Some((tag, _)) => released.push(tag),
            None => break,
        }
    }
    assert_eq!(released, accepted, "messages lost, duplicated or reordered");
    assert_eq!(outbox.queued_bytes(), 0);
}
