//! `scale` against the tower-test mock: the exact scale PATCH, the drain's REST calls through
//! the service proxy, the HPA and the ScaledObject, and every refusal.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kubectl_buildbot::commands::scale;
use kubectl_buildbot::deploy::DeploySpec;
use kubectl_buildbot::scaling::{hpa, scaled_object};
use serde_json::{json, Value};

const PROXY: &str = "/api/v1/namespaces/ci/services/bb:http/proxy/api/v2";

fn statefulset(replicas: u32, with_requests: bool) -> Value {
    let mut c = json!({"name": "worker", "image": "buildbot/buildbot-worker:v4.3.0"});
    if with_requests {
        c["resources"] = json!({"requests": {"cpu": "500m", "memory": "1Gi"}});
    }
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bb-worker"},
           "spec": {"replicas": replicas, "serviceName": "bb-worker", "selector": {}, "template": {"spec": {"containers": [c]}}}})
}

fn workers_secret(slots: usize) -> Value {
    let data: serde_json::Map<String, Value> = (0..slots)
        .map(|i| (format!("bb-worker-{i}"), json!("cHc=")))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bb-workers"}, "data": data})
}

/// A deployed installation: `replicas` of 4 slots; KEDA present or not; builds from `builds`.
fn installed(
    replicas: u32,
    with_requests: bool,
    keda: bool,
    builds: impl Fn() -> Value + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Option<(u16, Value)> + Send + Sync + 'static {
    move |s: &Seen| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker") => {
            Some((200, statefulset(replicas, with_requests)))
        }
        ("GET", "/api/v1/namespaces/ci/secrets/bb-workers") => Some((200, workers_secret(4))),
        ("GET", "/apis/keda.sh/v1alpha1") if keda => Some((
            200,
            json!({"kind": "APIResourceList", "groupVersion": "keda.sh/v1alpha1", "resources": []}),
        )),
        ("GET", p) if p == format!("{PROXY}/workers") => Some((
            200,
            json!({"workers": [
            {"workerid": 1, "name": "bb-worker-0"}, {"workerid": 2, "name": "bb-worker-1"}, {"workerid": 3, "name": "bb-worker-2"}]}),
        )),
        ("GET", p) if p == format!("{PROXY}/builders") => Some((
            200,
            json!({"builders": [{"builderid": 5, "name": "hello"}]}),
        )),
        ("GET", p) if p == format!("{PROXY}/builds") => Some((200, builds())),
        ("POST", p) if p.starts_with(PROXY) => {
            Some((200, json!({"jsonrpc": "2.0", "id": 1, "result": null})))
        }
        ("PATCH", p) if p.ends_with("/scale") => Some((
            200,
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "bb-worker"}, "spec": s.body["spec"]}),
        )),
        _ => empty_cluster(s),
    }
}

fn no_builds() -> Value {
    json!({"builds": []})
}

fn spec() -> DeploySpec {
    DeploySpec::new("bb", "ci")
}

#[tokio::test]
async fn scaling_up_patches_the_scale_subresource_only() {
    let (cluster, seen) = fake(installed(1, true, false, no_builds));
    let mut out = Vec::new();
    scale::scale_to(
        &cluster,
        &spec(),
        3,
        Duration::from_secs(5),
        Duration::from_millis(1),
        &mut out,
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();
    assert_eq!(
        lines,
        [
            "GET /apis/apps/v1/namespaces/ci/statefulsets/bb-worker",
            "GET /api/v1/namespaces/ci/secrets/bb-workers",
            "GET /apis/autoscaling/v2/namespaces/ci/horizontalpodautoscalers/bb-worker",
            "GET /apis/keda.sh/v1alpha1",
            "PATCH /apis/apps/v1/namespaces/ci/statefulsets/bb-worker/scale?fieldManager=kubectl-buildbot",
        ]
    );
    let patch = seen.last().unwrap();
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body, json!({"spec": {"replicas": 3}}));
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("scaled from 1 to 3"));
}

