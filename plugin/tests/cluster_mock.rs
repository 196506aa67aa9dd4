//! deploy, status and delete against kube-rs' tower-test mock service: the exact requests
//! (verb, path, query, field manager, force, dryRun, body), and what happens on API errors.

mod common;

use base64::Engine as _;
use common::*;
use kubectl_buildbot::cluster::{Cluster, ClusterError};
use kubectl_buildbot::commands::{delete, deploy, status};
use kubectl_buildbot::deploy::DeploySpec;
use kubectl_buildbot::progress::Lines;
use serde_json::{json, Value};

fn spec() -> DeploySpec {
    DeploySpec::new("bb", "ci")
}

async fn run_deploy(cluster: &Cluster, dry_run_only: bool) -> Result<Vec<Value>, ClusterError> {
    let existing = deploy::discover(cluster, &spec()).await?;
    let r = deploy::reconcile(spec(), None, None, existing).unwrap();
    let (objects, _) = deploy::objects(&r.spec, &r.secrets);
    deploy::apply_all(cluster, &objects, dry_run_only).await
}

const APPLY_PATHS: [&str; 13] = [
    "/api/v1/namespaces/ci/secrets/bb-workers",
    "/api/v1/namespaces/ci/secrets/bb-postgres",
    "/api/v1/namespaces/ci/configmaps/bb-config",
    "/api/v1/namespaces/ci/services/bb",
    "/api/v1/namespaces/ci/services/bb-worker",
    "/api/v1/namespaces/ci/services/bb-postgres",
    "/apis/networking.k8s.io/v1/namespaces/ci/networkpolicies/bb-master",
    "/apis/networking.k8s.io/v1/namespaces/ci/networkpolicies/bb-worker",
    "/apis/networking.k8s.io/v1/namespaces/ci/networkpolicies/bb-postgres",
    "/api/v1/namespaces/ci/persistentvolumeclaims/bb-master",
    "/apis/apps/v1/namespaces/ci/statefulsets/bb-postgres",
    "/apis/apps/v1/namespaces/ci/deployments/bb",
    "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker",
];

#[tokio::test]
async fn deploy_reads_then_checks_everything_then_applies_with_ssa() {
    let (cluster, seen) = fake(empty_cluster);
    let applied = run_deploy(&cluster, false).await.unwrap();
    assert_eq!(applied.len(), 13);
    let seen = seen.lock().unwrap().clone();
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();
    let mut expected = vec![
        "GET /api/v1/namespaces/ci/secrets/bb-postgres".to_string(),
        "GET /api/v1/namespaces/ci/secrets/bb-workers".to_string(),
        "GET /apis/apps/v1/namespaces/ci/statefulsets/bb-worker".to_string(),
        "GET /apis/apps/v1/namespaces/ci/deployments/bb".to_string(),
    ];
    for dry in [true, false] {
        for path in APPLY_PATHS {
            let dry = if dry { "dryRun=All&" } else { "" };
            expected.push(format!(
                "PATCH {path}?{dry}fieldManager=kubectl-buildbot&force=true"
            ));
        }
    }
    assert_eq!(lines, expected);
    for s in seen.iter().filter(|s| s.method == "PATCH") {
        assert_eq!(
            s.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(s.body["metadata"]["namespace"], "ci");
        assert_eq!(
            s.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kubectl-buildbot"
        );
    }
    let worker = seen
        .iter()
        .rev()
        .find(|s| s.path.ends_with("statefulsets/bb-worker"))
        .unwrap();
    assert_eq!(worker.body["spec"]["replicas"], 1);
    assert_eq!(
        worker.body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        3600
    );
}

#[tokio::test]
async fn server_dry_run_sends_only_dry_runs() {
    let (cluster, seen) = fake(empty_cluster);
    run_deploy(&cluster, true).await.unwrap();
    let patches: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "PATCH")
        .cloned()
        .collect();
    assert_eq!(patches.len(), 13);
    assert!(patches.iter().all(Seen::dry_run));
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn redeploy_keeps_passwords_and_the_scaled_worker_count() {
    let (cluster, seen) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/api/v1/namespaces/ci/secrets/bb-postgres") => Some((
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bb-postgres"}, "data": {"password": b64("old-pg")}}),
        )),
        ("GET", "/api/v1/namespaces/ci/secrets/bb-workers") => Some((
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bb-workers"}, "data": {"bb-worker-0": b64("old-w0")}}),
        )),
        ("GET", "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker") => Some((
            200,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "bb-worker"}, "spec": {"replicas": 3, "selector": {}, "template": {}, "serviceName": "bb-worker"}}),
        )),
        _ => empty_cluster(s),
    });
    run_deploy(&cluster, false).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let last = |suffix: &str| {
        seen.iter()
            .rev()
            .find(|s| s.method == "PATCH" && s.path.ends_with(suffix))
            .unwrap()
            .body
            .clone()
    };
    assert_eq!(
        last("secrets/bb-postgres")["data"]["password"],
        b64("old-pg")
    );
    let workers = last("secrets/bb-workers");
    assert_eq!(workers["data"]["bb-worker-0"], b64("old-w0"));
    assert_eq!(
        workers["data"].as_object().unwrap().len(),
        4,
        "new slots get new passwords"
    );
    assert_eq!(last("statefulsets/bb-worker")["spec"]["replicas"], 3);
}

