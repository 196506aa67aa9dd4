//! Building an RFC 6902 JSON Patch that only ever adds what is absent.
//!
//! The builder keeps a working copy of the document and applies each operation to it as it
//! goes, so later rules see earlier ones (two labels into a missing `labels` map give one
//! `add` of the map, then one `add` of a key) and every patch is known to apply.

use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use serde_json::{Map, Value};

fn pointer(path: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(path.iter().copied())
}

pub(crate) struct PatchBuilder {
    doc: Value,
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    pub fn new(doc: Value) -> Self {
        Self {
            doc,
            ops: Vec::new(),
        }
    }

    /// The non-null value at `path`, if any.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = &self.doc;
        for token in path {
            cur = match cur {
                Value::Object(m) => m.get(*token)?,
                Value::Array(a) => a.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        (!cur.is_null()).then_some(cur)
    }

    /// Adds `value` at `path` unless a non-null value is already there, creating missing
    /// parent objects in the same operation. Returns whether anything was added; nothing is
    /// added when a parent exists but is not an object (a malformed document is left alone).
    pub fn add_if_absent(&mut self, path: &[&str], value: Value) -> bool {
        if self.get(path).is_some() {
            return false;
        }
        // The first missing (or null) ancestor is where the operation goes.
        let first_missing = (0..path.len())
            .find(|&i| self.get(&path[..=i]).is_none())
            .unwrap_or(path.len() - 1);
        if first_missing > 0 && !matches!(self.get(&path[..first_missing]), Some(Value::Object(_)))
        {
            return false;
        }
        if first_missing == 0 && !self.doc.is_object() {
            return false;
        }
        let nested = path[first_missing + 1..]
            .iter()
            .rev()
            .fold(value, |inner, key| {
                let mut m = Map::new();
                m.insert((*key).to_string(), inner);
                Value::Object(m)
            });
        self.push(pointer(&path[..=first_missing]), nested)
    }

    /// Sets `path` to `value`, replacing what is there (`add` replaces an existing member).
    /// Used only where a present value is known to be an API default, not a user's choice.
    pub fn set(&mut self, path: &[&str], value: Value) -> bool {
        match self.get(path) {
            Some(v) if *v == value => false,
            Some(_) => self.push(pointer(path), value),
            None => self.add_if_absent(path, value),
        }
    }

    /// Inserts `value` at `index` of the array at `path`, creating the array if absent.
    pub fn insert(&mut self, path: &[&str], index: usize, value: Value) -> bool {
        match self.get(path) {
            Some(Value::Array(a)) if index <= a.len() => {
                let mut ptr = pointer(path);
                ptr.push_back(index.to_string());
                self.push(ptr, value)
            }
            Some(_) => false,
            None => self.add_if_absent(path, Value::Array(vec![value])),
        }
    }

    fn push(&mut self, path: PointerBuf, value: Value) -> bool {
        let op = PatchOperation::Add(AddOperation { path, value });
        if json_patch::patch(&mut self.doc, std::slice::from_ref(&op)).is_err() {
            return false;
        }
        self.ops.push(op);
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
        assert!(b.insert(&["spec", "initContainers"], 0, json!({"name": "first"})));
        let mut c = PatchBuilder::new(json!({"spec": {}}));
        assert!(c.insert(&["spec", "initContainers"], 0, json!({"name": "first"})));
        assert_eq!(ops(&b.finish())[0]["path"], "/spec/initContainers/0");
        assert_eq!(
            ops(&c.finish())[0],
            json!({"op": "add", "path": "/spec/initContainers", "value": [{"name": "first"}]})
        );
    }
}
