//! `kubectl-buildbot preview`: the webhook's mutations applied to manifests offline.
//!
//! Pure: YAML text in, mutated objects out. Pods and the pod templates of the workload
//! kinds are evaluated with the same [`buildbot_policy::evaluate_json`] the webhook
//! calls; every other object passes through untouched.

use buildbot_policy::{evaluate_json_in, Change, PodSecurityLevel, Policy};
use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use serde::Deserialize;
use serde_json::Value;

/// One object of the input, with what the policy did to it.
#[derive(Debug, Clone)]
pub struct Previewed {
    /// `Kind/name` for messages.
    pub id: String,
    pub before: Value,
    pub after: Value,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl Previewed {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Input that cannot be previewed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("{source_name}: document {index}: invalid YAML: {error}")]
    Yaml {
        source_name: String,
        index: usize,
        error: serde_yaml::Error,
    },
    #[error("{source_name}: document {index} is not a Kubernetes object (expected a mapping with apiVersion and kind)")]
    NotAnObject { source_name: String, index: usize },
    #[error("{source_name}: {id}: the pod template is not a valid pod spec: {error}")]
    BadTemplate {
        source_name: String,
        id: String,
        error: serde_json::Error,
    },
}

/// Where the pod template of a kind lives, if it has one.
pub fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Parses a multi-document YAML (or JSON) stream into objects, skipping empty documents and
/// flattening `kind: List` (also a List of Lists, as some tools write).
pub fn parse_stream(text: &str, source_name: &str) -> Result<Vec<Value>, PreviewError> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = Value::deserialize(doc).map_err(|error| PreviewError::Yaml {
            source_name: source_name.into(),
            index,
            error,
        })?;
        if value.is_null() {
            continue;
        }
        flatten(value, source_name, index, 0, &mut objects)?;
    }
    Ok(objects)
}

/// How deep `kind: List` may nest in `kind: List` (kubectl's own output never nests).
const MAX_LIST_DEPTH: usize = 8;

/// One document's objects: itself, or the items of a `kind: List`, recursively.
fn flatten(
    value: Value,
    source_name: &str,
    index: usize,
    depth: usize,
    objects: &mut Vec<Value>,
) -> Result<(), PreviewError> {
    let not_an_object = || PreviewError::NotAnObject {
        source_name: source_name.into(),
        index,
    };
    let Value::Object(mut m) = value else {
        return Err(not_an_object());
    };
    if !m.contains_key("kind") {
        return Err(not_an_object());
    }
    if m.get("kind").and_then(Value::as_str) != Some("List") {
        objects.push(Value::Object(m));
        return Ok(());
    }
    if depth >= MAX_LIST_DEPTH {
        return Err(not_an_object());
    }
    let items = match m.remove("items") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(not_an_object()),
    };
    for item in items {
        flatten(item, source_name, index, depth + 1, objects)?;
    }
    Ok(())
}

/// `Kind/name` (or `Kind/generateName*`).
pub fn object_id(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or("?");
    let meta = &obj["metadata"];
    match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (Some(name), _) => format!("{kind}/{name}"),
        (None, Some(prefix)) => format!("{kind}/{prefix}*"),
        _ => kind.to_string(),
    }
}

/// Applies the policy to one object, as in a namespace without a Pod Security level.
pub fn preview_object(
    obj: Value,
    policy: &Policy,
    source_name: &str,
) -> Result<Previewed, PreviewError> {
    preview_object_in(obj, policy, PodSecurityLevel::Privileged, source_name)
}

/// Applies the policy to one object bound for a namespace of that Pod Security level.
pub fn preview_object_in(
    obj: Value,
    policy: &Policy,
    level: PodSecurityLevel,
    source_name: &str,
) -> Result<Previewed, PreviewError> {
    let id = object_id(&obj);
    let kind = obj["kind"].as_str().unwrap_or_default();
    let Some(path) = template_path(kind) else {
        return Ok(Previewed {
            id,
            after: obj.clone(),
            before: obj,
            changes: Vec::new(),
            warnings: Vec::new(),
        });
    };
    let template = path.iter().try_fold(&obj, |v, k| v.get(*k));
    let Some(template) = template.filter(|t| t.is_object()) else {
        return Ok(Previewed {
            id: id.clone(),
            after: obj.clone(),
            before: obj,
            changes: Vec::new(),
            warnings: vec![format!(
                "{id}: no pod template at .{}; left unchanged",
                path.join(".")
            )],
        });
    };
    let evaluation =
        evaluate_json_in(&as_created(kind, &obj, template), policy, level).map_err(|error| {
            PreviewError::BadTemplate {
                source_name: source_name.into(),
                id: id.clone(),
                error,
            }
        })?;
    let mut after = obj.clone();
    json_patch::patch(&mut after, &rebase(&evaluation.patch, path))
        .expect("the policy's patch applies to its own input");
    Ok(Previewed {
        id,
        before: obj,
        after,
        changes: evaluation.changes,
        warnings: evaluation.warnings,
    })
}