/// An error on one object during the check pass: named, explained, and nothing applied.
async fn failing_deploy(code: u16, reason: &str, message: &str) -> (String, Vec<Seen>) {
    let (reason, message) = (reason.to_string(), message.to_string());
    let (cluster, seen) = fake(move |s| {
        if s.method == "PATCH" && s.path.ends_with("deployments/bb") {
            Some((code, status(code, &reason, &message, "deployments")))
        } else {
            empty_cluster(s)
        }
    });
    let err = run_deploy(&cluster, false).await.unwrap_err().to_string();
    let seen = seen.lock().unwrap().clone();
    (err, seen)
}

#[tokio::test]
async fn forbidden_names_the_object_and_the_permission_and_applies_nothing() {
    let (err, seen) = failing_deploy(
        403,
        "Forbidden",
        "deployments.apps \"bb\" is forbidden: User \"dev\" cannot patch resource",
    )
    .await;
    assert!(
        err.contains("checking Deployment/bb in namespace ci: forbidden"),
        "{err}"
    );
    assert!(
        err.contains("kubectl auth can-i patch deployments -n ci"),
        "{err}"
    );
    assert!(
        seen.iter()
            .filter(|s| s.method == "PATCH")
            .all(Seen::dry_run),
        "nothing applied for real"
    );
}

#[tokio::test]
async fn invalid_and_conflict_errors_are_explained_and_apply_nothing() {
    let (err, seen) = failing_deploy(
        422,
        "Invalid",
        "spec.template.spec.containers[0].image: Required value",
    )
    .await;
    assert!(
        err.contains("Deployment/bb: rejected as invalid: spec.template.spec.containers[0].image"),
        "{err}"
    );
    assert!(seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .all(Seen::dry_run));
    let (err, seen) = failing_deploy(409, "Conflict", "Apply failed with 1 conflict").await;
    assert!(
        err.contains("Deployment/bb: conflict: Apply failed"),
        "{err}"
    );
    assert!(err.contains("another field manager"), "{err}");
    assert!(seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .all(Seen::dry_run));
}

#[tokio::test]
async fn a_missing_namespace_says_how_to_create_it() {
    let (cluster, _) = fake(|_| {
        Some((
            404,
            status(404, "NotFound", "namespaces \"ci\" not found", "namespaces"),
        ))
    });
    let err = run_deploy(&cluster, false).await.unwrap_err().to_string();
    assert!(
        err.contains("namespace ci does not exist") && err.contains("kubectl create namespace ci"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_reported_with_the_object() {
    let (cluster, seen) = fake(|s| {
        if s.method == "PATCH" && s.path.ends_with("services/bb") {
            None
        } else {
            empty_cluster(s)
        }
    });
    let err = run_deploy(&cluster, false).await.unwrap_err();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("Service/bb: no answer from the API server"),
        "{err}"
    );
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "PATCH")
        .all(Seen::dry_run));
}