#[tokio::test]
async fn scaling_down_pauses_the_leaving_workers_and_waits_for_their_builds() {
    // bb-worker-2 builds hello #7 for the first two polls, then is idle.
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let builds = move || {
        if p.fetch_add(1, Ordering::SeqCst) < 2 {
            json!({"builds": [{"builderid": 5, "number": 7, "workerid": 3}, {"builderid": 5, "number": 8, "workerid": 1}]})
        } else {
            json!({"builds": [{"builderid": 5, "number": 8, "workerid": 1}]})
        }
    };
    let (cluster, seen) = fake(installed(3, true, false, builds));
    let mut out = Vec::new();
    scale::scale_to(
        &cluster,
        &spec(),
        1,
        Duration::from_secs(10),
        Duration::from_millis(1),
        &mut out,
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(
        posts.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        [
            format!("{PROXY}/workers/bb-worker-2"),
            format!("{PROXY}/workers/bb-worker-1")
        ]
    );
    assert!(posts
        .iter()
        .all(|s| s.body["method"] == "pause" && s.body["jsonrpc"] == "2.0"));
    assert_eq!(
        seen.iter()
            .filter(|s| s.line() == format!("GET {PROXY}/builds?complete=false"))
            .count(),
        3
    );
    let patch_at = seen
        .iter()
        .position(|s| s.method == "PATCH")
        .expect("scaled");
    let last_poll = seen
        .iter()
        .rposition(|s| s.path.ends_with("/builds"))
        .unwrap();
    assert!(
        patch_at > last_poll,
        "replicas lowered only after the builds finished"
    );
    assert_eq!(seen[patch_at].body, json!({"spec": {"replicas": 1}}));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("paused bb-worker-2, bb-worker-1"), "{text}");
    assert!(
        text.contains("still building: bb-worker-2: hello #7"),
        "{text}"
    );
    assert!(
        !text.contains("hello #8"),
        "a staying worker's build is not in the way: {text}"
    );
}

#[tokio::test]
async fn a_drain_timeout_unpauses_and_scales_nothing() {
    let builds = || json!({"builds": [{"builderid": 5, "number": 7, "workerid": 2}]});
    let (cluster, seen) = fake(installed(2, true, false, builds));
    let err = scale::scale_to(
        &cluster,
        &spec(),
        1,
        Duration::ZERO,
        Duration::from_millis(1),
        &mut Vec::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("still running: bb-worker-1: hello #7"),
        "{err}"
    );
    assert!(err.contains("Nothing was scaled"), "{err}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.iter().any(|s| s.method == "PATCH"), "no scale");
    let methods: Vec<String> = seen
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.body["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods, ["pause", "unpause"]);
}

#[tokio::test]
async fn refusals_say_why_and_change_nothing() {
    // More workers than master.cfg declares.
    let (cluster, seen) = fake(installed(1, true, false, no_builds));
    let err = scale::scale_to(
        &cluster,
        &spec(),
        6,
        Duration::ZERO,
        Duration::ZERO,
        &mut Vec::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("declares 4 worker slots") && err.contains("--max-workers 6"),
        "{err}"
    );
    assert!(!seen.lock().unwrap().iter().any(|s| s.method != "GET"));

    // An HPA owns the replicas.
    let (cluster, seen) = fake(|s| {
        if s.method == "GET" && s.path.ends_with("horizontalpodautoscalers/bb-worker") {
            Some((
                200,
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "bb-worker"}}),
            ))
        } else {
            installed(1, true, false, no_builds)(s)
        }
    });
    let err = scale::scale_to(
        &cluster,
        &spec(),
        2,
        Duration::ZERO,
        Duration::ZERO,
        &mut Vec::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("autoscaled by hpa/bb-worker"), "{err}");
    assert!(!seen.lock().unwrap().iter().any(|s| s.method != "GET"));

    // Nothing deployed.
    let (cluster, _) = fake(empty_cluster);
    let err = scale::scale_to(
        &cluster,
        &spec(),
        2,
        Duration::ZERO,
        Duration::ZERO,
        &mut Vec::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no worker StatefulSet bb-worker in namespace ci: deploy first"),
        "{err}"
    );
}

#[tokio::test]
async fn cpu_autoscaling_applies_the_hpa_after_checking_requests() {
    let (cluster, seen) = fake(installed(1, true, false, no_builds));
    scale::autoscale_cpu(&cluster, &spec(), 1, 4, 70, false)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let apply = seen.iter().find(|s| s.method == "PATCH").unwrap();
    assert_eq!(apply.line(), "PATCH /apis/autoscaling/v2/namespaces/ci/horizontalpodautoscalers/bb-worker?fieldManager=kubectl-buildbot&force=true");
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(apply.body, hpa(&spec(), 1, 4, 70));
    assert!(
        !seen.iter().any(|s| s.method == "DELETE"),
        "no KEDA, nothing to replace"
    );

    let (cluster, seen) = fake(installed(1, false, false, no_builds));
    let err = scale::autoscale_cpu(&cluster, &spec(), 1, 4, 70, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container \"worker\" of the worker pods has no CPU request"),
        "{err}"
    );
    assert!(!seen.lock().unwrap().iter().any(|s| s.method == "PATCH"));
}

