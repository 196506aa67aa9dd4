//! `status`: the installation's health at a glance, Buildbot's own view of workers and
//! builds (through the API server's service proxy, no port-forward), and hints when
//! something is wrong.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::cluster::{Cluster, ClusterError};
use crate::deploy::spec::DeploySpec;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodState {
    pub name: String,
    pub component: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i64,
    /// Why a container is waiting or the pod is pending (CrashLoopBackOff, Unschedulable...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The container the reason is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Component {
    pub component: String,
    pub kind: String,
    pub name: String,
    pub ready: i64,
    pub wanted: i64,
    pub exists: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Claim {
    pub name: String,
    pub phase: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunningBuild {
    pub builder: String,
    pub number: i64,
    pub worker: String,
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
    pub components: Vec<Component>,
    pub pods: Vec<PodState>,
    pub claims: Vec<Claim>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buildbot: Option<Buildbot>,
    pub hints: Vec<String>,
}

/// What `collect` read from the cluster, for the pure assembly.
#[derive(Debug)]
pub struct Observed {
    pub database: Option<Value>,
    pub master: Option<Value>,
    pub workers: Option<Value>,
    pub pods: Vec<Value>,
    pub claims: Vec<Value>,
    /// Buildbot's REST answers, or why they could not be had.
    pub rest: Result<Rest, String>,
    /// Last log lines of crash-looping containers, by pod name.
    pub logs: Vec<(String, String)>,
}

impl Default for Rest {
    fn default() -> Self {
        Self {
            workers: Value::Null,
            builds: Value::Null,
            buildrequests: Value::Null,
            builders: Value::Null,
        }
    }
}

/// The REST API's answers.
#[derive(Debug)]
pub struct Rest {
    pub workers: Value,
    pub builds: Value,
    pub buildrequests: Value,
    pub builders: Value,
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
        }
    }
}

fn component(kind: &str, name: String, role: &str, obj: Option<&Value>) -> Component {
    let wanted = obj
        .and_then(|o| o["spec"]["replicas"].as_i64())
        .unwrap_or(1);
    let ready = obj
        .and_then(|o| o["status"]["readyReplicas"].as_i64())
        .unwrap_or(0);
    Component {
        component: role.into(),
        kind: kind.into(),
        name,
        ready,
        wanted,
        exists: obj.is_some(),
    }
}

fn pod_state(pod: &Value) -> PodState {
    let status = &pod["status"];
    let statuses: Vec<&Value> = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| status[*k].as_array().into_iter().flatten())
        .collect();
    let waiting = statuses
        .iter()
        .find(|c| c["state"]["waiting"]["reason"].is_string())
        .copied();
    let unschedulable = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False");
    let (reason, message, container) = match (waiting, unschedulable) {
        (Some(c), _) => (
            c["state"]["waiting"]["reason"].as_str().map(str::to_string),
            c["state"]["waiting"]["message"]
                .as_str()
                .map(str::to_string),
            c["name"].as_str().map(str::to_string),
        ),
        (None, Some(c)) => (
            c["reason"].as_str().map(str::to_string),
            c["message"].as_str().map(str::to_string),
            None,
        ),
        _ => (None, None, None),
    };
    PodState {
        name: pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        component: pod["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        phase: status["phase"].as_str().unwrap_or("Unknown").to_string(),
        ready: status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        restarts: statuses
            .iter()
            .filter_map(|c| c["restartCount"].as_i64())
            .sum(),
        reason,
        message,
        container,
    }
}