#[tokio::test]
async fn api_server_timeout_status_is_reported() {
    let (cluster, _) = fake(|s| {
        if s.method == "PATCH" && s.path.ends_with("statefulsets/bb-worker") {
            Some((
                504,
                status(
                    504,
                    "Timeout",
                    "the server was unable to return a response in the time allotted",
                    "statefulsets",
                ),
            ))
        } else {
            empty_cluster(s)
        }
    });
    let err = run_deploy(&cluster, false).await.unwrap_err().to_string();
    assert!(
        err.contains("StatefulSet/bb-worker: the API server answered 504: the server was unable"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_keeps_claims_and_secrets_and_checks_before_deleting() {
    let (cluster, seen) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/api/v1/namespaces/ci/persistentvolumeclaims") => Some((
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [
                {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "bb-master"}},
                {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-bb-postgres-0"}}]}),
        )),
        (
            "GET",
            "/api/v1/namespaces/ci/secrets/bb-workers"
            | "/api/v1/namespaces/ci/secrets/bb-postgres",
        ) => Some((
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
        )),
        // Latent mode: a pod the master made, and one a StatefulSet owns (left to it).
        ("GET", "/api/v1/namespaces/ci/pods") => Some((
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "buildbot-bb-worker-0-5f2a1c"}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bb-worker-1", "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "bb-worker", "uid": "u", "controller": true}]}}]}),
        )),
        ("DELETE", p) if p.ends_with("horizontalpodautoscalers/bb-worker") => not_found(s),
        _ => empty_cluster(s),
    });
    let result = delete::delete(&cluster, &spec(), false).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].line(), "GET /api/v1/namespaces/ci/pods?&labelSelector=app.kubernetes.io%2Fname%3Dbuildbot%2Capp.kubernetes.io%2Finstance%3Dbb%2Capp.kubernetes.io%2Fcomponent%3Dworker".replace("?&", "?"));
    assert_eq!(seen[1].line(), "GET /api/v1/namespaces/ci/persistentvolumeclaims?&labelSelector=app.kubernetes.io%2Fname%3Dbuildbot%2Capp.kubernetes.io%2Finstance%3Dbb".replace("?&", "?"));
    let deletes: Vec<&Seen> = seen.iter().filter(|s| s.method == "DELETE").collect();
    let (checks, real): (Vec<&&Seen>, Vec<&&Seen>) = deletes.iter().partition(|s| s.dry_run());
    assert_eq!(checks.len(), 16);
    assert_eq!(real.len(), 16);
    assert!(
        deletes.iter().take(16).all(|s| s.dry_run()),
        "all checks come before any deletion"
    );
    let paths: Vec<&str> = real.iter().map(|s| s.path.as_str()).collect();
    let master = paths
        .iter()
        .position(|p| p.ends_with("deployments/bb"))
        .unwrap();
    assert_eq!(
        paths[master + 1],
        "/api/v1/namespaces/ci/pods/buildbot-bb-worker-0-5f2a1c",
        "the master's pods right after the master: {paths:?}"
    );
    assert!(!paths.iter().any(|p| p.ends_with("pods/bb-worker-1")));
    assert!(
        paths.last().unwrap().ends_with("serviceaccounts/bb-master"),
        "{paths:?}"
    );
    let order: Vec<&str> = real.iter().take(3).map(|s| s.path.as_str()).collect();
    assert_eq!(
        order,
        [
            "/apis/autoscaling/v2/namespaces/ci/horizontalpodautoscalers/bb-worker",
            "/apis/keda.sh/v1alpha1/namespaces/ci/scaledobjects/bb-worker",
            "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker",
        ],
        "autoscalers, then workers, first"
    );
    assert!(
        !deletes
            .iter()
            .any(|s| s.path.contains("persistentvolumeclaims") || s.path.contains("/secrets/")),
        "data kept"
    );
    assert_eq!(real[0].body["propagationPolicy"], "Background");
    assert!(
        !result
            .deleted
            .iter()
            .any(|d| d.contains("horizontalpodautoscaler")),
        "absent objects are not reported"
    );
    assert_eq!(
        result.kept,
        vec![
            "persistentvolumeclaim/bb-master",
            "persistentvolumeclaim/data-bb-postgres-0",
            "secret/bb-workers",
            "secret/bb-postgres"
        ]
    );
}

