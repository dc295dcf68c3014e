//! The README's quick start is the `quickstart` example, so it is compiled with every build;
//! this keeps the two identical.

#[test]
fn readme_quick_start_matches_the_quickstart_example() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/quickstart.rs");
    let start = readme
        .find("```rust\nuse std::time::Duration;\n\nuse iii_tokio::worker::{connect")
        .expect("the quick start block")
        + "```rust\n".len();
    let end = start + readme[start..].find("```").expect("end of the block");
    let block = &readme[start..end];
    assert!(
        example.ends_with(block),
        "README quick start and examples/quickstart.rs differ"
    );
}
