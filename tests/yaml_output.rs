//! What `preview` and `deploy -o yaml` print is read back the same by kubectl, whose YAML is
//! 1.1 (`on`, `yes`, `n`, `1:20` are not strings there): the real kubectl parses our output
//! (with the control plane for its discovery, and `--dry-run=server` so the API server
//! decodes it too).

use std::process::Command;

use e2e_tests::controlplane::ControlPlane;
use e2e_tests::{output_with_stdin, workspace_binary};
use serde_json::Value;

const TRICKY: [&str; 12] = [
    "on", "yes", "No", "OFF", "y", "N", "1:20", "=", "true", "null", "0777", "it's on",
];

#[test]
fn kubectl_reads_our_yaml_back_as_we_meant_it() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("yaml", &[]);
    let labels: serde_json::Map<String, Value> = TRICKY
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.contains(['\'', ' ', ':', '=']))
        .map(|(i, v)| (format!("l{i}"), Value::String((*v).into())))
        .chain([
            ("app".into(), "buildbot".into()),
            ("tier".into(), "worker".into()),
        ])
        .collect();
    let data: serde_json::Map<String, Value> = TRICKY
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("d{i}"), Value::String((*v).into())))
        .chain([("script".into(), "x: on\n  - yes\n".into())])
        .collect();
    let input = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "labels": labels},
         "spec": {"containers": [{"name": "worker", "image": "buildbot/buildbot-worker"}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data},
    ]});
    let yaml = output_with_stdin(
        Command::new(workspace_binary("kubectl-buildbot")).args(["preview", "-f", "-"]),
        &input.to_string(),
    )
    .unwrap_or_else(|e| panic!("preview: {e}"));
    let read = cp
        .kubectl_stdin(
            &[
                "create",
                "-n",
                &ns,
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
            ],
            &yaml,
        )
        .unwrap_or_else(|e| panic!("kubectl cannot read preview's YAML: {e}\n{yaml}"));
    // One JSON document per object.
    let items: Vec<Value> = serde_json::Deserializer::from_str(&read)
        .into_iter::<Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("{e}: {read}")))
        .collect();
    let pod_labels = items[0]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in &labels {
        assert_eq!(pod_labels.get(k), Some(v), "label {k}\n{yaml}");
    }
    assert_eq!(items[1]["data"], Value::Object(data), "{yaml}");
}
