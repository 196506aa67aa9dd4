//! `deploy --worker-mode latent` against the real control plane, with the webhook installed by
//! its chart and a real Buildbot master on this machine standing in for the master pod: it
//! runs the deployed master.cfg with the deployed ServiceAccount's token (in a pod's service
//! account files), so every call it makes to the API server is what the Role allows.
//!
//! - the ServiceAccount may do exactly what the Role says, and nothing more;
//! - a forced build makes the master create the worker pod, which arrives with the pod policy
//!   (the webhook reviews it and has nothing to add); a stock KubeLatentWorker's pod is
//!   completed by the webhook;
//! - a worker process started with the pod's environment (standing in for the kubelet, as
//!   kwok's pods run nothing) runs the build, and the master deletes the pod after it;
//! - the same worker builds again (nothing retired it).

use std::time::Duration;

use e2e_tests::buildbot::{in_pod, wait_for, Master, WorkerProcess};
use e2e_tests::controlplane::{wait_until, ControlPlane};
use e2e_tests::{temp_dir, text_of, tool};
use serde_json::{json, Value};

/// What a user adds to the generated master.cfg for a stock KubeLatentWorker (as in
/// Buildbot's documentation): its pods carry nothing of the policy until the webhook adds it.
const STOCK_WORKER: &str = r#"

# A stock KubeLatentWorker, as in Buildbot's documentation (sharing the loader).
c["workers"].append(worker.KubeLatentWorker(
    "plain-0",
    image=WORKER_IMAGE,
    namespace=pod_namespace(),
    masterFQDN=MASTER_ADDRESS,
    kube_config=KUBE_CONFIG,
))
c["builders"].append(util.BuilderConfig(name="plain", workernames=["plain-0"], factory=hello))
c["schedulers"][0].builderNames.append("plain")
"#;

fn can_i(cp: &ControlPlane, sa: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", sa];
    all.extend_from_slice(args);
    // `kubectl auth can-i` exits 1 and prints "no" when the answer is no.
    match cp.kubectl(&all) {
        Ok(out) => out.trim() == "yes",
        Err(out) if out.lines().any(|l| l.trim() == "no") => false,
        Err(out) => panic!("kubectl {all:?}: {out}"),
    }
}

