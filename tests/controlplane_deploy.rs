//! `kubectl buildbot deploy / status / scale / delete`, the real binary against a real control
//! plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; kwok runs the pods):
//! server-side apply and server dry run, the controllers creating pods from our templates,
//! readiness, the scale subresource, an HPA and a KEDA ScaledObject the API server accepts,
//! deletion that keeps the data, and a refused object that leaves nothing half-applied.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use e2e_tests::controlplane::{wait_until, ControlPlane};
use serde_json::Value;

/// `kubectl-buildbot ARGS -n NS` against the control plane.
fn bb(ns: &str, args: &[&str]) -> Output {
    ControlPlane::shared().kubectl_buildbot(ns, args)
}

fn text(out: &Output) -> String {
    e2e_tests::text_of(out)
}

fn ok(ns: &str, args: &[&str]) -> String {
    let out = bb(ns, args);
    assert!(
        out.status.success(),
        "kubectl-buildbot {args:?}: {}",
        text(&out)
    );
    text(&out)
}

/// Everything of ours in a namespace: `Kind/name` → resourceVersion.
fn objects(ns: &str) -> BTreeMap<String, String> {
    let list = ControlPlane::shared().get_json(&[
        "secret,configmap,service,networkpolicy,persistentvolumeclaim,statefulset,deployment,horizontalpodautoscaler",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/managed-by=kubectl-buildbot",
    ]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

/// The workloads' status subresources are written by the controllers for a while after the
/// pods are Ready; wait until the objects we apply stop changing.
fn settled(ns: &str) -> BTreeMap<String, String> {
    let mut last = objects(ns);
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let now = objects(ns);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn deploy_converges_scales_and_deletes_on_a_real_api_server() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("deploy", &[]);

    // deploy: everything created, the controllers' pods Ready.
    let out = ok(&ns, &["deploy", "bb", "--timeout", "3m"]);
    assert!(out.contains("is ready in namespace"), "{out}");
    for pod in ["bb-postgres-0", "bb-worker-0"] {
        let p = cp.get_json(&["pod", pod, "-n", &ns]);
        assert_eq!(p["status"]["phase"], "Running", "{pod}: {}", p["status"]);
    }
    let claims = cp.get_json(&["pvc", "-n", &ns]);
    for c in claims["items"].as_array().unwrap() {
        assert_eq!(c["status"]["phase"], "Bound", "{}", c["metadata"]["name"]);
    }

    // A second identical deploy writes nothing: no object's resourceVersion changes.
    let before = settled(&ns);
    assert!(before.len() >= 13, "{before:#?}");
    ok(&ns, &["deploy", "bb", "--timeout", "3m"]);
    let after = objects(&ns);
    assert_eq!(before, after, "a second deploy changed objects");

    // status: every component, from the typed objects.
    let status: Value = serde_json::from_str(&ok(&ns, &["status", "bb", "-o", "json"])).unwrap();
    let components: Vec<(String, i64, bool)> = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["component"].as_str().unwrap().to_string(),
                c["ready"].as_i64().unwrap(),
                c["exists"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        components,
        vec![
            ("database".into(), 1, true),
            ("master".into(), 1, true),
            ("worker".into(), 1, true)
        ]
    );
    let table = ok(&ns, &["status", "bb"]);
    assert!(
        table.contains("workers     StatefulSet   bb-worker     1/1     Ready\n"),
        "{table}"
    );

    // scale --workers: through the scale subresource (going up drains nobody).
    let out = ok(&ns, &["scale", "bb", "--workers", "3", "--timeout", "1m"]);
    assert!(out.contains("scaled from 1 to 3"), "{out}");
    wait_until("3 worker pods Ready", Duration::from_secs(60), || {
        cp.get_json(&["statefulset", "bb-worker", "-n", &ns])["status"]["readyReplicas"] == 3
    });

    // scale --auto: an HPA the API server accepts.
    ok(
        &ns,
        &[
            "scale", "bb", "--auto", "--min", "1", "--max", "4", "--cpu", "60",
        ],
    );
    let hpa = cp.get_json(&["hpa", "bb-worker", "-n", &ns]);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "bb-worker");
    assert_eq!(hpa["spec"]["maxReplicas"], 4);

    // --queue needs KEDA: a clear error without its CRD, the ScaledObject once it is there.
    let out = bb(
        &ns,
        &[
            "scale", "bb", "--auto", "--queue", "--min", "0", "--max", "4",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("KEDA is not installed"),
        "{}",
        text(&out)
    );
    let crd = e2e_tests::repo_root().join("tests/fixtures/keda-scaledobject-crd.yaml");
    cp.kubectl(&["apply", "-f", crd.to_str().unwrap()]).unwrap();
    cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/scaledobjects.keda.sh",
        "--timeout=30s",
    ])
    .unwrap();
    wait_until(
        "the keda.sh API group to be served",
        Duration::from_secs(30),
        || {
            cp.kubectl(&["get", "--raw", "/apis/keda.sh/v1alpha1"])
                .is_ok()
        },
    );
    ok(
        &ns,
        &[
            "scale", "bb", "--auto", "--queue", "--min", "0", "--max", "4",
        ],
    );
    let so = cp.get_json(&["scaledobject", "bb-worker", "-n", &ns]);
    assert_eq!(so["spec"]["maxReplicaCount"], 4);
    assert!(
        cp.kubectl(&["get", "hpa", "bb-worker", "-n", &ns]).is_err(),
        "the queue mode replaced the CPU autoscaler"
    );

    // delete: claims and Secrets kept; --purge removes them.
    let out = ok(&ns, &["delete", "bb"]);
    assert!(out.contains("Kept (delete with --purge)"), "{out}");
    let left: Vec<String> = objects(&ns).into_keys().collect();
    assert!(
        left.iter()
            .all(|o| o.starts_with("Secret/") || o.starts_with("PersistentVolumeClaim/")),
        "{left:?}"
    );
    assert!(left.contains(&"Secret/bb-workers".to_string()), "{left:?}");
    assert!(
        left.contains(&"PersistentVolumeClaim/bb-master".to_string()),
        "{left:?}"
    );
    assert!(
        cp.kubectl(&["get", "pvc", "data-bb-postgres-0", "-n", &ns])
            .is_ok(),
        "the database's claim (from the claim template) is kept"
    );
    assert!(cp
        .kubectl(&["get", "scaledobject", "bb-worker", "-n", &ns])
        .is_err());
    ok(&ns, &["delete", "bb", "--purge", "--yes"]);
    // Claims go once no pod uses them (the pvc-protection finalizer).
    wait_until(
        "every object of ours to be gone",
        Duration::from_secs(60),
        || objects(&ns).is_empty(),
    );
    assert!(cp
        .kubectl(&["get", "pvc", "data-bb-postgres-0", "-n", &ns])
        .is_err());
}

