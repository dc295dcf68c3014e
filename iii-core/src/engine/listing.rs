//! The answers of the listing built-ins, built without parsing anything a worker sent.
//!
//! Each listing filters what the engine already keeps in order (specs computed at
//! registration; functions walked as [`super::catalog`] describes), ranks search hits,
//! and writes rows one by one into the answer until
//! `max_list_bytes` would be passed or the caller's `limit` is reached; the answer then
//! carries `next_offset`, the `offset` to ask for next. Stored payloads (metadata,
//! configs) are written as the raw text they arrived as.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::catalog::{FunctionCandidate, FunctionRow};
use super::triggers::Provider;
use super::Engine;
use crate::ids::ConnId;
use crate::wire::builtins::RESERVED_PREFIX;
use crate::wire::control::{null_payload, Payload};
use crate::Instant;

/// The name listings show as the owner of the engine's own functions (the reference
/// engine's in-process worker of the same functions has this name).
pub(super) const ENGINE_FUNCTIONS_WORKER: &str = "iii-engine-functions";

/// The name listings show as the provider of the engine's own trigger types (as the
/// reference engine does).
pub(super) const ENGINE_TRIGGERS_WORKER: &str = "engine";

/// Bytes kept free in a page for `],"next_offset":<n>}`.
const NEXT_OFFSET_ROOM: usize = 40;

/// Longest `config_summary` of `engine::registered-triggers::list`, in characters.
const CONFIG_SUMMARY_CHARS: usize = 80;

/// The inputs every listing understands (each uses the ones that apply to it; unknown
/// keys are ignored).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListInput {
    #[serde(default)]
    search: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    workers: Option<Vec<String>>,
    #[serde(default)]
    include_internal: Option<bool>,
    #[serde(default)]
    trigger_type: Option<String>,
    #[serde(default)]
    function_id: Option<String>,
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    status: Option<String>,
    /// Rows to skip (from a previous answer's `next_offset`).
    #[serde(default)]
    offset: Option<usize>,
    /// Most rows to return.
    #[serde(default)]
    limit: Option<usize>,
}

impl ListInput {
    fn include_internal(&self) -> bool {
        self.include_internal.unwrap_or(false)
    }

    fn needle(&self) -> Option<String> {
        self.search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase)
    }

    fn worker_matches(&self, name: &str) -> bool {
        let named = self.worker.is_some() || self.workers.as_ref().is_some_and(|w| !w.is_empty());
        !named
            || self.worker.as_deref() == Some(name)
            || self
                .workers
                .as_ref()
                .is_some_and(|workers| workers.iter().any(|w| w == name))
    }
}

#[derive(Debug, Serialize)]
struct WorkerRow<'a> {
    id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    runtime: &'a str,
    version: Option<&'a str>,
    os: Option<&'a str>,
    pid: Option<u64>,
    isolation: Option<&'a str>,
    namespace: &'a str,
    status: &'static str,
    function_count: usize,
    active_invocations: usize,
    connected_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct TriggerTypeRow<'a> {
    id: &'a str,
    namespace: &'a str,
    worker_name: &'a str,
    description: &'a str,
}

#[derive(Debug, Serialize)]
struct RegisteredTriggerRow<'a> {
    id: &'a str,
    trigger_type: &'a str,
    function_id: &'a str,
    worker_name: &'a str,
    config: &'a RawValue,
    config_summary: String,
}

/// Where a page starts and how long it may be.
#[derive(Debug, Clone, Copy)]
struct Page {
    offset: usize,
    limit: usize,
    max_bytes: usize,
}

