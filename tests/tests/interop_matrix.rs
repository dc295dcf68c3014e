//! The writer × reader matrix: every pair of SDKs (published and ours) streams 16 MiB of
//! deterministic bytes in uneven writes, with text messages interleaved, through our
//! engine. The reader's SHA-256 and the offset of every text message are checked.
//!
//! Rows (writers) and columns (readers) are `peer::all()`: the four published SDKs and
//! our own worker SDK on tokio and on smol (36 cells).

use iii_tests::interop::peer;

iii_tests::matrix_cells! {
    py023_to_py023: "py023" => "py023", 0;
    py023_to_py025: "py023" => "py025", 1;
    py023_to_node: "py023" => "node", 2;
    py023_to_rs023: "py023" => "rs023", 3;
    py023_to_tokio: "py023" => "tokio", 4;
    py023_to_smol: "py023" => "smol", 5;
    py025_to_py023: "py025" => "py023", 6;
    py025_to_py025: "py025" => "py025", 7;
    py025_to_node: "py025" => "node", 8;
    py025_to_rs023: "py025" => "rs023", 9;
    py025_to_tokio: "py025" => "tokio", 10;
    py025_to_smol: "py025" => "smol", 11;
    node_to_py023: "node" => "py023", 12;
    node_to_py025: "node" => "py025", 13;
    node_to_node: "node" => "node", 14;
    node_to_rs023: "node" => "rs023", 15;
    node_to_tokio: "node" => "tokio", 16;
    node_to_smol: "node" => "smol", 17;
    rs023_to_py023: "rs023" => "py023", 18;
    rs023_to_py025: "rs023" => "py025", 19;
    rs023_to_node: "rs023" => "node", 20;
    rs023_to_rs023: "rs023" => "rs023", 21;
    rs023_to_tokio: "rs023" => "tokio", 22;
    rs023_to_smol: "rs023" => "smol", 23;
    tokio_to_py023: "tokio" => "py023", 24;
    tokio_to_py025: "tokio" => "py025", 25;
    tokio_to_node: "tokio" => "node", 26;
    tokio_to_rs023: "tokio" => "rs023", 27;
    tokio_to_tokio: "tokio" => "tokio", 28;
    tokio_to_smol: "tokio" => "smol", 29;
    smol_to_py023: "smol" => "py023", 30;
    smol_to_py025: "smol" => "py025", 31;
    smol_to_node: "smol" => "node", 32;
    smol_to_rs023: "smol" => "rs023", 33;
    smol_to_tokio: "smol" => "tokio", 34;
    smol_to_smol: "smol" => "smol", 35;
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