/// The pod template as the controller will create the pod: a StatefulSet's pods also get a
/// `persistentVolumeClaim` volume per claim template. The policy's patch never touches
/// `volumes`, so it applies to the template as written.
fn as_created(kind: &str, obj: &Value, template: &Value) -> Value {
    let claims = obj["spec"]["volumeClaimTemplates"]
        .as_array()
        .filter(|_| kind == "StatefulSet");
    let Some(claims) = claims else {
        return template.clone();
    };
    let mut pod = template.clone();
    let mut volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for name in claims.iter().filter_map(|c| c["metadata"]["name"].as_str()) {
        if !volumes.iter().any(|v| v["name"] == name) {
            volumes.push(
                serde_json::json!({"name": name, "persistentVolumeClaim": {"claimName": name}}),
            );
        }
    }
    if pod["spec"].is_object() {
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    pod
}

/// The same patch, relative to `prefix` inside a larger document.
fn rebase(patch: &Patch, prefix: &[&str]) -> Patch {
    let ops = patch
        .0
        .iter()
        .map(|op| match op {
            PatchOperation::Add(AddOperation { path, value }) => {
                let mut full = PointerBuf::from_tokens(prefix.iter().copied());
                for token in path.tokens() {
                    full.push_back(token);
                }
                PatchOperation::Add(AddOperation {
                    path: full,
                    value: value.clone(),
                })
            }
            other => unreachable!("the policy only adds, got {other:?}"),
        })
        .collect();
    Patch(ops)
}

/// Previews a whole stream.
pub fn preview(
    text: &str,
    source_name: &str,
    policy: &Policy,
) -> Result<Vec<Previewed>, PreviewError> {
    parse_stream(text, source_name)?
        .into_iter()
        .map(|obj| preview_object(obj, policy, source_name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: worker, labels: {app: buildbot}}
spec:
  ports: [{port: 9989}]
  selector: {app: buildbot, tier: worker}
  clusterIP: None
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, labels: {app: buildbot}}
spec:
  selector: {matchLabels: {app: buildbot, tier: worker}}
  template:
    metadata: {labels: {app: buildbot, tier: worker}}
    spec:
      containers:
      - name: worker
        image: buildbot/buildbot-worker:master
        env: [{name: BUILDMASTER, value: master}]
        volumeMounts: [{name: worker-persistent-storage, mountPath: /buildbot}]
      volumes:
      - name: worker-persistent-storage
        persistentVolumeClaim: {claimName: worker-pv-claim}
---
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: w, image: ci/buildbot-worker-nightly}]
"#;

    #[test]
    fn workloads_are_mutated_in_their_templates_and_others_pass_through() {
        let out = preview(SEED, "seed.yaml", &Policy::default()).unwrap();
        assert_eq!(out.len(), 3, "empty documents skipped");
        assert_eq!(out[0].id, "Service/worker");
        assert!(!out[0].changed());
        let dep = &out[1].after;
        let t = &dep["spec"]["template"];
        assert_eq!(t["spec"]["terminationGracePeriodSeconds"], 3600);
        assert_eq!(
            t["metadata"]["labels"]["app.kubernetes.io/component"],
            "worker"
        );
        assert_eq!(
            t["spec"]["initContainers"][0]["name"],
            "buildbot-volume-permissions"
        );
        assert_eq!(
            dep["spec"]["selector"],
            json!({"matchLabels": {"app": "buildbot", "tier": "worker"}}),
            "selector untouched"
        );
        assert_eq!(
            dep["metadata"], out[1].before["metadata"],
            "only the template changes"
        );
        let cron = &out[2].after["spec"]["jobTemplate"]["spec"]["template"];
        assert_eq!(
            cron["metadata"]["labels"]["app.kubernetes.io/name"], "buildbot",
            "missing template metadata created"
        );
        assert_eq!(
            cron["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "500m"
        );
    }

    #[test]
    fn previewing_the_output_again_changes_nothing() {
        let first = preview(SEED, "seed.yaml", &Policy::default()).unwrap();
        let text: String = first
            .iter()
            .map(|p| format!("---\n{}", serde_yaml::to_string(&p.after).unwrap()))
            .collect();
        let second = preview(&text, "out.yaml", &Policy::default()).unwrap();
        assert!(second.iter().all(|p| !p.changed()));
    }

    #[test]
    fn lists_are_flattened_and_bad_input_is_named() {
        let list = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "buildbot", "tier": "master"}}, "spec": {"containers": [{"name": "m", "image": "x"}]}}]}"#;
        let out = preview(list, "list.json", &Policy::default()).unwrap();
        assert_eq!(out[0].id, "Pod/p");
        assert!(out[0].changed());

        let e = preview("a: [unclosed", "bad.yaml", &Policy::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.yaml: document 1: invalid YAML"), "{e}");
        let e = preview("kind: Pod\n---\n- 1\n", "x.yaml", &Policy::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 2 is not a Kubernetes object"), "{e}");
        let e = preview(
            "kind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: 3}}}",
            "d.yaml",
            &Policy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Deployment/d: the pod template is not a valid pod spec"),
            "{e}"
        );
    }

    #[test]
    fn a_workload_without_a_template_is_reported_not_fatal() {
        let out = preview(
            "kind: Deployment\nmetadata: {name: d}\nspec: {}",
            "d.yaml",
            &Policy::default(),
        )
        .unwrap();
        assert!(!out[0].changed());
        assert!(out[0].warnings[0].contains("no pod template"));
    }
}
