//! Pod Security admission on a real API server (the PodSecurity plugin is on by default):
//! `deploy` works in privileged, baseline and restricted namespaces, `status` explains pods
//! that PodSecurity rejects, and the policy never turns a pod that `restricted` admits into one
//! it rejects, checked by the API server itself over held fixtures and generated pods.

use std::process::Output;
use std::time::Duration;

use buildbot_policy::{evaluate_json_in, PodSecurityLevel, Policy, INIT_CONTAINER_NAME};
use e2e_tests::controlplane::{wait_until, ControlPlane};
use e2e_tests::repo_root;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

fn bb(ns: &str, args: &[&str]) -> Output {
    ControlPlane::shared().kubectl_buildbot(ns, args)
}

fn text(out: &Output) -> String {
    e2e_tests::text_of(out)
}

fn level_namespace(cp: &ControlPlane, tag: &str, level: &str) -> String {
    cp.namespace(
        tag,
        &[&format!("pod-security.kubernetes.io/enforce={level}")],
    )
}

/// The init container names of the master's pod.
fn master_init_containers(cp: &ControlPlane, ns: &str) -> Vec<String> {
    let pods = cp.get_json(&["pods", "-n", ns, "-l", "app.kubernetes.io/component=master"]);
    pods["items"][0]["spec"]["initContainers"]
        .as_array()
        .unwrap_or_else(|| panic!("a master pod in {ns}: {pods}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn deploy_works_at_every_pod_security_level() {
    let cp = ControlPlane::shared();
    for (level, chown) in [
        ("privileged", true),
        ("baseline", true),
        ("restricted", false),
    ] {
        let ns = level_namespace(cp, level, level);
        let out = bb(&ns, &["deploy", "bb", "--dry-run=server"]);
        assert!(out.status.success(), "{level}: {}", text(&out));
        let out = bb(&ns, &["deploy", "bb", "--timeout", "90s"]);
        assert!(out.status.success(), "{level}: {}", text(&out));
        let init = master_init_containers(cp, &ns);
        assert_eq!(
            init.contains(&INIT_CONTAINER_NAME.to_string()),
            chown,
            "{level}: {init:?}"
        );
        assert!(init.contains(&"upgrade-master".to_string()), "{init:?}");
        if level == "restricted" {
            assert!(
                text(&out).contains("restricted forbids the root chown init container"),
                "the user is told what fsGroup must cover: {}",
                text(&out)
            );
        }
    }
}

#[test]
fn status_explains_pods_that_pod_security_rejects() {
    let cp = ControlPlane::shared();
    let ns = level_namespace(cp, "tightened", "privileged");
    let out = bb(&ns, &["deploy", "bb", "--timeout", "90s"]);
    assert!(out.status.success(), "{}", text(&out));
    // The namespace is tightened after the deploy: the master's ReplicaSet can no longer
    // create the pod it was given, with the root chown init container.
    cp.kubectl(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    ])
    .unwrap();
    cp.kubectl(&[
        "delete",
        "pods",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/component=master",
        "--wait=false",
    ])
    .unwrap();
    let mut last = String::new();
    wait_until(
        "status to explain the rejection",
        Duration::from_secs(60),
        || {
            last = text(&bb(&ns, &["status", "bb"]));
            last.contains("Pod Security level rejects")
        },
    );
    assert!(last.contains("replicaset/bb-"), "{last}");
    assert!(last.contains("violates PodSecurity"), "{last}");
    assert!(
        last.contains(&format!("kubectl buildbot deploy bb -n {ns}")),
        "{last}"
    );
    // And the fix it names works: deploy renders for the new level.
    let out = bb(&ns, &["deploy", "bb", "--timeout", "90s"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Makes a pod meet `restricted` (so that PodSecurity has something to admit): the profile's
/// fields where it says nothing, claims instead of hostPath volumes, no root user. Anything
/// else it says is kept.
///
/// `per_container`: runAsNonRoot on each container instead of the pod, which restricted
/// accepts too.
fn restrictify(mut pod: Value, per_container: bool) -> Value {
    // The volume kinds restricted forbids become claims (what they stand for in the seed).
    for v in pod["spec"]["volumes"].as_array_mut().into_iter().flatten() {
        if let Some(m) = v.as_object_mut() {
            let forbidden = ["hostPath", "nfs", "gitRepo"].map(|kind| m.remove(kind).is_some());
            if forbidden.contains(&true) {
                m.insert("persistentVolumeClaim".into(), json!({"claimName": "data"}));
            }
        }
    }
    let sc = &mut pod["spec"]["securityContext"];
    if sc.is_null() {
        *sc = json!({});
    }
    sc["seccompProfile"] = json!({"type": "RuntimeDefault"});
    if !per_container {
        sc["runAsNonRoot"] = json!(true);
    }
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let csc = &mut c["securityContext"];
            if csc.is_null() {
                *csc = json!({});
            }
            csc["allowPrivilegeEscalation"] = json!(false);
            csc["capabilities"] = json!({"drop": ["ALL"]});
            if csc["runAsUser"] == 0 {
                csc["runAsUser"] = json!(1234);
            }
            if per_container {
                csc["runAsNonRoot"] = json!(true);
            }
        }
    }
    pod
}

/// Which of `pods` the API server admits in `ns`: one server dry run of them all
/// (PodSecurity included), read per pod. Each pod's refusal, `None` when admitted.
fn admitted(cp: &ControlPlane, ns: &str, pods: &[Value]) -> Vec<Option<String>> {
    let items: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let mut pod = pod.clone();
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            pod["metadata"]["name"] = json!(format!("p{i}"));
            pod
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let (Ok(out) | Err(out)) = cp.kubectl_stdin(
        &["create", "--dry-run=server", "-n", ns, "-f", "-"],
        &list.to_string(),
    );
    (0..pods.len())
        .map(|i| {
            if out.contains(&format!("pod/p{i} created (server dry run)")) {
                None
            } else {
                let marker = format!("\"p{i}\" is forbidden");
                Some(
                    out.lines()
                        .find(|l| l.contains(&marker))
                        .unwrap_or("no answer for this pod")
                        .to_string(),
                )
            }
        })
        .collect()
}

#[test]
fn a_pod_restricted_admits_is_still_admitted_after_the_policy() {
    let cp = ControlPlane::shared();
    let ns = level_namespace(cp, "restricted-property", "restricted");
    let policy = Policy::default();
    let mut named: Vec<(String, Value)> = Vec::new();
    // The held fixtures: the seed's pods, made to meet restricted.
    let fixtures =
        std::fs::read_to_string(repo_root().join("tests/fixtures/seed/pods.yaml")).unwrap();
    for doc in fixtures.split("\n---\n") {
        let v: Value = serde_norway::from_str(doc).unwrap();
        let pod = json!({"metadata": v["metadata"], "spec": v["spec"]});
        for per_container in [false, true] {
            let what = format!(
                "fixture {} (runAsNonRoot per container: {per_container})",
                v["metadata"]["name"]
            );
            named.push((what, restrictify(pod.clone(), per_container)));
        }
    }
    // Generated pods over every feature the policy looks at.
    let mut runner = TestRunner::deterministic();
    let strategy = buildbot_policy::testing::pod_strategy();
    for i in 0..96 {
        let pod = strategy.new_tree(&mut runner).unwrap().current();
        named.push((format!("generated #{i}"), restrictify(pod, i % 2 == 1)));
    }
    let pods: Vec<Value> = named.iter().map(|(_, p)| p.clone()).collect();
    let before = admitted(cp, &ns, &pods);
    let mut patched_pods = Vec::new();
    let mut changed = Vec::new();
    for pod in &pods {
        let eval = evaluate_json_in(pod, &policy, PodSecurityLevel::Restricted).unwrap();
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &eval.patch).unwrap();
        changed.push(!eval.patch.0.is_empty());
        patched_pods.push(patched);
    }
    let after = admitted(cp, &ns, &patched_pods);
    let (mut checked, mut buildbot) = (0, 0);
    for i in 0..pods.len() {
        if before[i].is_some() {
            continue; // restricted rejects it as written: not this property's case
        }
        assert!(
            after[i].is_none(),
            "{}: admitted before the policy, rejected after: {:?}\n{}",
            named[i].0,
            after[i],
            patched_pods[i]
        );
        checked += 1;
        if changed[i] {
            buildbot += 1;
        }
    }
    let rejected: Vec<&String> = before.iter().flatten().collect();
    assert!(
        checked >= 40,
        "only {checked} pods were admitted before the policy; rejected: {rejected:#?}"
    );
    assert!(
        buildbot >= 20,
        "only {buildbot} admitted pods were changed by the policy"
    );
    eprintln!(
        "{checked} pods admitted by restricted, {buildbot} of them changed by the policy: all still admitted"
    );
}