#[test]
fn a_server_dry_run_persists_nothing() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("dry-run", &[]);
    let out = bb(&ns, &["deploy", "bb", "--dry-run=server", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(items.len() >= 13, "{list}");
    // The server filled in what it would store: a uid and defaults.
    let sts = items.iter().find(|o| o["kind"] == "StatefulSet").unwrap();
    assert!(sts["metadata"]["uid"].is_string(), "{sts}");
    assert_eq!(objects(&ns), BTreeMap::new(), "nothing was stored");
    // Nothing to scale yet: the server dry run of an autoscaler says so.
    let out = bb(
        &ns,
        &[
            "scale",
            "bb",
            "--auto",
            "--min",
            "1",
            "--max",
            "2",
            "--dry-run=server",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("deploy first"), "{}", text(&out));
    assert_eq!(objects(&ns), BTreeMap::new(), "nothing was stored");
}

#[test]
fn an_object_the_api_server_refuses_leaves_nothing_half_applied() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("quota", &[]);
    // No claims allowed here: the master's claim is refused.
    cp.kubectl(&[
        "create",
        "quota",
        "no-claims",
        "--hard=persistentvolumeclaims=0",
        "-n",
        &ns,
    ])
    .unwrap();
    wait_until("the quota to be counted", Duration::from_secs(30), || {
        cp.get_json(&["quota", "no-claims", "-n", &ns])["status"]["hard"].is_object()
    });
    let out = bb(&ns, &["deploy", "bb", "--timeout", "1m"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("PersistentVolumeClaim/bb-master") && said.contains("forbidden"),
        "{said}"
    );
    assert_eq!(objects(&ns), BTreeMap::new(), "nothing applied: {said}");
}