/// Writes `{"<key>":[rows…](,"next_offset":n)?(,extra)?}` under the page's limits. A
/// row is always written if it is the first of the page, so every page makes progress.
fn paged<T: Serialize>(
    key: &str,
    rows: impl IntoIterator<Item = T>,
    page: Page,
    prefix: &str,
) -> Payload {
    let mut out = String::with_capacity(256);
    out.push('{');
    out.push_str(prefix);
    let _ = write!(out, "\"{key}\":[");
    let mut taken = 0usize;
    let mut next = None;
    for row in rows.into_iter().skip(page.offset) {
        if taken == page.limit {
            next = Some(page.offset.saturating_add(taken));
            break;
        }
        let Ok(text) = serde_json::to_string(&row) else {
            continue;
        };
        // Room for this row, the closing brackets and a `next_offset`.
        if taken > 0 && out.len() + text.len() + NEXT_OFFSET_ROOM > page.max_bytes {
            next = Some(page.offset.saturating_add(taken));
            break;
        }
        if taken > 0 {
            out.push(',');
        }
        out.push_str(&text);
        taken += 1;
    }
    out.push(']');
    if let Some(next) = next {
        let _ = write!(out, ",\"next_offset\":{next}");
    }
    out.push('}');
    RawValue::from_string(out).unwrap_or_else(|_| null_payload())
}

/// Ranks a search hit as the reference does: 0 when the needle anchors the id (prefix or
/// a whole `::` segment), 1 when the id contains it, 2 when only the description does.
fn search_rank(id: &str, needle: &str) -> u8 {
    let id = id.to_lowercase();
    if id.starts_with(needle) || id.split("::").any(|segment| segment == needle) {
        0
    } else if id.contains(needle) {
        1
    } else {
        2
    }
}

/// Compact JSON text of `raw` (whitespace outside strings removed), cut to
/// [`CONFIG_SUMMARY_CHARS`] characters with an ellipsis.
fn config_summary(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if !in_string && c.is_ascii_whitespace() {
            continue;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        if chars == CONFIG_SUMMARY_CHARS {
            out.push('…');
            return out;
        }
        out.push(c);
        chars += 1;
    }
    out
}

impl Engine {
    fn page(&self, input: &ListInput) -> Page {
        Page {
            offset: input.offset.unwrap_or(0),
            limit: input.limit.unwrap_or(usize::MAX).max(1),
            max_bytes: self.config.max_list_bytes,
        }
    }

    /// The display name of the worker on `conn`.
    fn worker_name(&self, conn: ConnId) -> &str {
        self.session(conn).map_or("", |s| s.display_name())
    }

    /// `engine::functions::list`. A trusted worker's page walks the catalog in order
    /// and stops when the page is full; a guest's walks only what it may see.
    pub(super) fn list_functions(&self, viewer: ConnId, input: &ListInput) -> Payload {
        let needle = input.needle();
        let policy = self.session(viewer).and_then(|s| s.policy.as_ref());
        let candidates: Box<dyn Iterator<Item = FunctionCandidate<'_>> + '_> = match policy {
            Some(policy) => Box::new(
                self.visible_candidates(viewer, policy.listener, &policy.allowed_functions)
                    .into_iter(),
            ),
            None => Box::new(self.ordered_candidates(input.prefix.as_deref())),
        };
        let matching = candidates
            .filter(|c| input.include_internal() || !c.internal)
            .filter(|c| {
                input
                    .prefix
                    .as_deref()
                    .is_none_or(|p| c.row.function_id.starts_with(p))
            })
            .filter(|c| input.worker_matches(c.row.worker_name))
            .filter(|c| needle.as_deref().is_none_or(|n| c.search_text.contains(n)));
        let Some(needle) = needle.as_deref() else {
            return paged("functions", matching.map(|c| c.row), self.page(input), "");
        };
        let mut rows: Vec<(u8, FunctionRow<'_>)> = matching
            .map(|c| (search_rank(c.row.function_id, needle), c.row))
            .collect();
        // Stable: ties keep id order.
        rows.sort_by_key(|(rank, _)| *rank);
        paged(
            "functions",
            rows.into_iter().map(|(_, row)| row),
            self.page(input),
            "",
        )
    }

    /// The payload of an `engine::functions-available` notification: every function,
    /// internal ones included, within `max_list_bytes`.
    pub(super) fn functions_available_payload(&self) -> Payload {
        let rows = self.ordered_candidates(None).map(|c| c.row);
        let page = Page {
            offset: 0,
            limit: usize::MAX,
            max_bytes: self.config.max_list_bytes,
        };
        paged("functions", rows, page, "\"event\":\"functions_changed\",")
    }

    /// `engine::workers::list`.
    pub(super) fn list_workers(&self, now: Instant, viewer: ConnId, input: &ListInput) -> Payload {
        let needle = input.needle();
        // An untrusted worker sees itself only: look it up rather than walk everyone.
        let conns: Box<dyn Iterator<Item = ConnId> + '_> = if self.is_untrusted(viewer) {
            Box::new(std::iter::once(viewer))
        } else {
            Box::new(self.workers.values().copied())
        };
        let rows = conns
            .filter_map(|conn| Some((conn, self.session(conn)?)))
            .filter(|(_, s)| {
                needle
                    .as_deref()
                    .is_none_or(|n| s.display_name().to_lowercase().contains(n))
            })
            .filter(|(_, s)| {
                input
                    .runtime
                    .as_deref()
                    .is_none_or(|r| s.meta.runtime.as_deref() == Some(r))
            })
            .filter(|_| input.status.as_deref().is_none_or(|s| s == "connected"))
            .map(|(conn, session)| WorkerRow {
                id: &session.worker_id,
                name: session.display_name(),
                description: session.meta.description.as_deref(),
                runtime: session.meta.runtime.as_deref().unwrap_or("unknown"),
                version: session.meta.version.as_deref(),
                os: session.meta.os.as_deref(),
                pid: session.meta.pid,
                isolation: session.meta.isolation.as_deref(),
                namespace: &session.namespace,
                status: "connected",
                function_count: session.functions.len(),
                active_invocations: self.active_invocations(conn),
                connected_ms: session
                    .connected_at
                    .map(|at| now.saturating_duration_since(at).as_millis() as u64),
            });
        paged("workers", rows, self.page(input), "")
    }

