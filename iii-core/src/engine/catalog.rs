//! The function catalog as listings walk it: in display order (id, then namespace)
//! without sorting, and, for a session on an RBAC listener, over only the ids it may
//! see.
//!
//! Functions are kept by `(namespace, id)`. A trusted listing merges one ordered range
//! per namespace (and the engine's own functions) lazily, so a page costs what it skips
//! and shows, not a sort of every function. A guest's listing never looks at functions
//! it cannot see: its candidates are the ids its listener exposes (an index kept at
//! registration, from the `exposed_on` each function already computes), the ids its
//! policy names, and the engine's own functions, each checked once more by the same
//! rule that gates its calls.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::ops::Bound;

use serde::Serialize;
use serde_json::value::RawValue;

use super::builtins::BUILTINS;
use super::listing::ENGINE_FUNCTIONS_WORKER;
use super::rbac::INFRASTRUCTURE_FUNCTIONS;
use super::session::{FunctionSpec, DEFAULT_NAMESPACE};
use super::{Engine, FnKey};
use crate::ids::ConnId;

/// One row of `engine::functions::list` and of `engine::functions-available` payloads.
#[derive(Debug, Serialize)]
pub(super) struct FunctionRow<'a> {
    pub(super) function_id: &'a str,
    pub(super) namespace: &'a str,
    pub(super) worker_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) metadata: Option<&'a RawValue>,
    /// The input's format as registered (PROTOCOL.md's `request_format`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) request_format: Option<&'a RawValue>,
    /// The output's format as registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) response_format: Option<&'a RawValue>,
}

/// A function row with what it is filtered and ranked by.
pub(super) struct FunctionCandidate<'a> {
    pub(super) row: FunctionRow<'a>,
    pub(super) internal: bool,
    pub(super) search_text: Cow<'a, str>,
}

/// The default-namespace function ids each RBAC listener exposes, by listener index.
/// Kept in step with `function_specs` (every insert and removal goes through
/// [`Engine::insert_spec`] and [`Engine::remove_spec`]).
#[derive(Debug, Default)]
pub(super) struct ExposureIndex {
    by_listener: BTreeMap<usize, BTreeSet<String>>,
}

impl ExposureIndex {
    /// Records that `key` is exposed on `listeners` (only default-namespace functions
    /// can be called from an RBAC listener, so only they are indexed).
    fn insert(&mut self, key: &FnKey, listeners: &BTreeSet<usize>) {
        if key.0 != DEFAULT_NAMESPACE {
            return;
        }
        for listener in listeners {
            self.by_listener
                .entry(*listener)
                .or_default()
                .insert(key.1.clone());
        }
    }

    /// Forgets what [`ExposureIndex::insert`] recorded for `key`.
    fn remove(&mut self, key: &FnKey, listeners: &BTreeSet<usize>) {
        if key.0 != DEFAULT_NAMESPACE {
            return;
        }
        for listener in listeners {
            if let Some(ids) = self.by_listener.get_mut(listener) {
                ids.remove(&key.1);
                if ids.is_empty() {
                    self.by_listener.remove(listener);
                }
            }
        }
    }

    /// The ids `listener` exposes, in order.
    fn ids(&self, listener: usize) -> impl Iterator<Item = &str> {
        self.by_listener
            .get(&listener)
            .into_iter()
            .flat_map(|ids| ids.iter().map(String::as_str))
    }
}

/// The candidate row of a built-in.
fn builtin_candidate(id: &'static str, description: &'static str) -> FunctionCandidate<'static> {
    FunctionCandidate {
        row: FunctionRow {
            function_id: id,
            namespace: DEFAULT_NAMESPACE,
            worker_name: ENGINE_FUNCTIONS_WORKER,
            description: Some(description),
            metadata: None,
            request_format: None,
            response_format: None,
        },
        internal: true,
        search_text: Cow::Owned(format!("{id}\n{}", description.to_lowercase())),
    }
}

type Stream<'a> = Box<dyn Iterator<Item = FunctionCandidate<'a>> + 'a>;

/// A lazy k-way merge of streams that are each in (id, namespace) order; on ties the
/// earlier stream comes first.
struct Merge<'a> {
    streams: Vec<Stream<'a>>,
    heads: Vec<Option<FunctionCandidate<'a>>>,
    heap: BinaryHeap<Reverse<(&'a str, &'a str, usize)>>,
}

impl<'a> Merge<'a> {
    fn new(mut streams: Vec<Stream<'a>>) -> Self {
        let mut heads = Vec::with_capacity(streams.len());
        let mut heap = BinaryHeap::with_capacity(streams.len());
        for (index, stream) in streams.iter_mut().enumerate() {
            let head = stream.next();
            if let Some(c) = &head {
                heap.push(Reverse((c.row.function_id, c.row.namespace, index)));
            }
            heads.push(head);
        }
        Self {
            streams,
            heads,
            heap,
        }
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = FunctionCandidate<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((_, _, index)) = self.heap.pop()?;
        let taken = self.heads.get_mut(index)?.take();
        let next = self.streams.get_mut(index).and_then(Iterator::next);
        if let Some(c) = &next {
            self.heap
                .push(Reverse((c.row.function_id, c.row.namespace, index)));
        }
        if let Some(head) = self.heads.get_mut(index) {
            *head = next;
        }
        taken
    }
}

