//! Building an RFC 6902 JSON Patch that only ever adds what is absent.
//!
//! The builder keeps a working copy of the document and applies each operation to it as it
//! goes, so later rules see earlier ones (two labels into a missing `labels` map give one
//! `add` of the map, then one `add` of a key) and every patch is known to apply.

use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use serde_json::{Map, Value};

/// The parts of a typed pod the rules write into, with every ancestor and array index as in
/// the full document: what [`PatchBuilder`] needs to know what exists, without serialising
/// the whole pod (env, volumes and the like are never written). Must list every path the
/// rules add to; the property test compares it with the full serialisation.
fn to<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// `metadata_present`: whether the document has `metadata`. An empty typed ObjectMeta may
/// come from a document without it: then it is left out, so the first label adds `/metadata`
/// whole (which also replaces an empty `{}`); when the document has it, labels are added
/// inside it, never replacing it.
pub(crate) fn skeleton(pod: &k8s_openapi::api::core::v1::Pod, metadata_present: bool) -> Value {
    let mut doc = Map::new();
    if metadata_present {
        let mut meta = Map::new();
        if let Some(labels) = &pod.metadata.labels {
            meta.insert("labels".into(), to(labels));
        }
        if let Some(annotations) = &pod.metadata.annotations {
            meta.insert("annotations".into(), to(annotations));
        }
        doc.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(spec) = &pod.spec {
        let mut s = Map::new();
        if let Some(sc) = &spec.security_context {
            s.insert("securityContext".into(), to(sc));
        }
        if let Some(grace) = spec.termination_grace_period_seconds {
            s.insert("terminationGracePeriodSeconds".into(), grace.into());
        }
        if let Some(init) = &spec.init_containers {
            let init = init.iter().map(container_skeleton).collect();
            s.insert("initContainers".into(), Value::Array(init));
        }
        let containers = spec.containers.iter().map(container_skeleton).collect();
        s.insert("containers".into(), Value::Array(containers));
        doc.insert("spec".into(), Value::Object(s));
    }
    Value::Object(doc)
}

/// A container's parts that the rules write into (init containers and app containers alike).
fn container_skeleton(c: &k8s_openapi::api::core::v1::Container) -> Value {
    let mut m = Map::new();
    if let Some(r) = &c.resources {
        m.insert("resources".into(), to(r));
    }
    if let Some(l) = &c.lifecycle {
        m.insert("lifecycle".into(), to(l));
    }
    if let Some(sc) = &c.security_context {
        m.insert("securityContext".into(), to(sc));
    }
    Value::Object(m)
}

/// The JSON pointer of `path`, written in one allocation (`~` and `/` escaped).
fn pointer(path: &[&str]) -> PointerBuf {
    let mut s = String::with_capacity(path.iter().map(|t| t.len() + 1).sum::<usize>() + 4);
    for token in path {
        s.push('/');
        if !token.bytes().any(|b| b == b'~' || b == b'/') {
            s.push_str(token); // most tokens: nothing to escape
            continue;
        }
        let mut rest = *token;
        while let Some(at) = rest.find(['~', '/']) {
            s.push_str(&rest[..at]);
            s.push_str(if rest.as_bytes()[at] == b'~' {
                "~0"
            } else {
                "~1"
            });
            rest = &rest[at + 1..];
        }
        s.push_str(rest);
    }
    PointerBuf::parse(s).unwrap_or_else(|_| PointerBuf::from_tokens(path.iter().copied()))
}

/// A JSON object of `entries`, the values moved in (`json!` would copy each through a
/// serializer).
pub(crate) fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// The member or element `token` of `v`, when `v` has it.
fn child<'v>(v: &'v Value, token: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => a.get(token.parse::<usize>().ok()?),
        _ => None,
    }
}

pub(crate) struct PatchBuilder {
    doc: Value,
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    pub fn new(doc: Value) -> Self {
        Self {
            doc,
            // A worker's patch has ten operations: room for them, not three regrowths.
            ops: Vec::with_capacity(16),
        }
    }

