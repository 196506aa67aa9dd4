//! What `status` shows, pure: the installation's workloads, pods and claims as read from the
//! cluster, Buildbot's own view, and hints. The reading is in `commands::status`.
//!
//! - this module: the output types and [`assemble`];
//! - [`hints`]: the diagnosis rules (what is wrong and what to do);
//! - [`table`]: the table for a terminal.

pub mod hints;
pub mod table;

use buildbot_policy::Role;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde::Serialize;

use crate::buildbot_api::{RunningBuild, Snapshot};
use crate::deploy::spec::{DeploySpec, WorkerMode};
use crate::readiness::{readiness, Readiness};

pub use table::render_table;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodState {
    pub name: String,
    /// The pod's `app.kubernetes.io/component`, when it names a role.
    pub component: Option<Role>,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    /// Why a container is waiting or the pod is pending (CrashLoopBackOff, Unschedulable...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The container the reason is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// A worker pod's Buildbot worker name: its `WORKERNAME` when the pod spells it out (a
    /// per-build pod), else the pod's name (the StatefulSet's pods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// Latent mode's workers: the slots master.cfg declares and the pods the master made.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatentWorkers {
    pub slots: u32,
    pub pods: Vec<LatentPod>,
}

/// One per-build pod now, with the builds its worker runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatentPod {
    pub pod: String,
    pub worker: String,
    pub phase: String,
    pub builds: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Claim {
    pub name: String,
    pub phase: String,
}

/// Buildbot's view, from its REST API.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Buildbot {
    pub workers_configured: Vec<String>,
    pub workers_connected: Vec<String>,
    pub builds_running: Vec<RunningBuild>,
    pub build_requests_queued: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub name: String,
    pub namespace: String,
    pub healthy: bool,
    pub components: Vec<Readiness>,
    pub pods: Vec<PodState>,
    pub claims: Vec<Claim>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buildbot: Option<Buildbot>,
    /// Present in latent mode (`deploy --worker-mode latent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent: Option<LatentWorkers>,
    pub hints: Vec<String>,
}

/// What `commands::status::collect` read from the cluster, for the pure assembly.
#[derive(Debug)]
pub struct Observed {
    pub database: Option<StatefulSet>,
    pub master: Option<Deployment>,
    pub workers: Option<StatefulSet>,
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    /// Buildbot's REST answers, or why they could not be had.
    pub rest: Result<Snapshot, String>,
    /// Last log lines of crash-looping containers, by pod name.
    pub logs: Vec<(String, String)>,
    /// Pods the installation's controllers could not create: (`kind/name`, the event's
    /// message), from `FailedCreate` events.
    pub failed_creates: Vec<(String, String)>,
    /// The installation's worker mode, when it is known.
    pub worker_mode: Option<WorkerMode>,
    /// The worker slots the worker Secret holds passwords for.
    pub worker_slots: u32,
}

impl Default for Observed {
    fn default() -> Self {
        Self {
            database: None,
            master: None,
            workers: None,
            pods: Vec::new(),
            claims: Vec::new(),
            rest: Err("not asked".into()),
            logs: Vec::new(),
            failed_creates: Vec::new(),
            worker_mode: None,
            worker_slots: 0,
        }
    }
}

/// A pod's state, and why it is not running when it is not.
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.clone().unwrap_or_default();
    let statuses: Vec<_> = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .collect();
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let waiting = statuses.iter().find_map(|c| {
        let w = c.state.as_ref()?.waiting.as_ref()?;
        w.reason.as_ref()?;
        Some((c, w))
    });
    let unschedulable = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    let (reason, message, container) = match (waiting, unschedulable) {
        (Some((c, w)), _) => (w.reason.clone(), w.message.clone(), Some(c.name.clone())),
        (None, Some(c)) => (c.reason.clone(), c.message.clone(), None),
        _ => (None, None, None),
    };
    PodState {
        name: pod.metadata.name.clone().unwrap_or_default(),
        component: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/component"))
            .and_then(|c| Role::parse(c)),
        phase: status.phase.unwrap_or_else(|| "Unknown".into()),
        ready: conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        restarts: statuses.iter().map(|c| c.restart_count).sum(),
        reason,
        message,
        container,
        worker: worker_name(pod),
    }
}

/// Whether a controller (a StatefulSet, a ReplicaSet...) owns the pod: the pods the master
/// makes in latent mode have no owner.
pub fn controlled(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true))
}

/// A worker pod's worker name (see [`PodState::worker`]); `None` for other pods.
fn worker_name(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    if labels
        .get("app.kubernetes.io/component")
        .map(String::as_str)
        != Some("worker")
    {
        return None;
    }
    let spelled_out = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "WORKERNAME")
        .and_then(|e| e.value.clone());
    spelled_out.or_else(|| pod.metadata.name.clone())
}

