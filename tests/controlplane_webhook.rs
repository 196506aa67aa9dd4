//! The webhook as the chart installs it, called by a real kube-apiserver: `helm install` of
//! charts/buildbot-webhook (url mode: the API server refuses Service endpoints on loopback, so
//! the webhook runs here, outside the cluster, with the chart's certificate and policy), then
//! pods and workloads applied with `kubectl apply` and read back from the API server.

use std::time::Duration;

use buildbot_policy::Policy;
use e2e_tests::controlplane::{wait_until, ControlPlane};
use e2e_tests::webhook::{helm, Webhook, RELEASE};
use e2e_tests::{free_port, repo_root};
use kubectl_buildbot::preview::preview;
use serde_json::Value;

/// Every leaf of `want` is in `got` with the same value (arrays index by index).
fn leaves_within(want: &Value, got: &Value, path: &str, missing: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                match g.get(k) {
                    Some(gv) => leaves_within(v, gv, &format!("{path}/{k}"), missing),
                    None => missing.push(format!("{path}/{k} absent")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() <= g.len() => {
            for (i, v) in w.iter().enumerate() {
                leaves_within(v, &g[i], &format!("{path}/{i}"), missing);
            }
        }
        (w, g) if w == g => {}
        (w, g) => missing.push(format!("{path}: want {w}, stored {g}")),
    }
}

/// What the policy writes, as stored: labels, grace, pod securityContext, init container
/// names, and each container's resources and lifecycle.
fn policy_surface(pod: &Value) -> Value {
    let spec = if pod["kind"] == "Pod" {
        &pod["spec"]
    } else {
        &pod["spec"]["template"]["spec"]
    };
    let meta = if pod["kind"] == "Pod" {
        &pod["metadata"]
    } else {
        &pod["spec"]["template"]["metadata"]
    };
    // The API server stores an unset resources or securityContext as {}.
    let set = |v: &Value| {
        if v.as_object().is_some_and(serde_json::Map::is_empty) {
            Value::Null
        } else {
            v.clone()
        }
    };
    let containers = |list: &str| -> Value {
        spec[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                serde_json::json!({"name": c["name"], "resources": set(&c["resources"]), "lifecycle": c["lifecycle"]})
            })
            .collect()
    };
    serde_json::json!({
        "labels": meta["labels"],
        // Unset is the API server's default of 30.
        "grace": spec.get("terminationGracePeriodSeconds").cloned().unwrap_or(30.into()),
        "securityContext": set(&spec["securityContext"]),
        "initContainers": containers("initContainers"),
        "containers": containers("containers"),
    })
}

fn apply(cp: &ControlPlane, ns: &str, yaml: &str) {
    cp.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml)
        .unwrap_or_else(|e| panic!("kubectl apply: {e}"));
}

