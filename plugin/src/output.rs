//! Printing objects the way kubectl does: `-o yaml` as a `---` stream, `-o json` as one
//! object or a `List`, and unified diffs for `--diff`.

use serde_json::{json, Value};
use similar::TextDiff;

/// `-o` formats for object output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// Renders objects like `kubectl get -o yaml|json`.
pub fn render(objects: &[Value], format: Format) -> String {
    match format {
        Format::Yaml => objects
            .iter()
            .map(crate::yaml::to_string)
            .collect::<Vec<_>>()
            .join("---\n"),
        Format::Json => {
            let value = match objects {
                [one] => one.clone(),
                many => {
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": many})
                }
            };
            serde_json::to_string_pretty(&value).expect("JSON values serialise") + "\n"
        }
    }
}

/// A unified diff of one object's YAML, labelled like `kubectl diff`; empty when equal.
pub fn diff(id: &str, before: &Value, after: &Value) -> String {
    if before == after {
        return String::new();
    }
    let (a, b) = (
        render(std::slice::from_ref(before), Format::Yaml),
        render(std::slice::from_ref(after), Format::Yaml),
    );
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{id}"), &format!("b/{id}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_a_document_stream_and_json_a_list_when_many() {
        let objs = vec![
            json!({"kind": "A", "metadata": {"name": "a"}}),
            json!({"kind": "B"}),
        ];
        assert_eq!(
            render(&objs, Format::Yaml),
            "kind: A\nmetadata:\n  name: a\n---\nkind: B\n"
        );
        let list: Value = serde_json::from_str(&render(&objs, Format::Json)).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        let one: Value = serde_json::from_str(&render(&objs[..1], Format::Json)).unwrap();
        assert_eq!(one["kind"], "A");
    }

    #[test]
    fn diff_marks_added_lines_only() {
        let before = json!({"kind": "Pod", "spec": {"a": 1}});
        let after = json!({"kind": "Pod", "spec": {"a": 1, "b": 2}});
        let d = diff("Pod/p", &before, &after);
        assert!(d.starts_with("--- a/Pod/p\n+++ b/Pod/p\n"), "{d}");
        assert!(d.contains("+  b: 2\n"), "{d}");
        assert!(
            !d.lines()
                .any(|l| l.starts_with('-') && !l.starts_with("---")),
            "{d}"
        );
        assert_eq!(diff("Pod/p", &before, &before), "");
    }
}
