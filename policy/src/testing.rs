//! Random pods over every feature the policy looks at, for property tests here and in the
//! crates that build on the policy (the webhook's review tests). Behind the `testing` feature.

use proptest::prelude::*;
use serde_json::{json, Value};

fn container(i: usize) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "buildbot/buildbot-worker:v4",
            "buildbot/buildbot-master",
            "postgres:15",
            "nginx",
            "ci/buildbot-worker-rust",
            "busybox",
        ]),
        prop::option::of(prop::sample::select(vec!["BUILDMASTER", "WORKERNAME", "BUILDBOT_DB_URL", "OTHER"])),
        prop::option::of(prop_oneof![Just(json!({"requests": {"cpu": "1"}})), Just(json!({"limits": {"cpu": "100m", "memory": "64Mi"}})), Just(json!({}))]),
        prop::option::of(prop_oneof![Just(json!({"runAsUser": 0})), Just(json!({"runAsUser": 1234, "runAsGroup": 5}))]),
        any::<bool>(),
        prop::collection::vec((0usize..3, any::<bool>(), prop::option::of(Just("sub"))), 0..3),
    )
        .prop_map(move |(image, env, res, sc, pre_stop, mounts)| {
            let mut c = json!({"name": format!("c{i}"), "image": image});
            if let Some(e) = env {
                c["env"] = json!([{"name": e, "value": "x"}]);
            }
            if let Some(r) = res {
                c["resources"] = r;
            }
            if let Some(s) = sc {
                c["securityContext"] = s;
            }
            if pre_stop {
                c["lifecycle"] = json!({"preStop": {"exec": {"command": ["true"]}}});
            }
            let mounts: Vec<Value> = mounts
                .into_iter()
                .map(|(v, ro, sub)| {
                    let mut m = json!({"name": format!("v{v}"), "mountPath": format!("/m{v}"), "readOnly": ro});
                    if let Some(s) = sub {
                        m["subPath"] = json!(s);
                    }
                    m
                })
                .collect();
            if !mounts.is_empty() {
                c["volumeMounts"] = json!(mounts);
            }
            c
        })
}

/// Random pods over every feature the policy looks at (shared with the review tests).
pub fn pod_strategy() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            prop::sample::select(vec![
                ("app", "buildbot"),
                ("tier", "worker"),
                ("tier", "master"),
                ("tier", "postgres"),
                ("app.kubernetes.io/name", "buildbot"),
                ("app.kubernetes.io/component", "worker"),
                ("app.kubernetes.io/component", "database"),
                ("app.kubernetes.io/part-of", "other"),
            ]),
            0..4,
        ),
        prop::option::of(prop::sample::select(vec![
            "kubectl-buildbot.dev/inject",
            "kubectl-buildbot.dev/skip",
            "kubectl-buildbot.dev/role",
            "cluster-autoscaler.kubernetes.io/safe-to-evict",
        ])),
        (1usize..4).prop_flat_map(|n| (0..n).map(container).collect::<Vec<_>>()),
        prop::option::of(prop_oneof![Just(30i64), Just(60), Just(5000)]),
        prop::option::of(prop_oneof![
            Just(json!({"fsGroup": 7})),
            Just(json!({"runAsNonRoot": true})),
            Just(json!({}))
        ]),
        prop::collection::vec(
            prop::sample::select(vec![
                "hostPath",
                "persistentVolumeClaim",
                "emptyDir",
                "configMap",
                "ephemeral",
                "nfs",
                "csi",
                "secret",
                "projected",
                "downwardAPI",
                "gitRepo",
            ]),
            3,
        ),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["Always", "OnFailure", "Never"])),
    )
        .prop_map(
            |(labels, annotation, containers, grace, sc, vol_types, has_init, restart)| {
                let mut pod =
                    json!({"metadata": {"name": "p"}, "spec": {"containers": containers}});
                if !labels.is_empty() {
                    pod["metadata"]["labels"] = labels
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                }
                if let Some(a) = annotation {
                    let v = match a {
                        "kubectl-buildbot.dev/inject" => "false",
                        "kubectl-buildbot.dev/skip" => "labels,resources",
                        "cluster-autoscaler.kubernetes.io/safe-to-evict" => "true",
                        _ => "worker",
                    };
                    pod["metadata"]["annotations"] = json!({a: v});
                }
                if let Some(g) = grace {
                    pod["spec"]["terminationGracePeriodSeconds"] = json!(g);
                }
                if let Some(s) = sc {
                    pod["spec"]["securityContext"] = s;
                }
                let volumes: Vec<Value> = vol_types
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let source = match t {
                            "hostPath" => json!({"path": "/d"}),
                            "persistentVolumeClaim" => json!({"claimName": "c"}),
                            "configMap" => json!({"name": "cm"}),
                            "nfs" => json!({"server": "nfs", "path": "/export"}),
                            "csi" => json!({"driver": "csi.example.com"}),
                            "gitRepo" => json!({"repository": "https://example.com/r.git"}),
                            _ => json!({}),
                        };
                        json!({"name": format!("v{i}"), t: source})
                    })
                    .collect();
                pod["spec"]["volumes"] = json!(volumes);
                if let Some(r) = restart {
                    pod["spec"]["restartPolicy"] = json!(r);
                }
                if has_init {
                    pod["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
                }
                pod
            },
        )
}
