//! The `credit` target.

use std::collections::VecDeque;

use crate::{Input, MAX_OPS};

use bytes::Bytes;

use iii_core::outbox::Outbox;
use iii_core::wire::Message;

/// `credit`: arbitrary push / release / sent / take_credit sequences on one [`Outbox`],
/// checked step by step against a model: in-flight never exceeds the credit, queued and
/// in-flight counts and bytes match, pushes overflow exactly when the bytes pending
/// (queued and in flight) say so, and every accepted message is released once, in order.
pub fn credit(data: &[u8]) {
    let mut input = Input::new(data);
    let asked = input.below(5);
    let credit = asked.max(1);
    let mut outbox = Outbox::new(asked);
    let mut queue: VecDeque<(u32, usize)> = VecDeque::new();
    // The bytes of each message in flight, oldest first (0: credit taken around the queue).
    let mut in_flight: VecDeque<usize> = VecDeque::new();
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
                let pending = queued + in_flight.iter().sum::<usize>();
                let fits = pending == 0 || pending.saturating_add(len) <= limit;
                let pushed = outbox.push(Message::Binary(Bytes::from(body)), limit);
                assert_eq!(pushed.is_ok(), fits, "push of {len} with limit {limit}");
                if fits {
                    queue.push_back((next_tag, len));
                    accepted.push(next_tag);
                }
                next_tag += 1;
            }
            2 => {
                if let Some((tag, len)) = release(&mut outbox, &mut queue, in_flight.len()) {
                    in_flight.push_back(len);
                    released.push(tag);
                }
            }
            3 => {
                let count = match input.below(3) {
                    0 => usize::MAX,
                    _ => input.below(4),
                };
                let returned = count.min(in_flight.len());
                assert_eq!(outbox.sent(count), returned, "sent({count})");
                in_flight.drain(..returned);
            }
            4 => {
                let expected = in_flight.len() < credit;
                assert_eq!(outbox.take_credit(), expected, "take_credit");
                if expected {
                    in_flight.push_back(0);
                }
            }
            _ => assert_eq!(outbox.has_credit(), in_flight.len() < credit),
        }
        assert!(outbox.in_flight() <= credit, "in flight over credit");
        assert_eq!(outbox.in_flight(), in_flight.len(), "in-flight count");
        let flying: usize = in_flight.iter().sum();
        assert_eq!(outbox.in_flight_bytes(), flying, "in-flight bytes");
        assert_eq!(outbox.queued(), queue.len(), "queued count");
        let queued: usize = queue.iter().map(|(_, l)| l).sum();
        assert_eq!(outbox.queued_bytes(), queued, "queued bytes");
    }
    // Return all credit and drain: every accepted message comes out exactly once, in order.
    loop {
        outbox.sent(usize::MAX);
        match release(&mut outbox, &mut queue, 0) {
            Some((tag, _)) => released.push(tag),
            None => break,
        }
    }
    assert_eq!(released, accepted, "messages lost, duplicated or reordered");
    assert_eq!(outbox.queued_bytes(), 0);
}