fn buildbot(rest: &Snapshot) -> Buildbot {
    Buildbot {
        workers_configured: rest.workers_configured(),
        workers_connected: rest.workers_connected(),
        builds_running: rest.running_builds(),
        build_requests_queued: rest.build_requests_queued(),
    }
}

/// Puts what was observed together, with hints. Pure.
pub fn assemble(spec: &DeploySpec, observed: Observed) -> Status {
    let mut components = Vec::new();
    if observed.database.is_some() {
        components.push(readiness(
            Role::Database,
            spec.postgres_name(),
            observed.database.as_ref(),
            None,
        ));
    }
    components.push(readiness(
        Role::Master,
        spec.master_name(),
        observed.master.as_ref(),
        None,
    ));
    let latent = observed.worker_mode == Some(WorkerMode::Latent);
    if !latent {
        components.push(readiness(
            Role::Worker,
            spec.worker_name(),
            observed.workers.as_ref(),
            None,
        ));
    }
    let pods: Vec<PodState> = observed.pods.iter().map(pod_state).collect();
    let claims: Vec<Claim> = observed
        .claims
        .iter()
        .map(|c| Claim {
            name: c.metadata.name.clone().unwrap_or_default(),
            phase: c
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
        })
        .collect();
    let buildbot = observed.rest.as_ref().ok().map(buildbot);
    let latent = latent.then(|| latent_workers(&observed, &pods, buildbot.as_ref()));
    let hints = hints::diagnose(&hints::Facts {
        spec,
        components: &components,
        pods: &pods,
        claims: &claims,
        buildbot: buildbot.as_ref(),
        rest_error: observed.rest.as_ref().err().map(String::as_str),
        logs: &observed.logs,
        failed_creates: &observed.failed_creates,
    });
    let healthy = components.iter().all(Readiness::done) && hints.is_empty();
    Status {
        name: spec.name.clone(),
        namespace: spec.namespace.clone(),
        healthy,
        components,
        pods,
        claims,
        buildbot,
        latent,
        hints,
    }
}

