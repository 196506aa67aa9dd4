//! `deploy --worker-mode latent` with the real Buildbot from PyPI, no cluster: the generated
//! master.cfg passes `buildbot checkconfig` where a pod's service account files are, and the
//! pod Buildbot's own KubeLatentWorker code builds from it already carries the pod policy
//! (`kubectl-buildbot preview` finds nothing to add), while the stock KubeLatentWorker's pod
//! is what the webhook completes.

use std::path::PathBuf;

use e2e_tests::buildbot::{in_pod, Master};
use e2e_tests::installation::find;
use e2e_tests::{output_with_stdin, repo_root, temp_dir, workspace_binary};
use kubectl_buildbot::commands::deploy::objects;
use kubectl_buildbot::deploy::{DeploySpec, Secrets, WorkerMode};
use serde_json::Value;

/// A latent installation's master (not started), with a pod's service account files.
fn latent_master() -> (Master, Vec<Value>, Secrets) {
    let mut spec = DeploySpec::new("bb", "ci");
    spec.worker_mode = WorkerMode::Latent;
    spec.workers = 0;
    spec.max_workers = 2;
    let secrets = Secrets::default().complete(&spec);
    let (objects, _) = objects(&spec, &secrets);
    let data = &find(&objects, "ConfigMap", "bb-config")["data"];
    let passwords = temp_dir("latent-passwords");
    for (name, pw) in &secrets.workers {
        std::fs::write(passwords.join(name), pw).unwrap();
    }
    let mut master = Master::create(
        &[
            ("master.cfg", data["master.cfg"].as_str().unwrap()),
            ("buildbot.tac", data["buildbot.tac"].as_str().unwrap()),
        ],
        vec![
            ("BUILDBOT_DB_URL".into(), "sqlite:///state.sqlite".into()),
            (
                "BUILDBOT_WORKER_PASSWORDS".into(),
                passwords.display().to_string(),
            ),
        ],
    );
    let sa = service_account("ci");
    master.wrap(
        in_pod(&sa),
        // What the kubelet sets from the `kubernetes` Service; nothing listens there.
        vec![("KUBERNETES_PORT".into(), "tcp://127.0.0.1:9".into())],
    );
    (master, objects, secrets)
}

/// Service account files as a pod has them (the token is not checked without a cluster).
fn service_account(namespace: &str) -> PathBuf {
    let dir = temp_dir("serviceaccount");
    std::fs::write(dir.join("token"), "not-a-real-token").unwrap();
    std::fs::write(dir.join("namespace"), namespace).unwrap();
    std::fs::write(dir.join("ca.crt"), "").unwrap();
    dir
}

#[test]
fn the_generated_latent_master_cfg_passes_checkconfig_in_a_pod() {
    let (master, _, _) = latent_master();
    let out = master
        .buildbot(&["checkconfig", "."])
        .unwrap_or_else(|e| panic!("checkconfig: {e}"));
    assert!(out.contains("Config file is good!"), "{out}");
}

#[test]
fn buildbots_own_pod_for_a_build_carries_the_policy_and_the_stock_one_gets_it_from_the_webhook() {
    let (master, objects, secrets) = latent_master();
    let script = repo_root().join("tests/fixtures/latent/pod_spec.py");
    let out = master.basedir.join("pods.json");
    master
        .python(&[
            script.to_str().unwrap(),
            master.basedir.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("pod_spec.py: {e}"));
    let pods: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let worker = pods["worker"].as_str().unwrap();
    assert_eq!(worker, "bb-worker-0");

    // Ours: Buildbot's pod with the policy added, and the password from the Secret.
    let ours = &pods["ours"];
    assert_eq!(ours["spec"]["restartPolicy"], "Never", "{ours}");
    assert_eq!(
        ours["metadata"]["labels"]["app.kubernetes.io/instance"], "bb",
        "the NetworkPolicy and delete select on it"
    );
    assert_eq!(
        ours["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
    assert_eq!(ours["spec"]["securityContext"]["fsGroup"], 1000);
    assert_eq!(ours["spec"]["terminationGracePeriodSeconds"], 3600);
    let container = &ours["spec"]["containers"][0];
    assert_eq!(container["resources"]["requests"]["cpu"], "500m");
    assert_eq!(container["securityContext"]["runAsNonRoot"], true);
    assert!(container.get("lifecycle").is_none(), "no preStop hook");
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(var("BUILDMASTER").unwrap()["value"], "bb");
    assert_eq!(var("BUILDMASTER_PORT").unwrap()["value"], "9989");
    assert_eq!(var("WORKERNAME").unwrap()["value"], worker);
    // Buildbot's own random password, made at each configuration of the master.
    let password = var("WORKERPASS").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(password.len() >= 16, "{password}");
    assert!(!secrets.workers.values().any(|p| *p == password));
    // The webhook (preview is its policy) finds nothing to add.
    let preview = |pod: &Value, diff: bool| {
        let mut args = vec!["preview", "-f", "-", "-o", "json"];
        if diff {
            args.push("--diff");
        }
        output_with_stdin(
            std::process::Command::new(workspace_binary("kubectl-buildbot")).args(&args),
            &pod.to_string(),
        )
    };
    preview(ours, true).unwrap_or_else(|d| panic!("the policy would change our pod:\n{d}"));

    // Stock KubeLatentWorker: bare. The webhook completes it, without the hook.
    let stock = &pods["stock"];
    assert_eq!(
        stock["spec"]["containers"][0]["resources"],
        serde_json::json!({})
    );
    let diff = preview(stock, true).expect_err("the policy completes the stock pod");
    assert!(
        diff.contains("cluster-autoscaler.kubernetes.io/safe-to-evict"),
        "{diff}"
    );
    let after: Value = serde_json::from_str(&preview(stock, false).unwrap()).unwrap();
    let after = if after["kind"] == "List" {
        &after["items"][0]
    } else {
        &after
    };
    let c = &after["spec"]["containers"][0];
    assert_eq!(c["resources"]["requests"]["memory"], "1Gi", "{after}");
    assert!(c.get("lifecycle").is_none(), "{after}");
    assert_eq!(after["spec"]["terminationGracePeriodSeconds"], 3600);
    assert_eq!(
        after["metadata"]["labels"]["app.kubernetes.io/component"],
        "worker"
    );

    // Everything deploy renders in latent mode, and both pods, are valid Kubernetes objects.
    let mut all = objects.clone();
    all.push(ours.clone());
    all.push(after.clone());
    e2e_tests::kubernetes_validate(&all, "1.34.0").unwrap_or_else(|e| panic!("{e}"));
}