#[tokio::test]
async fn queue_autoscaling_needs_keda_and_replaces_the_hpa() {
    let (cluster, seen) = fake(installed(1, true, false, no_builds));
    let err = scale::autoscale_queue(&cluster, &spec(), 0, 4, 2, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KEDA is not installed") && err.contains("helm install keda"),
        "{err}"
    );
    assert!(!seen.lock().unwrap().iter().any(|s| s.method == "PATCH"));

    let (cluster, seen) = fake(installed(1, true, true, no_builds));
    scale::autoscale_queue(&cluster, &spec(), 0, 4, 2, false)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let apply = seen.iter().find(|s| s.method == "PATCH").unwrap();
    assert_eq!(apply.line(), "PATCH /apis/keda.sh/v1alpha1/namespaces/ci/scaledobjects/bb-worker?fieldManager=kubectl-buildbot&force=true");
    assert_eq!(apply.body, scaled_object(&spec(), 0, 4, 2));
    let delete = seen.iter().find(|s| s.method == "DELETE").unwrap();
    assert_eq!(
        delete.path,
        "/apis/autoscaling/v2/namespaces/ci/horizontalpodautoscalers/bb-worker"
    );
}

#[tokio::test]
async fn server_dry_run_of_autoscaling_persists_nothing() {
    let (cluster, seen) = fake(installed(1, true, true, no_builds));
    scale::autoscale_cpu(&cluster, &spec(), 1, 4, 70, true)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .all(Seen::dry_run));
    assert!(!seen.iter().any(|s| s.method == "DELETE"));
}

/// A static installation switched to latent: `builds` answers the drain's polls.
async fn switch_to_latent(
    builds: impl Fn() -> Value + Send + Sync + 'static,
    timeout: Duration,
) -> (anyhow::Result<Vec<Value>>, Vec<Seen>, String) {
    use kubectl_buildbot::commands::deploy;
    use kubectl_buildbot::deploy::{Secrets, WorkerMode};
    let (cluster, seen) = fake(installed(2, true, false, builds));
    let mut spec = spec();
    deploy::set_worker_mode(&mut spec, WorkerMode::Latent, None).unwrap();
    let (objects, _) = deploy::objects(&spec, &Secrets::default().complete(&spec));
    let mut out = Vec::new();
    let running = spec.worker_names();
    let result = deploy::switch_mode(
        &cluster,
        &spec,
        deploy::Switch {
            from: WorkerMode::Static,
            workers: &running,
        },
        &objects,
        timeout,
        Duration::from_millis(1),
        &mut out,
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    (result, seen, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn switching_modes_checks_everything_then_drains_every_worker_before_removing_any() {
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let builds = move || {
        if p.fetch_add(1, Ordering::SeqCst) < 2 {
            json!({"builds": [{"builderid": 5, "number": 7, "workerid": 2}]})
        } else {
            no_builds()
        }
    };
    let (result, seen, text) = switch_to_latent(builds, Duration::from_secs(10)).await;
    result.unwrap();
    let first_pause = seen.iter().position(|s| s.method == "POST").unwrap();
    assert!(
        seen[..first_pause]
            .iter()
            .filter(|s| s.method == "PATCH")
            .all(Seen::dry_run),
        "every object checked (server dry run) before anything is paused"
    );
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 4, "every slot paused");
    assert!(posts.iter().all(|s| s.body["method"] == "pause"));
    let last_poll = seen
        .iter()
        .rposition(|s| s.path.ends_with("/builds"))
        .unwrap();
    let deletes: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.method == "DELETE")
        .map(|(i, _)| i)
        .collect();
    assert!(
        deletes.iter().all(|&i| i > last_poll),
        "nothing removed while a build runs"
    );
    let sts = seen
        .iter()
        .position(|s| s.method == "DELETE" && s.path.ends_with("statefulsets/bb-worker"))
        .expect("the worker StatefulSet removed");
    let first_real_apply = seen
        .iter()
        .position(|s| s.method == "PATCH" && !s.dry_run())
        .unwrap();
    assert!(
        sts < first_real_apply,
        "the old workers go before the master that no longer declares them restarts"
    );
    assert!(
        text.contains("still building: bb-worker-1: hello #7"),
        "{text}"
    );
}

#[tokio::test]
async fn a_switch_that_cannot_drain_changes_nothing_and_unpauses() {
    let builds = || json!({"builds": [{"builderid": 5, "number": 7, "workerid": 1}]});
    let (result, seen, _) = switch_to_latent(builds, Duration::ZERO).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("still running: bb-worker-0: hello #7. Nothing was changed"),
        "{err}"
    );
    assert!(
        !seen.iter().any(|s| s.method == "DELETE"),
        "nothing removed"
    );
    assert!(
        seen.iter()
            .filter(|s| s.method == "PATCH")
            .all(Seen::dry_run),
        "nothing applied"
    );
    let unpaused = seen
        .iter()
        .filter(|s| s.method == "POST" && s.body["method"] == "unpause")
        .count();
    assert_eq!(unpaused, 4);
}