    /// `engine::triggers::list`: trigger types.
    pub(super) fn list_trigger_types(&self, viewer: ConnId, input: &ListInput) -> Payload {
        let needle = input.needle();
        let policy = self.session(viewer).and_then(|s| s.policy.as_ref());
        let rows = self
            .triggers
            .types
            .iter()
            .filter(|(key, _)| policy.is_none_or(|p| p.may_use_trigger_type(&key.1)))
            .map(|(key, trigger_type)| TriggerTypeRow {
                id: &key.1,
                namespace: &key.0,
                worker_name: match trigger_type.provider {
                    Provider::Engine => ENGINE_TRIGGERS_WORKER,
                    Provider::Worker(conn) => self.worker_name(conn),
                },
                description: &trigger_type.description,
            })
            .filter(|row| input.include_internal() || !row.id.starts_with(RESERVED_PREFIX))
            .filter(|row| {
                input
                    .prefix
                    .as_deref()
                    .is_none_or(|p| row.id.starts_with(p))
            })
            .filter(|row| input.worker_matches(row.worker_name))
            .filter(|row| {
                needle.as_deref().is_none_or(|n| {
                    row.id.to_lowercase().contains(n) || row.description.to_lowercase().contains(n)
                })
            });
        paged("triggers", rows, self.page(input), "")
    }

    /// `engine::registered-triggers::list`: trigger bindings, by id.
    pub(super) fn list_bindings(&self, viewer: ConnId, input: &ListInput) -> Payload {
        let needle = input.needle();
        // An untrusted worker sees its own bindings only, never another's config: walk
        // its own ids (in the same order) rather than every binding.
        let all = &self.triggers.bindings;
        let untrusted = self.is_untrusted(viewer);
        let bindings: Box<dyn Iterator<Item = _> + '_> =
            match self.session(viewer).filter(|s| s.policy.is_some()) {
                Some(own) => Box::new(
                    own.bindings
                        .iter()
                        .filter_map(|id| all.get_key_value(id))
                        .filter(move |(_, binding)| binding.owner == viewer),
                ),
                None => Box::new(all.iter()),
            };
        let rows = bindings
            .map(|(id, binding)| {
                let worker_name = self
                    .functions
                    .get(&binding.function)
                    .map_or("", |owner| self.worker_name(*owner));
                RegisteredTriggerRow {
                    // A guest sees its bindings by the ids it gave them.
                    id: match untrusted {
                        true => binding.local_id.as_deref().unwrap_or(id),
                        false => id,
                    },
                    trigger_type: &binding.trigger_type,
                    function_id: &binding.function.1,
                    worker_name,
                    config: &binding.config,
                    config_summary: String::new(),
                }
            })
            .filter(|row| input.include_internal() || !row.function_id.starts_with(RESERVED_PREFIX))
            .filter(|row| {
                input
                    .trigger_type
                    .as_deref()
                    .is_none_or(|t| row.trigger_type == t)
            })
            .filter(|row| {
                input
                    .function_id
                    .as_deref()
                    .is_none_or(|f| row.function_id == f)
            })
            .filter(|row| input.worker.as_deref().is_none_or(|w| row.worker_name == w))
            .filter(|row| {
                needle.as_deref().is_none_or(|n| {
                    [row.id, row.trigger_type, row.function_id]
                        .iter()
                        .any(|h| h.to_lowercase().contains(n))
                })
            })
            .map(|row| RegisteredTriggerRow {
                config_summary: config_summary(row.config.get()),
                ..row
            });
        paged("registered_triggers", rows, self.page(input), "")
    }