#[test]
fn the_webhook_installed_by_the_chart_mutates_buildbot_pods_and_nothing_else() {
    let cp = ControlPlane::shared();
    let system = cp.namespace("buildbot-webhook", &[]);
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/mutate");
    let chart = repo_root().join("charts/buildbot-webhook");
    let chart = chart.to_str().unwrap();
    helm(
        cp,
        &[
            "install",
            RELEASE,
            chart,
            "-n",
            &system,
            "--set",
            &format!("webhook.url={url}"),
        ],
    );
    let configuration = format!("{RELEASE}-buildbot-webhook");
    let mwc = cp.get_json(&["mutatingwebhookconfiguration", &configuration]);
    assert_eq!(
        mwc["webhooks"][0]["clientConfig"]["url"],
        format!("{url}/privileged")
    );
    let ca = mwc["webhooks"][0]["clientConfig"]["caBundle"].clone();
    assert!(ca.is_string(), "{mwc}");

    // helm upgrade keeps the CA and the certificate (lookup against the real API server).
    let secret_name = format!("{RELEASE}-buildbot-webhook-tls");
    let cert = cp.get_json(&["secret", &secret_name, "-n", &system])["data"]["tls.crt"].clone();
    helm(
        cp,
        &["upgrade", RELEASE, chart, "-n", &system, "--reuse-values"],
    );
    let after = cp.get_json(&["mutatingwebhookconfiguration", &configuration]);
    assert_eq!(
        after["webhooks"][0]["clientConfig"]["caBundle"], ca,
        "same CA after upgrade"
    );
    assert_eq!(
        cp.get_json(&["secret", &secret_name, "-n", &system])["data"]["tls.crt"],
        cert,
        "same certificate after upgrade"
    );

    let webhook = Webhook::start(cp, &system, port);
    let apps = cp.namespace("apps", &[]);
    let opted_out = cp.namespace("opted-out", &["kubectl-buildbot.dev/inject=false"]);
    let fixtures =
        std::fs::read_to_string(repo_root().join("tests/fixtures/seed/pods.yaml")).unwrap();
    let predicted = preview(&fixtures, "pods.yaml", &Policy::default()).unwrap();
    // Policy warnings come back as admission warnings, which kubectl prints.
    let applied = cp
        .kubectl_stdin(&["apply", "-n", &apps, "-f", "-"], &fixtures)
        .unwrap_or_else(|e| panic!("{e}\n{}", webhook.log()));
    assert!(
        applied.contains("Warning: kubectl-buildbot:") || applied.contains("created"),
        "{applied}"
    );
    apply(cp, &opted_out, &fixtures);

    for p in &predicted {
        let name = p.after["metadata"]["name"].as_str().unwrap();
        let stored = cp.get_json(&["pod", name, "-n", &apps]);
        // Everything preview predicts is stored...
        let mut missing = Vec::new();
        leaves_within(&p.after, &stored, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{name}: {missing:#?}\n{}",
            webhook.log()
        );
        // ... and the policy wrote nothing else.
        assert_eq!(policy_surface(&stored), policy_surface(&p.after), "{name}");
        let untouched = cp.get_json(&["pod", name, "-n", &opted_out]);
        assert_eq!(
            policy_surface(&untouched),
            policy_surface(&p.before),
            "{name} in the opted-out namespace is left alone"
        );
        if name == "web" {
            assert!(!p.changed(), "nginx is not Buildbot");
        } else {
            assert!(p.changed(), "{name} is Buildbot");
        }
    }
    let seed_worker = cp.get_json(&["pod", "seed-worker-hostpath", "-n", &apps]);
    assert_eq!(seed_worker["spec"]["terminationGracePeriodSeconds"], 3600);
    assert!(seed_worker["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"].is_object());

    // `doctor` sees the webhook cover `apps`: the pods it admitted have no trap it fixes. In
    // the opted-out namespace the same pods keep them, reported as the user's choice (BB11).
    let doctor = |ns: &str| -> Vec<(String, String)> {
        let out = cp.kubectl_buildbot(ns, &["doctor", "-o", "json"]);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", e2e_tests::text_of(&out)));
        e2e_tests::doctor_findings(&report)
            .into_iter()
            .map(|(code, _, object)| (code, object))
            .collect()
    };
    let in_apps = doctor(&apps);
    assert!(
        !in_apps
            .iter()
            .any(|(code, _)| ["BB04", "BB06", "BB09", "BB11"].contains(&code.as_str())),
        "{in_apps:?}"
    );
    let in_opted_out = doctor(&opted_out);
    assert!(
        in_opted_out.contains(&("BB11".into(), "Pod/seed-worker-hostpath".into())),
        "{in_opted_out:?}"
    );
    assert!(
        !in_opted_out
            .iter()
            .any(|(code, _)| ["BB04", "BB06", "BB09"].contains(&code.as_str())),
        "{in_opted_out:?}"
    );

    // Pods that the real Deployment and StatefulSet controllers create are mutated too.
    let workload =
        std::fs::read_to_string(repo_root().join("tests/fixtures/seed/worker.yaml")).unwrap();
    apply(cp, &apps, &workload);
    let statefulset = workload
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace(
            "name: worker\nspec:\n",
            "name: worker-set\nspec:\n  serviceName: worker-set\n",
        );
    apply(cp, &apps, &statefulset);
    let template = &preview(&workload, "worker.yaml", &Policy::default()).unwrap()[0].after;
    let owned = || -> Vec<Value> {
        let pods = cp.get_json(&["pods", "-n", &apps, "-l", "app=buildbot,tier=worker"]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["ownerReferences"].is_array())
            .cloned()
            .collect()
    };
    wait_until(
        "the controllers' worker pods",
        Duration::from_secs(60),
        || owned().len() >= 2,
    );
    for pod in owned() {
        let mut surface = policy_surface(&pod);
        let mut want = policy_surface(template);
        // The controllers add their own labels (pod-template-hash, revision...).
        surface["labels"] = Value::Null;
        want["labels"] = Value::Null;
        assert_eq!(surface, want, "{}", pod["metadata"]["name"]);
    }

    // A namespace that enforces restricted: the seed's claim worker is admitted, with what the
    // profile requires added and no root chown init container, and the user is told what
    // fsGroup must cover. A hostPath worker is rejected there whatever the webhook does
    // (baseline and restricted forbid hostPath), with the webhook's word on why.
    let restricted = cp.namespace(
        "restricted",
        &["pod-security.kubernetes.io/enforce=restricted"],
    );
    let doc = |name: &str| -> String {
        fixtures
            .split("\n---\n")
            .find(|d| d.contains(&format!("name: {name}\n")))
            .unwrap()
            .to_string()
    };
    let out = cp
        .kubectl_stdin(
            &["apply", "-n", &restricted, "-f", "-"],
            &doc("seed-worker-claim"),
        )
        .unwrap_or_else(|e| {
            panic!(
                "restricted rejected the mutated pod: {e}\n{}",
                webhook.log()
            )
        });
    assert!(
        out.contains(
            "Warning: kubectl-buildbot: Pod Security level restricted forbids the root chown"
        ),
        "{out}"
    );
    let stored = cp.get_json(&["pod", "seed-worker-claim", "-n", &restricted]);
    assert!(
        stored["spec"]["initContainers"].is_null(),
        "{}",
        stored["spec"]
    );
    assert_eq!(stored["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        stored["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(stored["spec"]["securityContext"]["fsGroup"], 1000);
    let worker = &stored["spec"]["containers"][0];
    assert_eq!(worker["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(worker["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(
        worker["lifecycle"]["preStop"].is_object(),
        "graceful stop kept"
    );
    let refused = cp
        .kubectl_stdin(
            &["apply", "-n", &restricted, "-f", "-"],
            &doc("seed-worker-hostpath"),
        )
        .expect_err("PodSecurity rejects hostPath in restricted");
    assert!(refused.contains("violates PodSecurity"), "{refused}");
    assert!(refused.contains("hostPath"), "{refused}");

    // deploy's own pods: the webhook reviews them and has nothing to add.
    let patched_before = webhook.metric("buildbot_webhook_patch_operations_total");
    let reviewed_before = webhook.metric("buildbot_webhook_reviews_total{outcome=\"unchanged\"}");
    let deployed = cp.namespace("deployed", &[]);
    let out = cp.kubectl_buildbot(&deployed, &["deploy", "bb", "--timeout", "3m"]);
    assert!(out.status.success(), "{}", e2e_tests::text_of(&out));
    assert_eq!(
        webhook.metric("buildbot_webhook_patch_operations_total"),
        patched_before,
        "the webhook added nothing to deploy's pods\n{}",
        webhook.log()
    );
    assert!(
        webhook.metric("buildbot_webhook_reviews_total{outcome=\"unchanged\"}")
            >= reviewed_before + 3.0,
        "it did review them (database, master, worker)"
    );

    // With the webhook gone, pods are still admitted (failurePolicy Ignore), unmutated.
    drop(webhook);
    let late = fixtures.replace("name: seed-worker-hostpath", "name: late-worker");
    let started = std::time::Instant::now();
    apply(cp, &apps, &late);
    let stored = cp.get_json(&["pod", "late-worker", "-n", &apps]);
    assert!(
        stored["spec"]["containers"][0]["lifecycle"].is_null(),
        "{stored}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not blocked for long"
    );
}

/// The same chart with the webhook's own Deployment (not url mode) renders what the API server
/// accepts: a server-side dry run of every object.
#[test]
fn the_in_cluster_chart_is_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("chart-dry-run", &[]);
    let chart = repo_root().join("charts/buildbot-webhook");
    // Its own release name: the MutatingWebhookConfiguration is cluster-wide.
    let rendered = helm(
        cp,
        &[
            "template",
            "bbw-in-cluster",
            chart.to_str().unwrap(),
            "-n",
            &ns,
        ],
    );
    let out = cp
        .kubectl_stdin(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            &rendered,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    for kind in [
        "deployment.apps",
        "service",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io",
        "poddisruptionbudget.policy",
    ] {
        assert!(out.contains(kind), "{kind} in {out}");
    }
}
