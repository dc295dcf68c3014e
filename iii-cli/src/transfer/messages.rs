//! Text messages that arrive on a channel beside its bytes, written to standard error
//! in the `--messages` format (above the progress bar, which is redrawn after).

use std::io::Write;

use indicatif::ProgressBar;
use serde_json::json;

use crate::cli::MessageFormat;

/// One channel message as a line of `format`, or `None` when messages are dropped.
/// `offset` is the number of stream bytes received before the message.
pub(super) fn line(format: MessageFormat, offset: u64, text: &str) -> Option<String> {
    match format {
        MessageFormat::None => None,
        MessageFormat::Text => Some(format!("{}\n", text.strip_suffix('\n').unwrap_or(text))),
        MessageFormat::Json => Some(format!("{}\n", json!({"offset": offset, "text": text}))),
    }
}

/// Writes one message to standard error, suspending `bar` around it. A failing standard
/// error is ignored: messages are informational and must not end the transfer.
pub(super) fn show(bar: &ProgressBar, format: MessageFormat, offset: u64, text: &str) {
    if let Some(line) = line(format, offset, text) {
        bar.suspend(|| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_messages_are_lines() {
        assert_eq!(
            line(MessageFormat::Text, 0, "progress 50%").as_deref(),
            Some("progress 50%\n")
        );
        assert_eq!(
            line(MessageFormat::Text, 0, "done\n").as_deref(),
            Some("done\n")
        );
    }

    #[test]
    fn json_messages_carry_the_offset() {
        let line = line(MessageFormat::Json, 42, "a \"quoted\"\nline").expect("shown");
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value, json!({"offset": 42, "text": "a \"quoted\"\nline"}));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }

    #[test]
    fn none_drops_messages() {
        assert_eq!(line(MessageFormat::None, 0, "x"), None);
    }
}