    /// The non-null value at `path`, if any.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        match self.deepest(path) {
            (n, v) if n == path.len() => Some(v),
            _ => None,
        }
    }

    /// How many leading tokens of `path` lead to a non-null value, and that value (the
    /// document itself for none).
    fn deepest(&self, path: &[&str]) -> (usize, &Value) {
        let mut cur = &self.doc;
        for (n, token) in path.iter().enumerate() {
            match child(cur, token) {
                Some(v) if !v.is_null() => cur = v,
                _ => return (n, cur),
            }
        }
        (path.len(), cur)
    }

    /// Adds `value` at `path` unless a non-null value is already there, creating missing
    /// parent objects in the same operation. Returns whether anything was added; nothing is
    /// added when a parent exists but is not an object (a malformed document is left alone).
    pub fn add_if_absent(&mut self, path: &[&str], value: Value) -> bool {
        self.add(path, value, None)
    }

    /// [`Self::add_if_absent`] for a value no rule reads or adds into afterwards (the preStop
    /// hook, the chown init container): the working copy keeps an empty object in its place,
    /// not a copy of it.
    pub fn add_opaque_if_absent(&mut self, path: &[&str], value: Value) -> bool {
        self.add(path, value, Some(Value::Object(Map::new())))
    }

    /// Adds `value` as [`Self::add_if_absent`] does; the working copy gets `kept` in its place
    /// when given, else a copy.
    fn add(&mut self, path: &[&str], value: Value, kept: Option<Value>) -> bool {
        // The first missing (or null) member is where the operation goes, into an object.
        let (first_missing, parent) = self.deepest(path);
        if first_missing == path.len() || !parent.is_object() {
            return false;
        }
        let missing = &path[first_missing + 1..];
        let nest = |value: Value| {
            missing.iter().rev().fold(value, |inner, key| {
                let mut m = Map::new();
                m.insert((*key).to_string(), inner);
                Value::Object(m)
            })
        };
        let kept = kept.map(nest);
        self.push(&path[..=first_missing], nest(value), kept)
    }

    /// Sets `path` to `value`, replacing what is there (`add` replaces an existing member).
    /// Used only where a present value is known to be an API default, not a user's choice.
    pub fn set(&mut self, path: &[&str], value: Value) -> bool {
        match self.get(path) {
            Some(v) if *v == value => false,
            Some(_) => self.push(path, value, None),
            None => self.add_if_absent(path, value),
        }
    }

    /// Inserts `value` at `index` of the array at `path`, creating the array if absent. The
    /// value is opaque, as for [`Self::add_opaque_if_absent`]; the array is not.
    pub fn insert_opaque(&mut self, path: &[&str], index: usize, value: Value) -> bool {
        let opaque = || Value::Object(Map::new());
        match self.get(path) {
            Some(Value::Array(a)) if index <= a.len() => {
                let index = index.to_string();
                let full: Vec<&str> = path.iter().copied().chain([index.as_str()]).collect();
                self.push(&full, value, Some(opaque()))
            }
            Some(_) => false,
            None => self.add(
                path,
                Value::Array(vec![value]),
                Some(Value::Array(vec![opaque()])),
            ),
        }
    }

    /// Records `add path value` and applies it to the working copy (`kept` in its place when
    /// given, else a copy), navigating by the tokens already at hand (parsing the pointer
    /// back, as `json_patch::patch` would, costs a third of an evaluation). The tests apply
    /// every emitted patch with `json_patch` itself.
    fn push(&mut self, path: &[&str], value: Value, kept: Option<Value>) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let mut cur = &mut self.doc;
        for token in parent {
            cur = match cur {
                Value::Object(m) => match m.get_mut(*token) {
                    Some(v) => v,
                    None => return false,
                },
                Value::Array(a) => match token.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    Some(v) => v,
                    None => return false,
                },
                _ => return false,
            };
        }
        let kept = kept.unwrap_or_else(|| value.clone());
        match cur {
            Value::Object(m) => {
                m.insert((*last).to_string(), kept);
            }
            Value::Array(a) => match last.parse::<usize>() {
                Ok(i) if i <= a.len() => a.insert(i, kept),
                _ => return false,
            },
            _ => return false,
        }
        self.ops.push(PatchOperation::Add(AddOperation {
            path: pointer(path),
            value,
        }));
        true
    }

    pub fn finish(self) -> Patch {
        Patch(self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(p: &Patch) -> Value {
        serde_json::to_value(p).unwrap()
    }

    #[test]
    fn creates_missing_parents_in_one_operation_then_adds_keys() {
        let mut b = PatchBuilder::new(json!({"metadata": {"name": "x"}}));
        assert!(b.add_if_absent(
            &["metadata", "labels", "app.kubernetes.io/name"],
            json!("buildbot")
        ));
        assert!(b.add_if_absent(
            &["metadata", "labels", "app.kubernetes.io/component"],
            json!("worker")
        ));
        assert!(!b.add_if_absent(&["metadata", "name"], json!("y")));
        assert_eq!(
            ops(&b.finish()),
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {"app.kubernetes.io/name": "buildbot"}},
                {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1component", "value": "worker"},
            ])
        );
    }

    #[test]
    fn null_counts_as_absent_and_is_replaced() {
        let mut b = PatchBuilder::new(json!({"metadata": {"labels": null}}));
        assert!(b.add_if_absent(&["metadata", "labels", "a"], json!("b")));
        let mut doc = json!({"metadata": {"labels": null}});
        json_patch::patch(&mut doc, &b.finish()).unwrap();
        assert_eq!(doc, json!({"metadata": {"labels": {"a": "b"}}}));
    }

    #[test]
    fn never_writes_through_a_non_object() {
        let mut b = PatchBuilder::new(json!({"spec": "oops"}));
        assert!(!b.add_if_absent(&["spec", "securityContext", "fsGroup"], json!(1000)));
        assert!(b.finish().0.is_empty());
    }

    #[test]
    fn inserts_into_existing_or_new_arrays() {
        let mut b = PatchBuilder::new(json!({"spec": {"initContainers": [{"name": "a"}]}}));
        assert!(b.insert_opaque(&["spec", "initContainers"], 0, json!({"name": "first"})));
        let mut c = PatchBuilder::new(json!({"spec": {}}));
        assert!(c.insert_opaque(&["spec", "initContainers"], 0, json!({"name": "first"})));
        // The working copy knows the array's length, not what the element holds.
        assert_eq!(c.get(&["spec", "initContainers"]), Some(&json!([{}])));
        assert!(!c.add_opaque_if_absent(&["spec", "initContainers", "0"], json!({"x": 1})));
        assert_eq!(ops(&b.finish())[0]["path"], "/spec/initContainers/0");
        assert_eq!(
            ops(&c.finish())[0],
            json!({"op": "add", "path": "/spec/initContainers", "value": [{"name": "first"}]})
        );
    }
}
