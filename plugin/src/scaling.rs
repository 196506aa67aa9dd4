//! Scaling workers without killing a build: the pure parts (which workers go, the
//! HorizontalPodAutoscaler, the KEDA ScaledObject, the checks).
//!
//! Every way a worker pod goes away ends in its preStop hook, which drains the worker through
//! the master; on top of that, `scale --workers` pauses the workers that will go and waits for
//! their builds before lowering the replicas, and the autoscalers remove at most one pod per
//! five minutes after ten quiet minutes.

use buildbot_policy::Role;
use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Value};

use crate::deploy::spec::{DeploySpec, WEB_PORT};

/// A scaling request that cannot work, said with what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScaleError {
    #[error("no worker StatefulSet {0} in namespace {1}: deploy first (kubectl buildbot deploy {2} -n {1})")]
    NotDeployed(String, String, String),
    #[error("master.cfg declares {slots} worker slots, {wanted} asked: raise them first with `kubectl buildbot deploy {name} --max-workers {wanted}` (no builds are interrupted)")]
    TooFewSlots {
        name: String,
        slots: u32,
        wanted: u32,
    },
    #[error("--min {min} is more than --max {max}")]
    MinAboveMax { min: u32, max: u32 },
    #[error("--min 0 (scale to zero) needs --queue: CPU autoscaling cannot start from zero pods")]
    ZeroNeedsQueue,
    #[error("container {container:?} of the worker pods has no CPU request, so the HorizontalPodAutoscaler cannot compute utilisation: deploy with `kubectl buildbot deploy`, or install the buildbot-webhook chart, which add requests (or set resources.requests.cpu yourself)")]
    NoCpuRequest { container: String },
    #[error("the workers are autoscaled by {0}: remove it first (kubectl delete {0}) or change it with `scale --auto`")]
    Autoscaled(String),
    #[error("Buildbot {name:?} runs a pod per build (--worker-mode latent): it scales itself, from none up to the {slots} slots master.cfg declares. Change the most with `kubectl buildbot deploy {name} -n {namespace} --max-workers M`, or switch to long-running workers with `--worker-mode static`")]
    Latent {
        name: String,
        namespace: String,
        slots: u32,
    },
    #[error("KEDA is not installed on this cluster (no API group keda.sh/v1alpha1): install it (helm install keda kedacore/keda -n keda --create-namespace) or scale on CPU with `scale --auto --cpu PCT`")]
    NoKeda,
}

/// Scale-down that suits builds: after ten quiet minutes, at most one pod every five.
fn scale_down_behavior() -> Value {
    json!({
        "stabilizationWindowSeconds": 600,
        "selectPolicy": "Min",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
    })
}

fn scale_up_behavior() -> Value {
    json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}],
    })
}

fn target_ref(spec: &DeploySpec) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": spec.worker_name()})
}

fn metadata(spec: &DeploySpec) -> Value {
    json!({"name": spec.worker_name(), "namespace": spec.namespace, "labels": spec.labels(Role::Worker)})
}

/// Checks `--min`/`--max` against each other and the declared slots.
pub fn check_bounds(
    spec: &DeploySpec,
    min: u32,
    max: u32,
    slots: u32,
    queue: bool,
) -> Result<(), ScaleError> {
    if min > max {
        return Err(ScaleError::MinAboveMax { min, max });
    }
    if min == 0 && !queue {
        return Err(ScaleError::ZeroNeedsQueue);
    }
    check_slots(spec, max, slots)
}

/// The master must declare a slot for every worker.
pub fn check_slots(spec: &DeploySpec, wanted: u32, slots: u32) -> Result<(), ScaleError> {
    if wanted > slots {
        return Err(ScaleError::TooFewSlots {
            name: spec.name.clone(),
            slots,
            wanted,
        });
    }
    Ok(())
}

/// An `autoscaling/v2` HorizontalPodAutoscaler on the worker StatefulSet's CPU.
pub fn hpa(spec: &DeploySpec, min: u32, max: u32, cpu_percent: u32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(spec),
        "spec": {
            "scaleTargetRef": target_ref(spec),
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
            "behavior": {"scaleDown": scale_down_behavior(), "scaleUp": scale_up_behavior()},
        },
    })
}

/// Buildbot's count of unfinished build requests (queued and running): what the workers
/// are needed for. It is `meta.total` of the answer. No `limit`: on this endpoint Buildbot
/// applies it in SQL and `total` then counts only the page; two small fields per request
/// keep the answer small instead (a filtered field must be selected).
pub fn demand_url(spec: &DeploySpec) -> String {
    format!(
        "http://{}.{}.svc:{WEB_PORT}/api/v2/{DEMAND_QUERY}",
        spec.master_name(),
        spec.namespace
    )
}

