//! The progress bar of a transfer (indicatif): bytes, rate and, when the size is known,
//! percentage and ETA. Drawn on standard error only when it is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// With a known size.
const SIZED: &str =
    "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}";
/// Without one.
const UNSIZED: &str = "{spinner} {elapsed_precise} {bytes} {binary_bytes_per_sec} {msg}";

/// A bar for `size` bytes (unknown: `None`), hidden when `disabled` or when standard
/// error is not a terminal.
pub(super) fn bar(size: Option<u64>, disabled: bool) -> ProgressBar {
    if disabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (template, bar) = match size {
        Some(size) => (SIZED, ProgressBar::new(size)),
        None => (UNSIZED, ProgressBar::no_length()),
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse() {
        assert!(ProgressStyle::with_template(SIZED).is_ok());
        assert!(ProgressStyle::with_template(UNSIZED).is_ok());
    }

    #[test]
    fn a_disabled_bar_is_hidden() {
        assert!(bar(Some(10), true).is_hidden());
    }
}