impl Engine {
    /// Stores `spec` for `key` (replacing any earlier one), keeping the exposure index
    /// in step.
    pub(super) fn insert_spec(&mut self, key: FnKey, spec: FunctionSpec) {
        self.remove_spec(&key);
        self.exposure_index.insert(&key, &spec.exposed_on);
        self.function_specs.insert(key, spec);
    }

    /// Removes the spec of `key`, keeping the exposure index in step.
    pub(super) fn remove_spec(&mut self, key: &FnKey) -> Option<FunctionSpec> {
        let spec = self.function_specs.remove(key)?;
        self.exposure_index.remove(key, &spec.exposed_on);
        Some(spec)
    }

    /// The candidate row of worker function `key` owned by `owner`.
    fn worker_candidate<'a>(
        &'a self,
        key: &'a FnKey,
        owner: ConnId,
    ) -> Option<FunctionCandidate<'a>> {
        let spec = self.function_specs.get(key)?;
        Some(FunctionCandidate {
            row: FunctionRow {
                function_id: &key.1,
                namespace: &key.0,
                worker_name: self.session(owner).map_or("", |s| s.display_name()),
                description: spec.description.as_deref(),
                metadata: spec.metadata.as_deref(),
                request_format: spec.request_format.as_deref(),
                response_format: spec.response_format.as_deref(),
            },
            internal: spec.internal,
            search_text: Cow::Borrowed(&spec.search_text),
        })
    }

    /// The namespaces that hold functions, in order (one range look-up each).
    fn namespaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut next = self.functions.keys().next();
        while let Some((namespace, _)) = next {
            out.push(namespace);
            // The least string greater than every id-key of this namespace.
            let after = (format!("{namespace}\0"), String::new());
            next = self
                .functions
                .range::<FnKey, _>((Bound::Included(after), Bound::Unbounded))
                .next()
                .map(|(key, _)| key);
        }
        out
    }

    /// Every function (workers' and the engine's) whose id starts with `prefix`, in
    /// (id, namespace) order, produced lazily.
    pub(super) fn ordered_candidates<'a>(
        &'a self,
        prefix: Option<&str>,
    ) -> impl Iterator<Item = FunctionCandidate<'a>> + 'a {
        let prefix = prefix.unwrap_or("").to_owned();
        let mut streams: Vec<Stream<'a>> = Vec::new();
        for namespace in self.namespaces() {
            let start = (namespace.to_owned(), prefix.clone());
            let prefix = prefix.clone();
            let range = self
                .functions
                .range::<FnKey, _>((Bound::Included(start), Bound::Unbounded))
                .take_while(move |(key, _)| key.0 == namespace && key.1.starts_with(&prefix))
                .filter_map(|(key, owner)| self.worker_candidate(key, *owner));
            streams.push(Box::new(range));
        }
        let mut builtins: Vec<FunctionCandidate<'static>> = BUILTINS
            .iter()
            .filter(|(id, _)| id.starts_with(&prefix))
            .map(|(id, description)| builtin_candidate(id, description))
            .collect();
        builtins.sort_by(|a, b| a.row.function_id.cmp(b.row.function_id));
        streams.push(Box::new(builtins.into_iter()));
        Merge::new(streams)
    }

    /// What `viewer`, a session of RBAC listener `listener`, may see, in id order: the
    /// ids the listener exposes, those `allowed` names, and the engine's own functions,
    /// each kept only if the viewer may call it. Costs what it may see, not what exists.
    pub(super) fn visible_candidates<'a>(
        &'a self,
        viewer: ConnId,
        listener: usize,
        allowed: &'a [String],
    ) -> Vec<FunctionCandidate<'a>> {
        let mut ids: BTreeSet<&str> = self.exposure_index.ids(listener).collect();
        ids.extend(allowed.iter().map(String::as_str));
        ids.extend(INFRASTRUCTURE_FUNCTIONS);
        ids.extend(BUILTINS.iter().map(|(id, _)| *id));
        let mut out = Vec::new();
        for id in ids {
            let key: FnKey = (DEFAULT_NAMESPACE.to_owned(), id.to_owned());
            if !self.may_call(viewer, &key) {
                continue;
            }
            if let Some((key, owner)) = self.functions.get_key_value(&key) {
                out.extend(self.worker_candidate(key, *owner));
            }
            if let Some((id, description)) = BUILTINS.iter().find(|(b, _)| *b == id) {
                out.push(builtin_candidate(id, description));
            }
        }
        out
    }
}
