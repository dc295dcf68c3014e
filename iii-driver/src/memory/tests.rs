use super::*;
use futures_util::io::{AsyncReadExt, AsyncWriteExt, Cursor};

/// A masked client frame: `first` is the FIN/opcode byte.
fn frame(first: u8, payload_len: usize) -> Vec<u8> {
    let mut out = vec![first];
    match payload_len {
        0..=125 => out.push(0x80 | payload_len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[1, 2, 3, 4]);
    out.extend(std::iter::repeat_n(b'a', payload_len));
    out
}

#[test]
fn frames_are_followed_across_any_split() {
    let mut stream = frame(0x01, 300); // text, not final
    stream.extend(frame(0x89, 5)); // a ping between fragments
    stream.extend(frame(0x80, 70_000)); // the final continuation
    let whole = stream.len();
    for step in [1, 2, 3, 7, 100, 4096, whole] {
        let mut frames = Frames::default();
        let mut seen = 0;
        let mut max_held = 0;
        for piece in stream.chunks(step) {
            frames.observe(piece);
            seen += piece.len();
            max_held = max_held.max(frames.held());
            if seen == 308 {
                // The fragment's payload, moved to the message being assembled, and the
                // read buffer it leaves behind.
                assert_eq!(frames.held(), 600, "the first fragment is held twice");
            }
        }
        assert_eq!(
            frames.held(),
            70_000,
            "step {step}: the message is complete; its largest frame's buffer stays held"
        );
        assert!(max_held <= whole + 300, "step {step}");
        assert_eq!(frames.pings, 2 + 4 + 5, "step {step}: one ping seen");
    }
}

/// Found by the `upgrade_framing` fuzz target's per-connection cap: the headers of a
/// message's fragments were charged until its last fragment, so endless empty fragments
/// took the budget while the WebSocket layer held nothing.
#[test]
fn fragment_headers_are_not_held() {
    let mut frames = Frames::default();
    frames.observe(&frame(0x01, 0));
    for _ in 0..10_000 {
        frames.observe(&frame(0x00, 0));
    }
    assert_eq!(frames.held(), 0);
    frames.observe(&frame(0x00, 10)[..3]);
    assert_eq!(frames.held(), 3, "a header being read is held");
}

#[test]
fn bytes_in_progress_are_charged_and_given_back() {
    let budget = Arc::new(MemoryBudget::new(1 << 20));
    let mut data = frame(0x82, 100);
    let partial = frame(0x82, 50_000);
    data.extend_from_slice(&partial[..30_000]);
    let mut metered = Metered::new(
        Cursor::new(data),
        budget.clone(),
        Owner::default(),
        1 << 20,
        &[],
    )
    .unwrap();
    let mut buf = vec![0; 200_000];
    smol::block_on(async { while metered.read(&mut buf).await.unwrap() > 0 {} });
    // The partial message's payload (its 8-byte header is parsed, not held) and the
    // read buffer the first message's frame left behind.
    let held = 29_992 + 100;
    assert_eq!(metered.held(), held, "the partial message, the buffer");
    // Charged in grants: at least what is held, at most a quarter (16 KiB at least) more.
    let used = budget.snapshot().used;
    assert!(
        (held..=grant_for(held)).contains(&used),
        "{used} charged for {held}"
    );
    drop(metered);
    assert_eq!(budget.snapshot().used, 0);
    assert!(budget.snapshot().peak >= held);
}

#[test]
fn growth_past_the_budget_cuts_and_small_holdings_keep_the_reserve() {
    let budget = Arc::new(MemoryBudget::new(1 << 20));
    let big = frame(0x82, 2 << 20);
    let mut hoarder = Metered::new(
        Cursor::new(big),
        budget.clone(),
        Owner::default(),
        1 << 20,
        &[],
    )
    .unwrap();
    let mut buf = vec![0; 64 * 1024];
    let error = smol::block_on(async {
        loop {
            if let Err(error) = hoarder.read(&mut buf).await {
                return error;
            }
        }
    });
    assert_eq!(MemoryCut::of(&error), Some(MemoryCut::Budget));
    let held = budget.snapshot().used;
    assert!(held <= budget.policy().ceiling(usize::MAX), "{held}");
    // A small message still fits in the reserve.
    let small = frame(0x82, 60_000);
    let mut bystander = Metered::new(
        Cursor::new(small),
        budget.clone(),
        Owner::default(),
        1 << 20,
        &[],
    )
    .unwrap();
    smol::block_on(async { while bystander.read(&mut buf).await.unwrap() > 0 {} });
    assert_eq!(budget.snapshot().refused, 1);
    drop(hoarder);
    drop(bystander);
    assert_eq!(budget.snapshot().used, 0);
}

/// A socket that takes `budget` bytes, then nothing (`Pending`), and reads `input`.
struct Stuck {
    budget: usize,
    input: Cursor<Vec<u8>>,
}

impl AsyncRead for Stuck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stuck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.budget == 0 {
            return Poll::Pending;
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn unsent_output_is_charged_and_capped() {
    let budget = Arc::new(MemoryBudget::new(1 << 20));
    let stuck = Stuck {
        budget: 10,
        input: Cursor::new(Vec::new()),
    };
    let mut metered = Metered::new(stuck, budget.clone(), Owner::default(), 1000, &[]).unwrap();
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let offered = [7u8; 500];
    let wrote = Pin::new(&mut metered).poll_write(&mut cx, &offered);
    assert!(matches!(wrote, Poll::Ready(Ok(10))));
    assert_eq!(metered.held(), 490);
    assert_eq!(budget.snapshot().used, grant_for(490));
    assert!(Pin::new(&mut metered)
        .poll_write(&mut cx, &offered[10..])
        .is_pending());
    assert_eq!(budget.snapshot().used, grant_for(490));
    let more = [7u8; 1001];
    match Pin::new(&mut metered).poll_write(&mut cx, &more) {
        Poll::Ready(Err(error)) => assert_eq!(MemoryCut::of(&error), Some(MemoryCut::SlowConsumer)),
        other => panic!("not cut: {other:?}"),
    }
    assert_eq!(budget.snapshot().slow_consumers, 1);
    drop(metered);
    assert_eq!(budget.snapshot().used, 0);
}

#[test]
fn pings_while_nothing_is_written_cut_a_slow_consumer() {
    let budget = Arc::new(MemoryBudget::new(1 << 20));
    let mut pings = Vec::new();
    while pings.len() <= budget.policy().pong_room + 131 {
        pings.extend(frame(0x89, 125));
    }
    let stuck = Stuck {
        budget: 0,
        input: Cursor::new(pings.clone()),
    };
    let mut metered = Metered::new(stuck, budget.clone(), Owner::default(), 1 << 20, &[]).unwrap();
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(Pin::new(&mut metered)
        .poll_write(&mut cx, &[1; 127])
        .is_pending());
    let mut buf = [0; 131];
    let error = smol::block_on(async {
        loop {
            match metered.read(&mut buf).await {
                Ok(0) => panic!("never cut"),
                Ok(_) => {}
                Err(error) => return error,
            }
        }
    });
    assert_eq!(MemoryCut::of(&error), Some(MemoryCut::SlowConsumer));
    // A peer whose socket takes bytes may ping as it likes.
    let writable = Stuck {
        budget: usize::MAX,
        input: Cursor::new(pings),
    };
    let mut metered = Metered::new(writable, budget, Owner::default(), 1 << 20, &[]).unwrap();
    smol::block_on(async {
        metered.write_all(&[1; 127]).await.unwrap();
        while metered.read(&mut buf).await.unwrap() > 0 {}
    });
}

/// Replays the committed inputs of the `upgrade_framing` fuzz target (its driver can only
/// be reached from inside this crate; `tests/tests/corpus_replay.rs` replays the others).
#[test]
fn upgrade_framing_corpus_and_regressions_pass() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut seeds = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("upgrade_framing")) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for path in files {
            let data = std::fs::read(&path).expect("readable fuzz input");
            let result = std::panic::catch_unwind(|| super::fuzz::upgrade_framing(&data));
            assert!(result.is_ok(), "{} fails", path.display());
            seeds += usize::from(kind == "corpus");
        }
    }
    assert!(seeds > 0, "fuzz/corpus/upgrade_framing/ has no seed inputs");
}