/// The REST query behind [`demand_url`].
pub const DEMAND_QUERY: &str = "buildrequests?complete=false&field=buildrequestid&field=complete";

/// A KEDA ScaledObject: one worker per `builds_per_worker` unfinished build requests.
pub fn scaled_object(spec: &DeploySpec, min: u32, max: u32, builds_per_worker: u32) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(spec),
        "spec": {
            "scaleTargetRef": target_ref(spec),
            "minReplicaCount": min,
            "maxReplicaCount": max,
            "pollingInterval": 15,
            // From the last worker to zero only after ten idle minutes.
            "cooldownPeriod": 600,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": scale_down_behavior(), "scaleUp": scale_up_behavior()}}},
            "triggers": [{
                "type": "metrics-api",
                "metricType": "AverageValue",
                "metadata": {
                    "url": demand_url(spec),
                    "format": "json",
                    "valueLocation": "meta.total",
                    "targetValue": builds_per_worker.to_string(),
                    "activationTargetValue": "0",
                },
            }],
        },
    })
}

/// What `scale --workers N --dry-run=client` prints: the StatefulSet's Scale subresource.
pub fn scale_object(spec: &DeploySpec, replicas: u32) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": spec.worker_name(), "namespace": spec.namespace},
        "spec": {"replicas": replicas},
    })
}

/// The workers a StatefulSet removes going from `current` to `target` replicas: the
/// highest ordinals.
pub fn leaving(spec: &DeploySpec, current: u32, target: u32) -> Vec<String> {
    (target..current)
        .rev()
        .map(|i| format!("{}-{i}", spec.worker_name()))
        .collect()
}

/// Every container of the worker pod template has a CPU request.
pub fn check_cpu_requests(statefulset: &StatefulSet) -> Result<(), ScaleError> {
    let containers = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map_or(&[][..], |p| p.containers.as_slice());
    for c in containers {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if !requests.is_some_and(|r| r.contains_key("cpu")) {
            return Err(ScaleError::NoCpuRequest {
                container: c.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploySpec {
        DeploySpec::new("bb", "ci")
    }

    #[test]
    fn the_highest_ordinals_leave_first() {
        assert_eq!(leaving(&spec(), 4, 2), vec!["bb-worker-3", "bb-worker-2"]);
        assert!(leaving(&spec(), 2, 3).is_empty());
    }

    #[test]
    fn bounds_and_slots_are_checked_with_a_way_out() {
        let s = spec();
        assert_eq!(
            check_bounds(&s, 3, 2, 4, false),
            Err(ScaleError::MinAboveMax { min: 3, max: 2 })
        );
        assert_eq!(
            check_bounds(&s, 0, 2, 4, false),
            Err(ScaleError::ZeroNeedsQueue)
        );
        check_bounds(&s, 0, 2, 4, true).unwrap();
        let e = check_bounds(&s, 1, 8, 4, false).unwrap_err().to_string();
        assert!(
            e.contains("kubectl buildbot deploy bb --max-workers 8"),
            "{e}"
        );
    }

    #[test]
    fn hpa_scales_down_one_pod_at_a_time_after_a_quiet_window() {
        let h = hpa(&spec(), 1, 4, 70);
        assert_eq!(h["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
        assert_eq!(h["spec"]["scaleTargetRef"]["name"], "bb-worker");
        let down = &h["spec"]["behavior"]["scaleDown"];
        assert_eq!(
            down["policies"],
            json!([{"type": "Pods", "value": 1, "periodSeconds": 300}])
        );
        assert_eq!(down["stabilizationWindowSeconds"], 600);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
    }

    #[test]
    fn scaled_object_reads_buildbots_queue() {
        let o = scaled_object(&spec(), 0, 6, 2);
        let t = &o["spec"]["triggers"][0];
        assert_eq!(t["type"], "metrics-api");
        assert_eq!(
            t["metadata"]["url"],
            format!("http://bb.ci.svc:8080/api/v2/{DEMAND_QUERY}")
        );
        assert_eq!(t["metadata"]["valueLocation"], "meta.total");
        assert_eq!(t["metadata"]["targetValue"], "2");
        assert_eq!(o["spec"]["minReplicaCount"], 0);
    }

    #[test]
    fn cpu_requests_are_required_on_every_container() {
        let ok = json!({"spec": {"template": {"spec": {"containers": [{"name": "w", "resources": {"requests": {"cpu": "500m"}}}]}}}});
        check_cpu_requests(&serde_json::from_value(ok).unwrap()).unwrap();
        let seed = json!({"spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "buildbot/buildbot-worker"}]}}}});
        let e = check_cpu_requests(&serde_json::from_value(seed).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"worker\"") && e.contains("buildbot-webhook"),
            "{e}"
        );
    }
}
