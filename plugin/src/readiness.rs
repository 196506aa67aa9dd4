//! Whether an installation's workloads are ready, computed once for `deploy --wait` and
//! `status`: a workload counts only once its controller has observed its latest generation.

use buildbot_policy::Role;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use serde::Serialize;

/// One component's workload and how many of its replicas are ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub component: Role,
    pub kind: &'static str,
    pub name: String,
    pub ready: i32,
    pub wanted: i32,
    pub exists: bool,
}

impl Readiness {
    pub fn done(&self) -> bool {
        self.exists && self.ready >= self.wanted
    }

    /// How people call the component: the worker StatefulSet is "workers".
    pub fn label(&self) -> &'static str {
        match self.component {
            Role::Worker => "workers",
            other => other.component(),
        }
    }
}

/// The parts of a Deployment or StatefulSet that readiness reads.
pub trait Workload: kube::Resource<DynamicType = ()> + k8s_openapi::Resource {
    /// `(spec.replicas, status.observedGeneration, status.readyReplicas)`.
    fn replica_counts(&self) -> (Option<i32>, Option<i64>, Option<i32>);
}

impl Workload for Deployment {
    fn replica_counts(&self) -> (Option<i32>, Option<i64>, Option<i32>) {
        let status = self.status.as_ref();
        (
            self.spec.as_ref().and_then(|s| s.replicas),
            status.and_then(|s| s.observed_generation),
            status.and_then(|s| s.ready_replicas),
        )
    }
}

impl Workload for StatefulSet {
    fn replica_counts(&self) -> (Option<i32>, Option<i64>, Option<i32>) {
        let status = self.status.as_ref();
        (
            self.spec.as_ref().and_then(|s| s.replicas),
            status.and_then(|s| s.observed_generation),
            status.and_then(|s| s.ready_replicas),
        )
    }
}

/// Readiness of `name`, a workload of `component` (absent: nothing ready). `wanted` is the
/// replica count to wait for; `None` takes the workload's own `spec.replicas` (default 1).
pub fn readiness<W: Workload>(
    component: Role,
    name: String,
    workload: Option<&W>,
    wanted: Option<i32>,
) -> Readiness {
    let (replicas, observed, ready) = workload.map_or((None, None, None), W::replica_counts);
    let generation = workload.and_then(|w| w.meta().generation);
    let ready = if observed >= generation {
        ready.unwrap_or(0)
    } else {
        0
    };
    Readiness {
        component,
        kind: <W as k8s_openapi::Resource>::KIND,
        name,
        ready,
        wanted: wanted.or(replicas).unwrap_or(1),
        exists: workload.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(value: serde_json::Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn readiness_needs_an_observed_generation() {
        let stale = deployment(
            serde_json::json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 1, "readyReplicas": 1}}),
        );
        assert_eq!(
            readiness(Role::Master, "bb".into(), Some(&stale), Some(1)).ready,
            0
        );
        let fresh = deployment(
            serde_json::json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "readyReplicas": 1}}),
        );
        assert!(readiness(Role::Master, "bb".into(), Some(&fresh), Some(1)).done());
        assert!(!readiness::<Deployment>(Role::Master, "bb".into(), None, Some(1)).done());
    }

    #[test]
    fn wanted_defaults_to_the_workloads_replicas() {
        let three = deployment(
            serde_json::json!({"spec": {"replicas": 3, "selector": {}, "template": {}}, "status": {"readyReplicas": 2}}),
        );
        let r = readiness(Role::Worker, "bb-worker".into(), Some(&three), None);
        assert_eq!((r.ready, r.wanted, r.label()), (2, 3, "workers"));
        assert!(!r.done());
    }
}
