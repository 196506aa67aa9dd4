//! The autoscaling objects `scale --auto` applies, against their schemas: the HPA with the
//! real kubernetes-validate, the ScaledObject with KEDA's CRD schema (npm package
//! @kubernetes-models/keda, installed by .ci/tools).

use std::process::Command;

use e2e_tests::{kubernetes_validate, output_of, repo_root, tool};
use kubectl_buildbot::deploy::DeploySpec;
use kubectl_buildbot::scaling::{hpa, scale_object, scaled_object};
use serde_json::Value;

/// Validates ScaledObjects with KEDA's schema in node; Err(message) when one is invalid.
fn keda_validate(object: &Value) -> Result<(), String> {
    tool("helm"); // makes sure .ci/tools ran
    let node_modules = repo_root().join(".ci/cache/node/node_modules");
    let script =
        "import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';\n\
                  const input = JSON.parse(process.argv[2]);\n\
                  try { new ScaledObject(input).validate(); console.log('valid'); }\n\
                  catch (e) { console.error(e.message); process.exit(1); }\n";
    let dir = repo_root().join(".ci/cache/node");
    let path = dir.join(format!("validate-{}.mjs", std::process::id()));
    std::fs::write(&path, script).unwrap();
    let result = output_of(
        Command::new("node")
            .arg(&path)
            .arg(object.to_string())
            .env("NODE_PATH", node_modules)
            .current_dir(&dir),
    );
    let _ = std::fs::remove_file(&path);
    result.map(|_| ())
}

#[test]
fn the_hpa_and_scale_validate_against_the_kubernetes_schemas() {
    let spec = DeploySpec::new("bb", "ci");
    let out =
        kubernetes_validate(&[hpa(&spec, 1, 8, 70)], "1.34.0").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("passed for resource horizontalpodautoscaler/bb-worker"),
        "{out}"
    );
    // Scale is a subresource kind the validator has no schema for: check its shape here.
    let s = scale_object(&spec, 3);
    assert_eq!(
        (
            s["apiVersion"].as_str(),
            s["kind"].as_str(),
            &s["spec"]["replicas"]
        ),
        (Some("autoscaling/v1"), Some("Scale"), &Value::from(3))
    );
}

#[test]
fn the_scaled_object_validates_against_kedas_schema() {
    let spec = DeploySpec::new("bb", "ci");
    keda_validate(&scaled_object(&spec, 0, 6, 2)).unwrap_or_else(|e| panic!("{e}"));
    // And the schema does catch mistakes, so the line above can fail.
    let mut broken = scaled_object(&spec, 0, 6, 2);
    broken["spec"]["maxReplicaCount"] = "many".into();
    broken["spec"]["triggers"] = Value::Null;
    let err = keda_validate(&broken).unwrap_err();
    assert!(
        err.contains("maxReplicaCount") || err.contains("triggers"),
        "{err}"
    );
}