fn latent_workers(
    observed: &Observed,
    pods: &[PodState],
    buildbot: Option<&Buildbot>,
) -> LatentWorkers {
    // `pods` are `observed.pods`' states, in the same order.
    let pods = observed
        .pods
        .iter()
        .zip(pods)
        .filter(|(pod, p)| p.component == Some(Role::Worker) && !controlled(pod))
        .map(|(_, p)| {
            let worker = p.worker.clone().unwrap_or_else(|| p.name.clone());
            let builds = buildbot
                .iter()
                .flat_map(|b| b.builds_running.iter())
                .filter(|b| b.worker == worker)
                .map(|b| format!("{} #{}", b.builder, b.number))
                .collect();
            LatentPod {
                pod: p.name.clone(),
                worker,
                phase: p.phase.clone(),
                builds,
            }
        })
        .collect();
    // What the running master declares, else what deploy made passwords for.
    let slots = buildbot
        .map(|b| u32::try_from(b.workers_configured.len()).unwrap_or(u32::MAX))
        .filter(|n| *n > 0)
        .unwrap_or(observed.worker_slots);
    LatentWorkers { slots, pods }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ready<W: serde::de::DeserializeOwned>(replicas: i64) -> W {
        typed(
            json!({"spec": {"replicas": replicas, "selector": {}, "template": {}}, "status": {"readyReplicas": replicas}}),
        )
    }

    fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, component: &str, ready: bool, waiting: Option<&str>) -> Pod {
        let mut p = json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
                           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                                      "containerStatuses": [{"name": component, "restartCount": 4, "state": {}}]}});
        if let Some(w) = waiting {
            p["status"]["containerStatuses"][0]["state"] =
                json!({"waiting": {"reason": w, "message": "back-off"}});
        }
        typed(p)
    }

    #[test]
    fn healthy_installation_has_no_hints() {
        let spec = DeploySpec::new("bb", "ci");
        let rest = Snapshot {
            workers: json!({"workers": [{"workerid": 1, "name": "bb-worker-0", "connected_to": [{"masterid": 1}]}, {"workerid": 2, "name": "bb-worker-1", "connected_to": []}]}),
            builds: json!({"builds": [{"builderid": 7, "number": 3, "workerid": 1}]}),
            buildrequests: json!({"buildrequests": [{}, {}]}),
            builders: json!({"builders": [{"builderid": 7, "name": "hello"}]}),
        };
        let s = assemble(
            &spec,
            Observed {
                database: Some(ready(1)),
                master: Some(ready(1)),
                workers: Some(ready(1)),
                pods: vec![pod("bb-worker-0", "worker", true, None)],
                claims: vec![typed(
                    json!({"metadata": {"name": "bb-master"}, "status": {"phase": "Bound"}}),
                )],
                rest: Ok(rest),
                logs: vec![],
                failed_creates: vec![],
                ..Observed::default()
            },
        );
        assert!(s.healthy, "{:?}", s.hints);
        let b = s.buildbot.as_ref().unwrap();
        assert_eq!(b.workers_connected, vec!["bb-worker-0"]);
        assert_eq!(
            b.builds_running,
            vec![RunningBuild {
                builder: "hello".into(),
                number: 3,
                worker: "bb-worker-0".into()
            }]
        );
        assert_eq!(b.build_requests_queued, 2);
        let table = render_table(&s);
        assert!(
            table.contains("master      Deployment    bb            1/1     Ready\n"),
            "{table}"
        );
        assert!(
            table.contains("running: hello #3 on bb-worker-0"),
            "{table}"
        );
    }

    #[test]
    fn problems_become_hints_with_log_lines() {
        let spec = DeploySpec::new("bb", "ci");
        let s = assemble(
            &spec,
            Observed {
                database: Some(ready(1)),
                master: Some(typed(
                    json!({"spec": {"replicas": 1, "selector": {}, "template": {}}, "status": {}}),
                )),
                workers: Some(ready(2)),
                pods: vec![
                    pod("bb-7d9-x", "master", false, Some("CrashLoopBackOff")),
                    pod("bb-worker-0", "worker", true, None),
                    pod("bb-worker-1", "worker", false, Some("ImagePullBackOff")),
                ],
                claims: vec![typed(
                    json!({"metadata": {"name": "bb-master"}, "status": {"phase": "Pending"}}),
                )],
                rest: Ok(Snapshot {
                    workers: json!({"workers": []}),
                    ..Snapshot::default()
                }),
                logs: vec![(
                    "bb-7d9-x".into(),
                    "could not translate host name \"db\"".into(),
                )],
                failed_creates: vec![],
                ..Observed::default()
            },
        );
        assert!(!s.healthy);
        let all = s.hints.join("\n");
        assert!(
            all.contains("PersistentVolumeClaim bb-master is Pending"),
            "{all}"
        );
        assert!(all.contains("pod bb-7d9-x container master is crash-looping (4 restarts); its last log lines:\n      could not translate host name"), "{all}");
        assert!(
            all.contains("pod bb-worker-1 cannot pull the image of worker"),
            "{all}"
        );
        assert!(
            all.contains("worker pod bb-worker-0 runs but is not connected"),
            "{all}"
        );
    }

    #[test]
    fn latent_mode_shows_slots_pods_and_their_builds() {
        let spec = DeploySpec::new("bb", "ci");
        let mut build_pod = pod("buildbot-bb-worker-1-5f2a1c", "worker", true, None);
        build_pod.spec = Some(typed(json!({"restartPolicy": "Never", "containers": [{
            "name": "buildbot-bb-worker-1-5f2a1c",
            "env": [{"name": "WORKERNAME", "value": "bb-worker-1"}, {"name": "WORKERPASS", "value": "x"}]}]})));
        let rest = Snapshot {
            workers: json!({"workers": [
                {"workerid": 1, "name": "bb-worker-0", "connected_to": []},
                {"workerid": 2, "name": "bb-worker-1", "connected_to": [{"masterid": 1}]}]}),
            builds: json!({"builds": [{"builderid": 7, "number": 12, "workerid": 2}]}),
            buildrequests: json!({"buildrequests": []}),
            builders: json!({"builders": [{"builderid": 7, "name": "hello"}]}),
        };
        let s = assemble(
            &spec,
            Observed {
                database: Some(ready(1)),
                master: Some(ready(1)),
                pods: vec![build_pod],
                rest: Ok(rest),
                worker_mode: Some(WorkerMode::Latent),
                worker_slots: 4,
                ..Observed::default()
            },
        );
        assert!(s.healthy, "no worker StatefulSet is expected: {s:?}");
        assert!(!s.components.iter().any(|c| c.component == Role::Worker));
        let latent = s.latent.as_ref().unwrap();
        assert_eq!(latent.slots, 2, "what the running master declares");
        assert_eq!(
            latent.pods,
            vec![LatentPod {
                pod: "buildbot-bb-worker-1-5f2a1c".into(),
                worker: "bb-worker-1".into(),
                phase: "Running".into(),
                builds: vec!["hello #12".into()],
            }]
        );
        let table = render_table(&s);
        assert!(
            table.contains("Workers: a pod per build (latent), 1 of 2 slots in use"),
            "{table}"
        );
        assert!(
            table.contains("bb-worker-1   Running   hello #12"),
            "{table}"
        );
    }

    #[test]
    fn nothing_deployed_says_how_to_deploy() {
        let s = assemble(&DeploySpec::new("bb", "ci"), Observed::default());
        assert!(!s.healthy);
        assert!(
            s.hints[0].contains("kubectl buildbot deploy bb -n ci"),
            "{:?}",
            s.hints
        );
    }
}