#[tokio::test]
async fn purge_deletes_claims_and_secrets_too() {
    let (cluster, seen) = fake(|s| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/api/v1/namespaces/ci/persistentvolumeclaims") => Some((
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [
                {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-bb-postgres-0"}}]}),
        )),
        _ => empty_cluster(s),
    });
    let result = delete::delete(&cluster, &spec(), true).await.unwrap();
    assert!(result.kept.is_empty());
    for d in [
        "persistentvolumeclaim/data-bb-postgres-0",
        "persistentvolumeclaim/bb-master",
        "secret/bb-postgres",
        "secret/bb-workers",
    ] {
        assert!(
            result.deleted.iter().any(|x| x == d),
            "{d} in {:?}",
            result.deleted
        );
    }
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "DELETE")
            .count()
            == 2 * 20,
        "15 objects, 4 purged by name, 1 claim found by label; each checked, then deleted"
    );
}

#[tokio::test]
async fn a_refused_deletion_deletes_nothing() {
    let (cluster, seen) = fake(|s| {
        if s.method == "DELETE" && s.path.ends_with("configmaps/bb-config") {
            Some((
                403,
                status(403, "Forbidden", "cannot delete configmaps", "configmaps"),
            ))
        } else {
            empty_cluster(s)
        }
    });
    let err = delete::delete(&cluster, &spec(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checking deletion of ConfigMap/bb-config in namespace ci: forbidden"),
        "{err}"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "DELETE")
            .all(Seen::dry_run),
        "nothing half-deleted"
    );
}

#[tokio::test]
async fn status_reads_workloads_pods_claims_and_buildbot_through_the_service_proxy() {
    let (cluster, seen) = fake(|s| {
        let ready = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x", "generation": 1},
                           "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "x"},
                           "status": {"replicas": 1, "readyReplicas": 1, "observedGeneration": 1}});
        let list = |items: Value| json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items});
        match s.path.as_str() {
            "/apis/apps/v1/namespaces/ci/statefulsets/bb-postgres"
            | "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker" => Some((200, ready)),
            "/apis/apps/v1/namespaces/ci/deployments/bb" => {
                let mut d = ready;
                d["kind"] = "Deployment".into();
                Some((200, d))
            }
            "/api/v1/namespaces/ci/pods" => Some((
                200,
                list(json!([{"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "bb-worker-0", "labels": {"app.kubernetes.io/component": "worker"}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}])),
            )),
            "/api/v1/namespaces/ci/persistentvolumeclaims" => Some((200, list(json!([])))),
            "/api/v1/namespaces/ci/services/bb:http/proxy/api/v2/workers" => Some((
                200,
                json!({"workers": [{"workerid": 1, "name": "bb-worker-0", "connected_to": [{"masterid": 1}]}]}),
            )),
            "/api/v1/namespaces/ci/services/bb:http/proxy/api/v2/builds" => Some((
                200,
                json!({"builds": [{"builderid": 1, "number": 7, "workerid": 1}]}),
            )),
            "/api/v1/namespaces/ci/services/bb:http/proxy/api/v2/buildrequests" => {
                Some((200, json!({"buildrequests": [{"buildrequestid": 9}]})))
            }
            "/api/v1/namespaces/ci/services/bb:http/proxy/api/v2/builders" => Some((
                200,
                json!({"builders": [{"builderid": 1, "name": "hello"}]}),
            )),
            _ => not_found(s),
        }
    });
    let spec = spec();
    let st = status::assemble(&spec, status::collect(&cluster, &spec).await.unwrap());
    assert!(st.healthy, "{:?}", st.hints);
    let b = st.buildbot.unwrap();
    assert_eq!(b.workers_connected, vec!["bb-worker-0"]);
    assert_eq!(b.builds_running[0].builder, "hello");
    assert_eq!(b.build_requests_queued, 1);
    let lines: Vec<String> = seen.lock().unwrap().iter().map(Seen::line).collect();
    assert!(
        lines.contains(
            &"GET /api/v1/namespaces/ci/services/bb:http/proxy/api/v2/builds?complete=false"
                .to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(
            &"GET /api/v1/namespaces/ci/services/bb:http/proxy/api/v2/buildrequests?claimed=false"
                .to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with("GET ")),
        "status only reads"
    );
}

fn workload(kind: &str, name: &str, replicas: i64, ready: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "generation": 1},
           "spec": {"replicas": replicas, "selector": {}, "template": {}, "serviceName": name},
           "status": {"observedGeneration": 1, "readyReplicas": ready}})
}

