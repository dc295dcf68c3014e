//! Listings as aligned, borderless tables (comfy-table), one row per JSON object.
//!
//! Columns name a field of the engine's objects and how to show it; a field the engine
//! does not send (another engine version, the reference engine) shows as `-`.

use std::time::Duration;

use comfy_table::{presets, CellAlignment, Table};
use indicatif::{HumanBytes, HumanDuration};
use serde_json::Value;

/// How a column shows its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Strings as they are, anything else as compact JSON.
    Text,
    /// A byte count (`12.5 MiB`), right-aligned.
    Bytes,
    /// A plain number, right-aligned.
    Number,
    /// Milliseconds as a duration (`3 minutes`).
    Millis,
    /// `yes` / `no`.
    Flag,
}

/// One column: its header, the object field it shows, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    /// The header (upper case by convention).
    pub(crate) header: &'static str,
    /// The field of each row object.
    pub(crate) field: &'static str,
    /// How the value is shown.
    pub(crate) format: Format,
}

impl Column {
    /// A column showing `field` under `header`.
    pub(crate) const fn new(header: &'static str, field: &'static str, format: Format) -> Self {
        Self {
            header,
            field,
            format,
        }
    }
}

/// What a missing or null value shows.
const ABSENT: &str = "-";

fn cell(value: Option<&Value>, format: Format) -> String {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return ABSENT.to_owned();
    };
    match (format, value) {
        (Format::Bytes, Value::Number(n)) => n
            .as_u64()
            .map_or_else(|| n.to_string(), |n| HumanBytes(n).to_string()),
        (Format::Millis, Value::Number(n)) => n.as_u64().map_or_else(
            || n.to_string(),
            |ms| HumanDuration(Duration::from_millis(ms)).to_string(),
        ),
        (Format::Flag, Value::Bool(flag)) => if *flag { "yes" } else { "no" }.to_owned(),
        (_, Value::String(text)) => text.clone(),
        (_, other) => other.to_string(),
    }
}

/// `rows` as a table with `columns`: a header line, then one line per row, columns
/// separated by two spaces, no borders. Text is never wrapped or cut.
pub(crate) fn render(columns: &[Column], rows: &[Value]) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(columns.iter().map(|c| c.header));
    for row in rows {
        table.add_row(columns.iter().map(|c| cell(row.get(c.field), c.format)));
    }
    for (index, column) in columns.iter().enumerate() {
        if let Some(table_column) = table.column_mut(index) {
            table_column.set_padding((0, 2));
            if matches!(
                column.format,
                Format::Bytes | Format::Number | Format::Millis
            ) {
                table_column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    if let Some(last) = table.column_mut(columns.len().saturating_sub(1)) {
        last.set_padding((0, 0));
    }
    let text = table.to_string();
    let mut lines: String = text
        .lines()
        .map(|line| line.trim_end().to_owned() + "\n")
        .collect();
    if lines.is_empty() {
        lines.push('\n');
    }
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COLUMNS: [Column; 4] = [
        Column::new("ID", "id", Format::Text),
        Column::new("BYTES", "bytes", Format::Bytes),
        Column::new("AGE", "age_ms", Format::Millis),
        Column::new("PAUSED", "paused", Format::Flag),
    ];

    #[test]
    fn rows_are_aligned_and_missing_fields_show_a_dash() {
        let rows = [
            json!({"id": "a", "bytes": 1536, "age_ms": 1000, "paused": true}),
            json!({"id": "longer-id", "bytes": null, "extra": 1}),
        ];
        assert_eq!(
            render(&COLUMNS, &rows),
            "ID            BYTES       AGE  PAUSED\n\
             a          1.50 KiB  1 second  yes\n\
             longer-id         -         -  -\n"
        );
    }

    #[test]
    fn an_empty_list_prints_only_the_header() {
        assert_eq!(render(&COLUMNS, &[]), "ID  BYTES  AGE  PAUSED\n");
    }

    #[test]
    fn other_values_show_as_compact_json() {
        let text = render(
            &[Column::new("META", "metadata", Format::Text)],
            &[json!({"metadata": {"a": [1, 2]}})],
        );
        assert_eq!(text, "META\n{\"a\":[1,2]}\n");
    }
}