fn buildbot(rest: &Rest) -> Buildbot {
    let workers = rest.workers["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let name_of = |id: &Value, list: &[Value], key: &str| {
        list.iter()
            .find(|w| &w[key] == id)
            .and_then(|w| w["name"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let builders = rest.builders["builders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Buildbot {
        workers_configured: workers
            .iter()
            .filter_map(|w| w["name"].as_str().map(str::to_string))
            .collect(),
        workers_connected: workers
            .iter()
            .filter(|w| w["connected_to"].as_array().is_some_and(|c| !c.is_empty()))
            .filter_map(|w| w["name"].as_str().map(str::to_string))
            .collect(),
        builds_running: rest.builds["builds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| RunningBuild {
                builder: name_of(&b["builderid"], &builders, "builderid"),
                number: b["number"].as_i64().unwrap_or(0),
                worker: name_of(&b["workerid"], &workers, "workerid"),
            })
            .collect(),
        build_requests_queued: rest.buildrequests["buildrequests"]
            .as_array()
            .map_or(0, Vec::len),
    }
}

/// Puts what was observed together, with hints. Pure.
pub fn assemble(spec: &DeploySpec, observed: Observed) -> Status {
    let mut components = Vec::new();
    if observed.database.is_some() {
        components.push(component(
            "StatefulSet",
            spec.postgres_name(),
            "database",
            observed.database.as_ref(),
        ));
    }
    components.push(component(
        "Deployment",
        spec.master_name(),
        "master",
        observed.master.as_ref(),
    ));
    components.push(component(
        "StatefulSet",
        spec.worker_name(),
        "workers",
        observed.workers.as_ref(),
    ));
    let pods: Vec<PodState> = observed.pods.iter().map(pod_state).collect();
    let claims: Vec<Claim> = observed
        .claims
        .iter()
        .map(|c| Claim {
            name: c["metadata"]["name"].as_str().unwrap_or_default().into(),
            phase: c["status"]["phase"].as_str().unwrap_or("Unknown").into(),
        })
        .collect();
    let ns = &spec.namespace;
    let mut hints = Vec::new();
    if !components.iter().any(|c| c.exists) {
        hints.push(format!("nothing named {:?} is deployed in namespace {ns}: `kubectl buildbot deploy {} -n {ns}`", spec.name, spec.name));
    }
    for c in claims.iter().filter(|c| c.phase == "Pending") {
        hints.push(format!(
            "PersistentVolumeClaim {} is Pending: no volume was provisioned; see `kubectl describe pvc {} -n {ns}`, or deploy with --storage-class",
            c.name, c.name
        ));
    }
    for p in &pods {
        let Some(reason) = &p.reason else { continue };
        let container = p.container.as_deref().unwrap_or("?");
        let hint = match reason.as_str() {
            "CrashLoopBackOff" => {
                let mut h = format!(
                    "pod {} container {container} is crash-looping ({} restarts)",
                    p.name, p.restarts
                );
                if let Some((_, log)) = observed.logs.iter().find(|(pod, _)| pod == &p.name) {
                    let _ = write!(h, "; its last log lines:\n{}", indent(log));
                }
                h
            }
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
                format!(
                    "pod {} cannot pull the image of {container}: {}",
                    p.name,
                    p.message.as_deref().unwrap_or(reason)
                )
            }
            "Unschedulable" => format!(
                "pod {} cannot be scheduled: {}",
                p.name,
                p.message.as_deref().unwrap_or(reason)
            ),
            "CreateContainerConfigError" => {
                format!(
                    "pod {} container {container} cannot start: {}",
                    p.name,
                    p.message.as_deref().unwrap_or(reason)
                )
            }
            _ => continue,
        };
        hints.push(hint);
    }
    let buildbot = match &observed.rest {
        Ok(rest) => {
            let b = buildbot(rest);
            for p in pods.iter().filter(|p| p.component == "worker" && p.ready) {
                if !b.workers_connected.contains(&p.name) {
                    hints.push(format!(
                        "worker pod {} runs but is not connected to the master: `kubectl logs {} -n {ns}`",
                        p.name, p.name
                    ));
                }
            }
            Some(b)
        }
        Err(e) => {
            if components
                .iter()
                .any(|c| c.component == "master" && c.ready > 0)
            {
                hints.push(format!(
                    "Buildbot's REST API did not answer through the service proxy: {e}"
                ));
            }
            None
        }
    };
    let healthy = components.iter().all(|c| c.exists && c.ready >= c.wanted) && hints.is_empty();
    Status {
        name: spec.name.clone(),
        namespace: ns.clone(),
        healthy,
        components,
        pods,
        claims,
        buildbot,
        hints,
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The service-proxy path to Buildbot's REST API.
pub fn rest_path(spec: &DeploySpec, namespace: &str, endpoint: &str) -> String {
    format!(
        "/api/v1/namespaces/{namespace}/services/{}:http/proxy/api/v2/{endpoint}",
        spec.master_name()
    )
}

/// Reads everything `assemble` needs.
pub async fn collect(cluster: &Cluster, spec: &DeploySpec) -> Result<Observed, ClusterError> {
    let selector = spec.instance_selector();
    let mut observed = Observed {
        database: cluster
            .get("apps/v1", "StatefulSet", &spec.postgres_name())
            .await?,
        master: cluster
            .get("apps/v1", "Deployment", &spec.master_name())
            .await?,
        workers: cluster
            .get("apps/v1", "StatefulSet", &spec.worker_name())
            .await?,
        pods: cluster.list("v1", "Pod", &selector).await?,
        claims: cluster
            .list("v1", "PersistentVolumeClaim", &selector)
            .await?,
        ..Observed::default()
    };
    for pod in observed
        .pods
        .iter()
        .map(pod_state)
        .filter(|p| p.reason.as_deref() == Some("CrashLoopBackOff"))
    {
        let container = pod.container.clone().unwrap_or_default();
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/log?container={container}&tailLines=10&previous=true",
            cluster.namespace, pod.name
        );
        if let Ok(log) = cluster.get_text(&path, "pod log").await {
            observed.logs.push((pod.name.clone(), log));
        }
    }
    if observed.master.is_some() {
        let get = |endpoint: &str| {
            let path = rest_path(spec, &cluster.namespace, endpoint);
            async move {
                let text = cluster
                    .get_text(&path, "Buildbot REST API")
                    .await
                    .map_err(|e| e.to_string())?;
                serde_json::from_str::<Value>(&text).map_err(|e| format!("{path}: not JSON: {e}"))
            }
        };
        observed.rest = async {
            Ok(Rest {
                workers: get("workers").await?,
                builds: get("builds?complete=false").await?,
                buildrequests: get("buildrequests?claimed=false").await?,
                builders: get("builders").await?,
            })
        }
        .await;
    }
    Ok(observed)
}

/// The table for a terminal.
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<12} {:<24} {:<6} STATUS",
        "COMPONENT", "KIND", "NAME", "READY"
    );
    for c in &s.components {
        let state = if !c.exists {
            "missing"
        } else if c.ready >= c.wanted {
            "Ready"
        } else {
            "NotReady"
        };
        let _ = writeln!(
            out,
            "{:<10} {:<12} {:<24} {:<6} {state}",
            c.component,
            c.kind,
            c.name,
            format!("{}/{}", c.ready, c.wanted)
        );
    }
    if let Some(b) = &s.buildbot {
        let _ = writeln!(
            out,
            "\nBuildbot: {}/{} workers connected, {} builds running, {} build requests queued",
            b.workers_connected.len(),
            b.workers_configured.len(),
            b.builds_running.len(),
            b.build_requests_queued
        );
        for r in &b.builds_running {
            let _ = writeln!(
                out,
                "  running: {} #{} on {}",
                r.builder, r.number, r.worker
            );
        }
    }
    if !s.hints.is_empty() {
        let _ = writeln!(out, "\nHints:");
        for h in &s.hints {
            let _ = writeln!(out, "  - {h}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ready(replicas: i64) -> Value {
        json!({"spec": {"replicas": replicas}, "status": {"readyReplicas": replicas}})
    }

    fn pod(name: &str, component: &str, ready: bool, waiting: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
                           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                                      "containerStatuses": [{"name": component, "restartCount": 4, "state": {}}]}});
        if let Some(w) = waiting {
            p["status"]["containerStatuses"][0]["state"] =
                json!({"waiting": {"reason": w, "message": "back-off"}});
        }
        p
    }

    #[test]
    fn healthy_installation_has_no_hints() {
        let spec = DeploySpec::new("bb", "ci");
        let rest = Rest {
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
                claims: vec![
                    json!({"metadata": {"name": "bb-master"}, "status": {"phase": "Bound"}}),
                ],
                rest: Ok(rest),
                logs: vec![],
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
            table.contains("master     Deployment   bb                       1/1    Ready"),
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
                master: Some(json!({"spec": {"replicas": 1}, "status": {}})),
                workers: Some(ready(2)),
                pods: vec![
                    pod("bb-7d9-x", "master", false, Some("CrashLoopBackOff")),
                    pod("bb-worker-0", "worker", true, None),
                    pod("bb-worker-1", "worker", false, Some("ImagePullBackOff")),
                ],
                claims: vec![
                    json!({"metadata": {"name": "bb-master"}, "status": {"phase": "Pending"}}),
                ],
                rest: Ok(Rest {
                    workers: json!({"workers": []}),
                    ..Rest::default()
                }),
                logs: vec![(
                    "bb-7d9-x".into(),
                    "could not translate host name \"db\"".into(),
                )],
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