#[tokio::test]
async fn wait_reports_progress_then_returns_once_everything_is_ready() {
    // The master becomes ready on the third poll.
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = polls.clone();
    let (cluster, _) = fake(move |s| match s.path.as_str() {
        "/apis/apps/v1/namespaces/ci/statefulsets/bb-postgres" => {
            Some((200, workload("StatefulSet", "bb-postgres", 1, 1)))
        }
        "/apis/apps/v1/namespaces/ci/deployments/bb" => {
            let ready = i64::from(p.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 2);
            Some((200, workload("Deployment", "bb", 1, ready)))
        }
        "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker" => {
            Some((200, workload("StatefulSet", "bb-worker", 1, 1)))
        }
        _ => not_found(s),
    });
    let mut out = Vec::new();
    deploy::wait_ready(
        &cluster,
        &spec(),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(1),
        &mut Lines(&mut out),
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "waiting: database 1/1 ✓  master 0/1  workers 1/1 ✓\nwaiting: database 1/1 ✓  master 1/1 ✓  workers 1/1 ✓\n",
        "one plain line per change when not on a terminal"
    );
}

#[tokio::test]
async fn wait_times_out_naming_what_is_not_ready_and_how_to_find_out_why() {
    let (cluster, _) = fake(|s| match s.path.as_str() {
        "/apis/apps/v1/namespaces/ci/statefulsets/bb-postgres" => {
            Some((200, workload("StatefulSet", "bb-postgres", 1, 0)))
        }
        "/apis/apps/v1/namespaces/ci/deployments/bb" => {
            Some((200, workload("Deployment", "bb", 1, 0)))
        }
        "/apis/apps/v1/namespaces/ci/statefulsets/bb-worker" => {
            Some((200, workload("StatefulSet", "bb-worker", 1, 1)))
        }
        _ => not_found(s),
    });
    let mut out = Vec::new();
    let err = deploy::wait_ready(
        &cluster,
        &spec(),
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(1),
        &mut Lines(&mut out),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("waiting for database (0/1 ready), master (0/1 ready)"),
        "{err}"
    );
    assert!(err.contains("kubectl buildbot status bb -n ci"), "{err}");
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text, "waiting: database 0/1  master 0/1  workers 1/1 ✓\n",
        "the state it gave up in"
    );
}

#[tokio::test]
async fn status_fetches_the_last_log_lines_of_a_crash_looping_container() {
    let (cluster, seen) = fake(|s| match s.path.as_str() {
        "/apis/apps/v1/namespaces/ci/deployments/bb" => {
            Some((200, workload("Deployment", "bb", 1, 0)))
        }
        "/api/v1/namespaces/ci/pods" => Some((
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bb-5d8-x", "labels": {"app.kubernetes.io/component": "master"}},
             "status": {"phase": "Running", "containerStatuses": [{"name": "master", "restartCount": 6,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]}),
        )),
        "/api/v1/namespaces/ci/persistentvolumeclaims" => Some((
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}),
        )),
        "/api/v1/namespaces/ci/pods/bb-5d8-x/log" => Some((
            200,
            Value::String("BuildMaster startup failed\nServer Shut Down.\n".into()),
        )),
        _ => not_found(s),
    });
    let st = status::assemble(&spec(), status::collect(&cluster, &spec()).await.unwrap());
    let hint = st
        .hints
        .iter()
        .find(|h| h.contains("crash-looping"))
        .expect("a crash-loop hint");
    assert!(
        hint.contains("pod bb-5d8-x container master is crash-looping (6 restarts)"),
        "{hint}"
    );
    assert!(hint.contains("BuildMaster startup failed"), "{hint}");
    let lines: Vec<String> = seen.lock().unwrap().iter().map(Seen::line).collect();
    assert!(lines.contains(&"GET /api/v1/namespaces/ci/pods/bb-5d8-x/log?container=master&previous=true&tailLines=10".to_string()), "{lines:#?}");
}