    /// `engine::channels::list`.
    pub(super) fn list_channels(&self, now: Instant, viewer: ConnId, input: &ListInput) -> Payload {
        // An untrusted worker sees the channels it created: walk those (in the same
        // order) rather than every channel.
        let channels: Box<dyn Iterator<Item = _> + '_> = if self.is_untrusted(viewer) {
            let own = self.channels_by_owner.get(&viewer).into_iter().flatten();
            Box::new(
                own.filter_map(|id| self.channels.get(id))
                    .filter(move |c| c.owner_conn == Some(viewer)),
            )
        } else {
            Box::new(self.channels.values())
        };
        let rows = channels.map(|c| {
            let owner_name = c
                .owner_conn
                .and_then(|conn| self.session(conn)?.meta.name.clone());
            c.info(Some(now), owner_name)
        });
        paged("channels", rows, self.page(input), "")
    }

    /// True when `conn` is a session of an RBAC listener.
    fn is_untrusted(&self, conn: ConnId) -> bool {
        self.session(conn).is_some_and(|s| s.policy.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_cut_at_row_boundaries_and_say_where_to_continue() {
        let rows = (0..10).map(|i| format!("row{i}"));
        let page = Page {
            offset: 2,
            limit: 3,
            max_bytes: 1 << 20,
        };
        let answer = paged("xs", rows.clone(), page, "");
        assert_eq!(
            answer.get(),
            r#"{"xs":["row2","row3","row4"],"next_offset":5}"#
        );
        let small = Page {
            offset: 0,
            limit: usize::MAX,
            max_bytes: 20 + NEXT_OFFSET_ROOM,
        };
        assert_eq!(
            paged("xs", rows.clone(), small, "").get(),
            r#"{"xs":["row0","row1"],"next_offset":2}"#
        );
        let tiny = Page {
            offset: 9,
            limit: usize::MAX,
            max_bytes: 1,
        };
        assert_eq!(paged("xs", rows, tiny, "").get(), r#"{"xs":["row9"]}"#);
        let empty: [u8; 0] = [];
        let page = Page {
            offset: 0,
            limit: 1,
            max_bytes: 10,
        };
        assert_eq!(
            paged("xs", empty, page, "\"a\":1,").get(),
            r#"{"a":1,"xs":[]}"#
        );
    }

    #[test]
    fn config_summaries_are_compact_and_cut() {
        assert_eq!(config_summary(r#"{ "a" : "x y" }"#), r#"{"a":"x y"}"#);
        let long = format!(r#"{{"k":"{}"}}"#, "v".repeat(200));
        let summary = config_summary(&long);
        assert_eq!(summary.chars().count(), CONFIG_SUMMARY_CHARS + 1);
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn search_ranks_anchor_the_id() {
        assert_eq!(search_rank("state::get", "state"), 0);
        assert_eq!(search_rank("a::state::get", "state"), 0);
        assert_eq!(search_rank("mystate", "state"), 1);
        assert_eq!(search_rank("other", "state"), 2);
    }
}