/// The pods of `selector` in `ns`, as stored.
fn pods(cp: &ControlPlane, ns: &str, selector: &str) -> Vec<Value> {
    cp.get_json(&["pods", "-n", ns, "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Starts a worker as the official image's pod would, from the stored pod's environment,
/// connecting to the master here (the kubelet's part: kwok's pods run nothing).
fn run_pod(master: &Master, pod: &Value) -> WorkerProcess {
    let env: Vec<(String, String)> = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .map(|(k, v)| match k.as_str() {
            "BUILDMASTER" => (k, "127.0.0.1".to_string()),
            "BUILDMASTER_PORT" => (k, master.pb_port.to_string()),
            _ => (k, v),
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "WORKERPASS"), "{pod}");
    let twistd = tool("twistd").display().to_string();
    WorkerProcess::start(
        &[
            twistd,
            "--pidfile=".into(),
            "-ny".into(),
            "buildbot.tac".into(),
        ],
        env,
    )
}

/// Forces `builder`, waits for the master's pod (for a worker whose name starts with
/// `workers`: Buildbot picks one of the builder's), runs it, waits for the build's success and
/// for the master to delete the pod. Returns the pod as the API server stored it.
fn build_on_a_pod(
    cp: &ControlPlane,
    ns: &str,
    master: &Master,
    builder: &str,
    workers: &str,
) -> Value {
    let builds_before = master.builds().len();
    master.force(builder, json!({}));
    let pod = wait_for(
        &format!("the master to create a {workers}* pod"),
        Duration::from_secs(60),
        || {
            cp.get_json(&["pods", "-n", ns])["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| {
                    p["spec"]["containers"][0]["env"]
                        .as_array()
                        .is_some_and(|env| {
                            env.iter().any(|e| {
                                e["name"] == "WORKERNAME"
                                    && e["value"].as_str().is_some_and(|w| w.starts_with(workers))
                            })
                        })
                })
                .cloned()
        },
    );
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let mut process = run_pod(master, &pod);
    let build = wait_for(
        &format!("the {builder} build to finish"),
        Duration::from_secs(120),
        || {
            let builds = master.builds();
            builds
                .get(builds_before)
                .filter(|b| b["complete"] == true)
                .cloned()
        },
    );
    assert_eq!(
        build["results"],
        0,
        "{build}\nmaster:\n{}\nworker:\n{}",
        master.log(),
        process.log()
    );
    wait_until(
        &format!("the master to delete pod {name}"),
        Duration::from_secs(60),
        || cp.kubectl(&["get", "pod", &name, "-n", ns]).is_err(),
    );
    // The master disconnected it: the worker process ends (its pod is gone).
    process.signal("TERM");
    process.wait_exit(Duration::from_secs(30));
    pod
}

#[test]
fn a_latent_installation_makes_a_pod_per_build_with_only_the_roles_permissions() {
    let cp = ControlPlane::shared();
    let (webhook, _system) = e2e_tests::webhook::install(cp);
    let ns = cp.namespace("latent", &[]);

    let out = cp.kubectl_buildbot(
        &ns,
        &[
            "deploy",
            "bb",
            "--worker-mode",
            "latent",
            "--max-workers",
            "2",
            "--wait=false",
        ],
    );
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        cp.kubectl(&["get", "statefulset", "bb-worker", "-n", &ns])
            .is_err(),
        "no worker StatefulSet in latent mode"
    );

    // A re-deploy keeps the mode.
    let out = cp.kubectl_buildbot(&ns, &["deploy", "bb", "--max-workers", "2", "--wait=false"]);
    assert!(out.status.success(), "{}", text_of(&out));
    let master = cp.get_json(&["deployment", "bb", "-n", &ns]);
    assert_eq!(
        master["metadata"]["annotations"]["kubectl-buildbot.dev/worker-mode"],
        "latent"
    );
    assert!(cp
        .kubectl(&["get", "statefulset", "bb-worker", "-n", &ns])
        .is_err());

    // Exactly what the Role says, in its own namespace only.
    let sa = format!("system:serviceaccount:{ns}:bb-master");
    for verb in ["create", "get", "list", "watch", "delete"] {
        assert!(can_i(cp, &sa, &[verb, "pods", "-n", &ns]), "{verb} pods");
    }
    assert!(can_i(
        cp,
        &sa,
        &["get", "pods", "--subresource=status", "-n", &ns]
    ));
    for (args, what) in [
        (vec!["update", "pods"], "update pods"),
        (vec!["patch", "pods"], "patch pods"),
        (vec!["deletecollection", "pods"], "deletecollection pods"),
        (
            vec!["create", "pods", "--subresource=exec"],
            "exec into pods",
        ),
        (vec!["get", "pods", "--subresource=log"], "read pod logs"),
        (vec!["get", "secrets"], "read Secrets"),
        (vec!["create", "deployments.apps"], "create Deployments"),
        (
            vec!["create", "roles.rbac.authorization.k8s.io"],
            "create Roles",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["-n", ns.as_str()]);
        assert!(!can_i(cp, &sa, &a), "may {what}");
    }
    assert!(
        !can_i(cp, &sa, &["create", "pods", "-n", "default"]),
        "other namespaces"
    );
    assert!(!can_i(cp, &sa, &["list", "nodes"]), "cluster scope");

    // The master pod, on this machine: the deployed master.cfg, the ServiceAccount's token.
    let config = cp.get_json(&["configmap", "bb-config", "-n", &ns]);
    let master_cfg = config["data"]["master.cfg"].as_str().unwrap().to_string() + STOCK_WORKER;
    let tac = config["data"]["buildbot.tac"].as_str().unwrap();
    let account = temp_dir("serviceaccount");
    let token = cp
        .kubectl(&["create", "token", "bb-master", "-n", &ns])
        .unwrap_or_else(|e| panic!("kubectl create token: {e}"));
    std::fs::write(account.join("token"), token.trim()).unwrap();
    std::fs::copy(cp.dir.join("pki/ca.crt"), account.join("ca.crt")).unwrap();
    std::fs::write(account.join("namespace"), &ns).unwrap();
    let kubeconfig = std::fs::read_to_string(cp.kubeconfig()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("the kubeconfig's server")
        .to_string();
    let mut master = Master::create(
        &[("master.cfg", master_cfg.as_str()), ("buildbot.tac", tac)],
        vec![("BUILDBOT_DB_URL".into(), "sqlite:///state.sqlite".into())],
    );
    // KUBERNETES_PORT is what the kubelet sets from the `kubernetes` Service.
    master.wrap(
        in_pod(&account),
        vec![("KUBERNETES_PORT".into(), format!("tcp://{server}"))],
    );
    master
        .buildbot(&["upgrade-master", "."])
        .unwrap_or_else(|e| panic!("upgrade-master: {e}"));
    master.start();

    // Ours: the pod arrives with the policy; the webhook reviews it and adds nothing.
    let unchanged = webhook.metric("buildbot_webhook_reviews_total{outcome=\"unchanged\"}");
    let pod = build_on_a_pod(cp, &ns, &master, "hello", "bb-worker-");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/instance"],
        "bb"
    );
    assert_per_build_worker_policy(&pod);
    assert_eq!(pod["spec"]["securityContext"]["fsGroup"], 1000);
    assert!(
        webhook.metric("buildbot_webhook_reviews_total{outcome=\"unchanged\"}") > unchanged,
        "the webhook reviewed the pod:\n{}\n{}\n{pod:#}",
        webhook.log(),
        webhook.metrics()
    );

    // Stock: the webhook adds the policy, without the hook.
    let patched = webhook.metric("buildbot_webhook_reviews_total{outcome=\"patched\"}");
    let stock = build_on_a_pod(cp, &ns, &master, "plain", "plain-0");
    assert_per_build_worker_policy(&stock);
    assert_eq!(
        stock["metadata"]["labels"]["app.kubernetes.io/component"],
        "worker"
    );
    assert!(webhook.metric("buildbot_webhook_reviews_total{outcome=\"patched\"}") > patched);

    // The same worker builds again: nothing retired it.
    build_on_a_pod(cp, &ns, &master, "hello", "bb-worker-");
    assert!(pods(cp, &ns, "app.kubernetes.io/component=worker").is_empty());

    // status shows the mode; scale says it is automatic; delete removes the master's pods.
    let out = cp.kubectl_buildbot(&ns, &["status", "bb", "-o", "json"]);
    let status: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text_of(&out)));
    assert_eq!(status["latent"]["slots"], 2, "{status}");
    let out = cp.kubectl_buildbot(&ns, &["scale", "bb", "--workers", "3"]);
    assert!(!out.status.success());
    assert!(text_of(&out).contains("--max-workers"), "{}", text_of(&out));
}

/// What the policy gives a per-build worker pod, however it arrived: the worker requests,
/// grace, and safe-to-evict false; never the preStop hook.
fn assert_per_build_worker_policy(pod: &Value) {
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"}),
        "{pod}"
    );
    assert!(container.get("lifecycle").is_none(), "{pod}");
    assert_eq!(
        pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"], "false",
        "{pod}"
    );
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 3600, "{pod}");
}
