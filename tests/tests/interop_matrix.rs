//! The writer × reader matrix: every pair of published SDKs streams 16 MiB of
//! deterministic bytes in uneven writes, with text messages interleaved, through our
//! engine. The reader's SHA-256 and the offset of every text message are checked.
//!
//! Rows (writers) and columns (readers) are `peer::all()`. To add "ours on tokio" and
//! "ours on smol", add their `Peer` implementations in `tests/src/interop/peer.rs` (see
//! the TODO there) and their cells here.

use iii_tests::interop::{checks, harness, peer};

fn cell(writer: &str, reader: &str, number: usize) {
    let h = harness();
    h.ensure(&[writer, reader]);
    h.block_on(checks::stream_cell(
        peer::by_name(writer),
        peer::by_name(reader),
        number,
    ));
}

macro_rules! cells {
    ($($name:ident: $writer:literal => $reader:literal, $n:literal;)*) => {
        $(
            #[test]
            fn $name() {
                cell($writer, $reader, $n);
            }
        )*
    };
}

cells! {
    py023_to_py023: "py023" => "py023", 0;
    py023_to_py025: "py023" => "py025", 1;
    py023_to_node: "py023" => "node", 2;
    py023_to_rs023: "py023" => "rs023", 3;
    py025_to_py023: "py025" => "py023", 4;
    py025_to_py025: "py025" => "py025", 5;
    py025_to_node: "py025" => "node", 6;
    py025_to_rs023: "py025" => "rs023", 7;
    node_to_py023: "node" => "py023", 8;
    node_to_py025: "node" => "py025", 9;
    node_to_node: "node" => "node", 10;
    node_to_rs023: "node" => "rs023", 11;
    rs023_to_py023: "rs023" => "py023", 12;
    rs023_to_py025: "rs023" => "py025", 13;
    rs023_to_node: "rs023" => "node", 14;
    rs023_to_rs023: "rs023" => "rs023", 15;
}

#[test]
fn the_matrix_covers_every_pair_of_peers() {
    // Keeps the cells above in step with `peer::all()`.
    let source = include_str!("interop_matrix.rs");
    for w in peer::all() {
        for r in peer::all() {
            let cell = format!(
                "{}_to_{}: \"{}\" => \"{}\"",
                w.name(),
                r.name(),
                w.name(),
                r.name()
            );
            assert!(source.contains(&cell), "missing matrix cell {cell}");
        }
    }
}
