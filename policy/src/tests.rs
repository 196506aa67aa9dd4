//! Table-driven tests of every rule, on the seed write-up's setups and on pods that already do
//! everything right; each fixture is also checked for idempotency and a clean-applying patch.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;

/// The seed's first attempt: one pod with the master and PostgreSQL side by side.
const SEED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: buildbot
  labels: {app: buildbot}
spec:
  containers:
  - name: master
    image: buildbot/buildbot-master:master
    env:
    - {name: BUILDBOT_CONFIG_DIR, value: config}
    - {name: BUILDBOT_WORKER_PORT, value: "9989"}
    - {name: BUILDBOT_DB_URL, value: "postgresql+psycopg2://buildbot:change_me@db/buildbot"}
    ports: [{containerPort: 8080}]
  - name: postgres
    image: postgres:9.4
    env:
    - {name: POSTGRES_PASSWORD, value: change_me}
    - {name: BUILDBOT_DB_URL, value: "postgresql+psycopg2://{POSTGRES_USER}:{POSTGRES_PASSWORD}@db/{POSTGRES_DB}"}
"#;

/// The seed's master Deployment's pod template, with its claim.
const SEED_MASTER: &str = r#"
metadata:
  labels: {app: buildbot, tier: master}
spec:
  containers:
  - name: master
    image: buildbot/buildbot-master:master
    ports: [{containerPort: 8080}, {containerPort: 9989}]
    volumeMounts: [{name: master-persistent-storage, mountPath: /var/lib/buildbot}]
  volumes:
  - name: master-persistent-storage
    persistentVolumeClaim: {claimName: master-pv-claim}
"#;

/// The seed's worker: hostPath storage owned by root, no requests, 30 s grace.
const SEED_WORKER: &str = r#"
metadata:
  labels: {app: buildbot, tier: worker}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: worker
    image: buildbot/buildbot-worker:master
    env:
    - {name: BUILDMASTER, value: master}
    - {name: BUILDMASTER_PORT, value: "9989"}
    - {name: WORKERNAME, value: example-worker}
    - {name: WORKERPASS, value: pass}
    volumeMounts: [{name: worker-storage, mountPath: /buildbot}]
  volumes:
  - name: worker-storage
    hostPath: {path: /data/pv-3}
"#;

/// The seed's PostgreSQL Deployment.
const SEED_POSTGRES: &str = r#"
metadata:
  labels: {app: buildbot, tier: postgres}
spec:
  containers:
  - name: postgres
    image: postgres:9.4
    volumeMounts: [{name: postgres-persistent-storage, mountPath: /var/lib/postgresql/data}]
  volumes:
  - name: postgres-persistent-storage
    persistentVolumeClaim: {claimName: postgres-pv-claim}
"#;

/// The seed's final worker: custom image (misspelled), its own CPU request.
const SEED_ROBUST_WORKER: &str = r#"
metadata:
  labels: {app: buildbot, tier: worker}
spec:
  containers:
  - name: worker
    image: quay.io/elijahcaine/buidlbot-rust-worker
    resources: {requests: {cpu: 200m}}
"#;

/// A worker that already does everything itself.
const SELF_MANAGED_WORKER: &str = r#"
metadata:
  labels:
    app.kubernetes.io/name: buildbot
    app.kubernetes.io/component: worker
    app.kubernetes.io/part-of: ci
spec:
  terminationGracePeriodSeconds: 60
  securityContext: {fsGroup: 2000}
  containers:
  - name: worker
    image: buildbot/buildbot-worker:v4.3.0
    resources: {requests: {cpu: "1", memory: 2Gi}}
    lifecycle: {preStop: {exec: {command: [sh, -c, "my-drain"]}}}
    volumeMounts: [{name: scratch, mountPath: /buildbot}]
  volumes:
  - {name: scratch, emptyDir: {}}
"#;

/// What Buildbot 4.3's `KubeLatentWorker.getPodSpec` sends for one build: a name, the
/// worker's environment, empty customisation points, `restartPolicy: Never`.
const LATENT_WORKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: buildbot-latent-0-0a1b2c}
spec:
  affinity: {}
  containers:
  - name: buildbot-latent-0-0a1b2c
    image: buildbot/buildbot-worker:v4.3.0
    env:
    - {name: BUILDMASTER, value: buildbot}
    - {name: BUILDMASTER_PROTOCOL, value: pb}
    - {name: WORKERNAME, value: latent-0}
    - {name: WORKERPASS, value: secret}
    - {name: BUILDMASTER_PORT, value: "9989"}
    resources: {}
    volumeMounts: []
  nodeSelector: {}
  restartPolicy: Never
  volumes: []
"#;

const NGINX: &str = r#"
metadata: {labels: {app: web}}
spec:
  containers: [{name: nginx, image: nginx:1.27}]
  volumes: [{name: data, hostPath: {path: /srv}}]
"#;

const LONE_POSTGRES: &str = r#"
metadata: {labels: {app: db}}
spec:
  containers: [{name: postgres, image: postgres:16}]
"#;

/// A custom image recognised by its environment only, with a sidecar.
const ENV_WORKER: &str = r#"
metadata: {name: w}
spec:
  containers:
  - name: builder
    image: registry.example.com/ci/rust-builder:2
    env: [{name: BUILDMASTER, value: buildbot}]
  - name: log-shipper
    image: fluent/fluent-bit:3
"#;

fn pod(yaml: &str) -> Pod {
    serde_norway::from_str(yaml).expect("fixture parses as a Pod")
}

fn raw(yaml: &str) -> Value {
    serde_norway::from_str(yaml).expect("fixture parses as YAML")
}

/// Evaluates, applies the patch to the fixture as written (not a typed round trip) and checks
/// that a second evaluation of the result has nothing left to do.
fn run_with(yaml: &str, policy: &Policy) -> (Evaluation, Value) {
    let mut doc = raw(yaml);
    let eval = evaluate_json(&doc, policy).expect("a pod");
    assert_eq!(
        eval.patch.0.is_empty(),
        evaluate(&pod(yaml), policy).patch.0.is_empty(),
        "typed and raw agree"
    );
    json_patch::patch(&mut doc, &eval.patch)
        .unwrap_or_else(|e| panic!("patch applies: {e}\n{:?}", eval.patch));
    let again = evaluate_json(&doc, policy).unwrap();
    assert!(
        again.patch.0.is_empty(),
        "idempotent, but second pass gave {:?}",
        again.patch
    );
    (eval, doc)
}

fn run(yaml: &str) -> (Evaluation, Value) {
    run_with(yaml, &Policy::default())
}

fn labels(doc: &Value) -> &Value {
    &doc["metadata"]["labels"]
}

#[test]
fn recognises_roles_from_every_kind_of_evidence() {
    let cases: &[(&str, Option<Role>, Option<Skipped>)] = &[
        (SEED_POD, Some(Role::Master), None),
        (SEED_MASTER, Some(Role::Master), None),
        (SEED_WORKER, Some(Role::Worker), None),
        (SEED_POSTGRES, Some(Role::Database), None),
        (SEED_ROBUST_WORKER, Some(Role::Worker), None),
        (SELF_MANAGED_WORKER, Some(Role::Worker), None),
        (ENV_WORKER, Some(Role::Worker), None),
        (NGINX, None, Some(Skipped::NotBuildbot)),
        (LONE_POSTGRES, None, Some(Skipped::NotBuildbot)),
        ("metadata: {labels: {app: buildbot}}\nspec: {containers: [{name: x, image: nginx}]}", None, Some(Skipped::UnknownRole)),
        (
            "metadata: {annotations: {kubectl-buildbot.dev/role: worker}}\nspec: {containers: [{name: x, image: ci/custom}]}",
            Some(Role::Worker),
            None,
        ),
        ("spec: {containers: [{name: m, image: 'docker.io/buildbot/buildbot-master:v4'}]}", Some(Role::Master), None),
        ("spec: {containers: [{name: m, image: ci/my-buildbot-worker-rust}]}", Some(Role::Worker), None),
        ("spec: {containers: [{name: m, image: ci/x, env: [{name: BUILDBOT_CONFIG_URL, value: u}]}]}", Some(Role::Master), None),
        ("metadata: {labels: {app.kubernetes.io/part-of: buildbot, app.kubernetes.io/component: db}}\nspec: {containers: [{name: pg, image: bitnami/postgresql}]}", Some(Role::Database), None),
    ];
    for (yaml, role, skipped) in cases {
        let (eval, _) = run(yaml);
        assert_eq!(eval.role, *role, "role of {yaml}");
        assert_eq!(eval.skipped, *skipped, "skipped of {yaml}");
    }
}

#[test]
fn non_buildbot_pods_get_no_patch_at_all() {
    for yaml in [NGINX, LONE_POSTGRES] {
        let (eval, _) = run(yaml);
        assert!(eval.patch.0.is_empty() && eval.changes.is_empty() && eval.warnings.is_empty());
    }
}

#[test]
fn seed_pod_with_master_and_postgres() {
    let (eval, doc) = run(SEED_POD);
    assert_eq!(labels(&doc)["app"], "buildbot", "existing label kept");
    assert_eq!(labels(&doc)["app.kubernetes.io/name"], "buildbot");
    assert_eq!(labels(&doc)["app.kubernetes.io/component"], "master");
    assert_eq!(labels(&doc)["app.kubernetes.io/part-of"], "buildbot");
    let c = &doc["spec"]["containers"];
    assert_eq!(
        c[0]["resources"]["requests"],
        json!({"cpu": "250m", "memory": "512Mi"})
    );
    assert_eq!(
        c[1]["resources"]["requests"],
        json!({"cpu": "100m", "memory": "256Mi"}),
        "postgres gets database requests"
    );
    assert_eq!(
        doc["spec"]["securityContext"],
        json!({"fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch"})
    );
    assert!(
        doc["spec"].get("terminationGracePeriodSeconds").is_none(),
        "masters keep their grace"
    );
    assert!(
        eval.warnings
            .iter()
            .any(|w| w.contains("database shares this pod")),
        "{:?}",
        eval.warnings
    );
}

#[test]
fn seed_master_claim_is_chowned_to_buildbot() {
    let (eval, doc) = run(SEED_MASTER);
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(init["name"], INIT_CONTAINER_NAME);
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "master-persistent-storage", "mountPath": "/kubectl-buildbot/volumes/0"}])
    );
    let script = init["command"][2].as_str().unwrap();
    assert!(
        script.contains("fix /kubectl-buildbot/volumes/0 1000 1000 ''"),
        "{script}"
    );
    let sc = &init["securityContext"];
    assert_eq!(sc["runAsUser"], 0);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(
        sc["capabilities"],
        json!({"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]})
    );
    assert_eq!(
        init["resources"]["requests"],
        json!({"cpu": "10m", "memory": "32Mi"})
    );
    assert_eq!(
        eval.injected(),
        vec!["fsGroup", "labels", "resources", "volumeOwnership"]
    );
}

#[test]
fn seed_worker_gets_grace_hook_requests_and_chown() {
    let (eval, doc) = run(SEED_WORKER);
    assert_eq!(
        doc["spec"]["terminationGracePeriodSeconds"], 3600,
        "the API default of 30 is raised"
    );
    let worker = &doc["spec"]["containers"][0];
    assert_eq!(
        worker["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    let cmd = &worker["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(cmd[0], "python3");
    assert_eq!(cmd[2], *INJECTED_SCRIPT);
    assert_eq!(
        doc["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
        "worker-storage"
    );
    assert_eq!(labels(&doc)["tier"], "worker");
    assert_eq!(labels(&doc)["app.kubernetes.io/component"], "worker");
    assert!(eval.injected().contains(&"gracefulStop"));
}

#[test]
fn seed_postgres_volume_belongs_to_postgres_and_is_private() {
    let (_, doc) = run(SEED_POSTGRES);
    assert_eq!(doc["spec"]["securityContext"]["fsGroup"], 999);
    let script = doc["spec"]["initContainers"][0]["command"][2]
        .as_str()
        .unwrap();
    assert!(
        script.contains("fix /kubectl-buildbot/volumes/0 999 999 '0700'"),
        "{script}"
    );
    assert_eq!(
        doc["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "256Mi"
    );
    assert!(doc["spec"]["containers"][0].get("lifecycle").is_none());
}

#[test]
fn stated_requests_are_never_touched() {
    let (_, doc) = run(SEED_ROBUST_WORKER);
    assert_eq!(
        doc["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "200m"}})
    );
}

#[test]
fn a_pod_that_does_everything_itself_is_left_as_it_is() {
    let (eval, doc) = run(SELF_MANAGED_WORKER);
    assert!(eval.patch.0.is_empty(), "{:?}", eval.patch);
    assert_eq!(doc, raw(SELF_MANAGED_WORKER));
    assert!(
        eval.warnings
            .iter()
            .any(|w| w.contains("terminationGracePeriodSeconds=60 kept")),
        "{:?}",
        eval.warnings
    );
    assert!(
        eval.warnings
            .iter()
            .any(|w| w.contains("keeps its own preStop")),
        "{:?}",
        eval.warnings
    );
}

#[test]
fn sidecars_get_small_requests_and_no_hook() {
    let (_, doc) = run(ENV_WORKER);
    let c = &doc["spec"]["containers"];
    assert_eq!(c[0]["resources"]["requests"]["cpu"], "500m");
    assert!(c[0]["lifecycle"]["preStop"].is_object());
    assert_eq!(
        c[1]["resources"]["requests"],
        json!({"cpu": "50m", "memory": "64Mi"})
    );
    assert!(c[1].get("lifecycle").is_none());
}

#[test]
fn requests_never_exceed_limits() {
    let yaml = "metadata: {labels: {app: buildbot, tier: worker}}\nspec: {containers: [{name: w, image: buildbot/buildbot-worker, resources: {limits: {cpu: 250m, memory: 4Gi}}}]}";
    let (eval, doc) = run(yaml);
    assert_eq!(
        doc["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "250m", "memory": "1Gi"})
    );
    assert_eq!(
        doc["spec"]["containers"][0]["resources"]["limits"],
        json!({"cpu": "250m", "memory": "4Gi"})
    );
    assert!(
        eval.warnings.iter().any(|w| w.contains("cpu limit 250m")),
        "{:?}",
        eval.warnings
    );
}

#[test]
fn chown_follows_the_user_the_container_runs_as() {
    let yaml = r#"
metadata: {labels: {app: buildbot, tier: worker}}
spec:
  securityContext: {runAsGroup: 3000}
  containers:
  - name: w
    image: buildbot/buildbot-worker
    securityContext: {runAsUser: 2000}
    volumeMounts:
    - {name: data, mountPath: /buildbot, subPath: w1}
    - {name: cfg, mountPath: /etc/cfg}
    - {name: ro, mountPath: /ro, readOnly: true}
    - {name: tmp, mountPath: /tmp}
  volumes:
  - {name: data, hostPath: {path: /data}}
  - {name: cfg, configMap: {name: c}}
  - {name: ro, hostPath: {path: /ro}}
  - {name: tmp, emptyDir: {}}
"#;
    let (_, doc) = run(yaml);
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "data", "mountPath": "/kubectl-buildbot/volumes/0", "subPath": "w1"}])
    );
    assert!(init["command"][2]
        .as_str()
        .unwrap()
        .contains("fix /kubectl-buildbot/volumes/0 2000 3000 ''"));
    assert_eq!(doc["spec"]["securityContext"]["fsGroup"], 3000);
}

#[test]
fn init_container_goes_first_and_root_or_non_root_pods_get_none() {
    let first = "metadata: {labels: {app: buildbot, tier: worker}}\nspec:\n  initContainers: [{name: clone, image: alpine/git}]\n  containers: [{name: w, image: buildbot/buildbot-worker, volumeMounts: [{name: d, mountPath: /b}]}]\n  volumes: [{name: d, hostPath: {path: /d}}]";
    let (_, doc) = run(first);
    assert_eq!(
        doc["spec"]["initContainers"][0]["name"],
        INIT_CONTAINER_NAME
    );
    assert_eq!(doc["spec"]["initContainers"][1]["name"], "clone");

    let root = first.replace(
        "image: buildbot/buildbot-worker,",
        "image: buildbot/buildbot-worker, securityContext: {runAsUser: 0},",
    );
    let (_, doc) = run(&root);
    assert_eq!(
        doc["spec"]["initContainers"].as_array().unwrap().len(),
        1,
        "root writes anywhere"
    );

    let non_root = first.replace(
        "spec:\n",
        "spec:\n  securityContext: {runAsNonRoot: true}\n",
    );
    let (eval, doc) = run(&non_root);
    assert_eq!(doc["spec"]["initContainers"].as_array().unwrap().len(), 1);
    assert!(eval.warnings.iter().any(|w| w.contains("runAsNonRoot")));
}

/// A ResourceQuota on requests rejects a pod in which any container, init containers included,
/// has none: every init container of a Buildbot pod gets requests, at no scheduling cost.
#[test]
fn init_containers_get_requests_capped_at_what_the_pod_already_requests() {
    let pod = |main: &str, init: &str| {
        format!(
            "metadata: {{labels: {{app: buildbot, tier: worker}}}}\nspec:\n  initContainers: [{{name: setup, image: busybox{init}}}]\n  containers: [{{name: w, image: buildbot/buildbot-worker{main}}}]"
        )
    };
    let requests = |doc: &Value, list: &str, i: usize| doc["spec"][list][i]["resources"].clone();
    // (main container, init container, the init container's resources afterwards)
    let table = [
        // The worker's own requests: the init container runs before it, in the same room.
        (
            "",
            "",
            json!({"requests": {"cpu": "500m", "memory": "1Gi"}}),
        ),
        // The main container asks for less: the init container stays within it.
        (
            ", resources: {requests: {cpu: 100m, memory: 128Mi}}",
            "",
            json!({"requests": {"cpu": "100m", "memory": "128Mi"}}),
        ),
        // Never above the init container's own limit.
        (
            "",
            ", resources: {limits: {cpu: 200m}}",
            json!({"limits": {"cpu": "200m"}, "requests": {"cpu": "200m", "memory": "1Gi"}}),
        ),
        // Stated requests are the user's.
        (
            "",
            ", resources: {requests: {memory: 1Mi}}",
            json!({"requests": {"memory": "1Mi"}}),
        ),
        // A sidecar init container runs beside the worker: sidecar requests.
        (
            "",
            ", restartPolicy: Always",
            json!({"requests": {"cpu": "50m", "memory": "64Mi"}}),
        ),
    ];
    for (main, init, want) in table {
        let (eval, doc) = run(&pod(main, init));
        assert_eq!(requests(&doc, "initContainers", 0), want, "{main} {init}");
        if !init.contains("requests") {
            assert!(
                eval.changes
                    .iter()
                    .any(|c| c.mutation == Mutation::Resources && c.detail.contains("\"setup\"")),
                "{:?}",
                eval.changes
            );
        }
    }

    // The cap counts both what containers state and what the rule adds: a worker asking for
    // 100m and 128Mi, and a sidecar given 50m and 64Mi, sum to less than the worker defaults,
    // so the init container gets the largest single request of each.
    let (_, doc) = run(
        "metadata: {labels: {app: buildbot, tier: worker}}\nspec:\n  initContainers: [{name: setup, image: busybox}]\n  containers:\n  - {name: w, image: buildbot/buildbot-worker, resources: {requests: {cpu: 100m, memory: 128Mi}}}\n  - {name: s, image: sidecar, resources: {limits: {memory: 32Mi}}}",
    );
    assert_eq!(
        requests(&doc, "containers", 1),
        json!({"limits": {"memory": "32Mi"}, "requests": {"cpu": "50m", "memory": "32Mi"}})
    );
    assert_eq!(
        requests(&doc, "initContainers", 0),
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    let (_, doc) = run(&pod("", "").replace(
        "containers: [{name: w, image: buildbot/buildbot-worker}]",
        "containers: [{name: w, image: buildbot/buildbot-worker}, {name: s, image: sidecar, resources: {requests: {cpu: 10m, memory: 16Mi}}}]",
    ));
    // The worker's added 500m and 1Gi and the sidecar's own requests sum to more than the
    // defaults, which stay (counting only the sidecar's would give 10m and 16Mi).
    assert_eq!(
        requests(&doc, "initContainers", 0),
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}})
    );

    // Behind the chown init container, the patch still reaches the user's own.
    let hostpath = pod("", "").replace(
        "image: buildbot/buildbot-worker}]",
        "image: buildbot/buildbot-worker, volumeMounts: [{name: d, mountPath: /b}]}]\n  volumes: [{name: d, hostPath: {path: /d}}]",
    );
    let (_, doc) = run(&hostpath);
    assert_eq!(
        doc["spec"]["initContainers"][0]["name"],
        INIT_CONTAINER_NAME
    );
    assert_eq!(
        doc["spec"]["initContainers"][0]["resources"]["requests"]["cpu"],
        Policy::default().permissions.init_resources.cpu
    );
    assert_eq!(
        requests(&doc, "initContainers", 1),
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}})
    );

    // The policy can leave init containers alone.
    let mut policy = Policy::default();
    policy.resources.init_containers = false;
    let (_, doc) = run_with(&pod("", ""), &policy);
    assert_eq!(requests(&doc, "initContainers", 0), Value::Null);
}

/// PodSecurity admission runs after mutating webhooks: under `restricted` the policy must not
/// add the root chown init container, which that level rejects; `baseline` allows it.
#[test]
fn the_pod_security_level_decides_the_chown_init_container() {
    let policy = Policy::default();
    for (level, chown) in [
        (PodSecurityLevel::Privileged, true),
        (PodSecurityLevel::Baseline, true),
        (PodSecurityLevel::Restricted, false),
    ] {
        let eval = evaluate_in(&pod(SEED_MASTER), &policy, level);
        let mut doc = raw(SEED_MASTER);
        json_patch::patch(&mut doc, &eval.patch).unwrap();
        let has_init = doc["spec"]["initContainers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == INIT_CONTAINER_NAME));
        assert_eq!(has_init, chown, "{level}");
        // fsGroup is what restricted leaves the volume to.
        assert_eq!(doc["spec"]["securityContext"]["fsGroup"], 1000, "{level}");
        let warned = eval
            .warnings
            .iter()
            .any(|w| w.contains("restricted forbids"));
        assert_eq!(warned, !chown, "{level}: {:?}", eval.warnings);
        // Everything else is the same at every level.
        let again = evaluate_json_in(&doc, &policy, level).unwrap();
        assert!(again.patch.0.is_empty(), "{level}: {:?}", again.patch);
    }
}

/// A seed-style worker on a claim, in a `restricted` namespace: the policy adds what the
/// profile requires and the pod left unset, so that PodSecurity admits it; what the user set
/// against the profile is kept and reported.
#[test]
fn restricted_namespaces_get_what_the_profile_requires() {
    let claim_worker = "metadata: {labels: {app: buildbot, tier: worker}}\nspec:\n  initContainers: [{name: setup, image: busybox}]\n  containers:\n  - {name: worker, image: buildbot/buildbot-worker, volumeMounts: [{name: b, mountPath: /buildbot}]}\n  - {name: sidecar, image: nginx}\n  volumes: [{name: b, persistentVolumeClaim: {claimName: builds}}]";
    let policy = Policy::default();
    let mut doc = raw(claim_worker);
    let eval = evaluate_json_in(&doc, &policy, PodSecurityLevel::Restricted).unwrap();
    json_patch::patch(&mut doc, &eval.patch).unwrap();
    let spec = &doc["spec"];
    assert_eq!(
        spec["securityContext"]["seccompProfile"],
        json!({"type": "RuntimeDefault"})
    );
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["fsGroup"], 1000);
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array().unwrap() {
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{c}"
            );
            assert_eq!(
                c["securityContext"]["capabilities"]["drop"],
                json!(["ALL"]),
                "{c}"
            );
        }
    }
    assert_eq!(
        spec["initContainers"].as_array().unwrap().len(),
        1,
        "no chown init container"
    );
    // The Buildbot container runs as its role's user; the sidecar's user is its image's.
    assert_eq!(spec["containers"][0]["securityContext"]["runAsUser"], 1000);
    assert!(spec["containers"][1]["securityContext"]["runAsUser"].is_null());
    assert!(
        eval.injected().contains(&"podSecurity"),
        "{:?}",
        eval.injected()
    );
    let again = evaluate_json_in(&doc, &policy, PodSecurityLevel::Restricted).unwrap();
    assert!(again.patch.0.is_empty(), "{:?}", again.patch);

    // What the user set against the profile is kept, and said.
    let (level, root_sidecar, expected) = (
        PodSecurityLevel::Restricted,
        claim_worker.replace(
            "image: nginx}",
            "image: nginx, securityContext: {runAsUser: 0, capabilities: {add: [NET_ADMIN]}}}",
        ),
        ["runs as root", "adds capabilities"],
    );
    let eval = evaluate_json_in(&raw(&root_sidecar), &policy, level).unwrap();
    for e in expected {
        assert!(
            eval.warnings.iter().any(|w| w.contains(e)),
            "{e}: {:?}",
            eval.warnings
        );
    }
    // hostPath cannot be admitted under baseline or restricted: said, not hidden.
    for level in [PodSecurityLevel::Baseline, PodSecurityLevel::Restricted] {
        let eval = evaluate_in(&pod(SEED_WORKER), &policy, level);
        assert!(
            eval.warnings
                .iter()
                .any(|w| w.contains("forbids hostPath volumes")),
            "{level}: {:?}",
            eval.warnings
        );
    }
    // Baseline and privileged namespaces get none of the restricted defaults.
    for level in [PodSecurityLevel::Privileged, PodSecurityLevel::Baseline] {
        let eval = evaluate_json_in(&raw(claim_worker), &policy, level).unwrap();
        assert!(!eval.injected().contains(&"podSecurity"), "{level}");
    }
    // And the switch turns it off.
    let mut off = Policy::default();
    off.mutations.pod_security = false;
    let eval = evaluate_json_in(&raw(claim_worker), &off, PodSecurityLevel::Restricted).unwrap();
    assert!(!eval.injected().contains(&"podSecurity"));
}

#[test]
fn opt_out_annotation_and_skip_list() {
    let out = SEED_WORKER.replace(
        "metadata:\n",
        "metadata:\n  annotations: {kubectl-buildbot.dev/inject: \"false\"}\n",
    );
    let (eval, _) = run(&out);
    assert_eq!(eval.skipped, Some(Skipped::OptedOut));
    assert!(eval.patch.0.is_empty());

    let skip = SEED_WORKER.replace(
        "metadata:\n",
        "metadata:\n  annotations: {kubectl-buildbot.dev/skip: \"resources, gracefulStop\"}\n",
    );
    let (eval, doc) = run(&skip);
    assert_eq!(
        eval.injected(),
        vec!["fsGroup", "labels", "volumeOwnership"]
    );
    assert_eq!(doc["spec"]["terminationGracePeriodSeconds"], 30);
}

#[test]
fn each_mutation_can_be_switched_off_in_the_policy() {
    for m in Mutation::ALL {
        let mut policy = Policy::default();
        match m {
            Mutation::Labels => policy.mutations.labels = false,
            Mutation::FsGroup => policy.mutations.fs_group = false,
            Mutation::VolumeOwnership => policy.mutations.volume_ownership = false,
            Mutation::Resources => policy.mutations.resources = false,
            Mutation::GracefulStop => policy.mutations.graceful_stop = false,
            // Only acts in restricted namespaces: see the Pod Security tests.
            Mutation::PodSecurity => policy.mutations.pod_security = false,
        }
        let (eval, _) = run_with(SEED_WORKER, &policy);
        let expected: Vec<&str> = [
            "fsGroup",
            "gracefulStop",
            "labels",
            "resources",
            "volumeOwnership",
        ]
        .into_iter()
        .filter(|n| *n != m.name())
        .collect();
        assert_eq!(eval.injected(), expected, "with {m} off");
    }
}

#[test]
fn policy_values_are_used() {
    let policy = Policy::from_yaml(
        "identity: {buildbot: {uid: 1001, gid: 1002}}\n\
         resources: {worker: {cpu: '2', memory: 3Gi}}\n\
         permissions: {initImage: 'registry.local/busybox:1', chownVolumeTypes: [hostPath]}\n\
         gracefulStop: {terminationGracePeriodSeconds: 7200, masterUrl: 'http://bb:8080/'}\n",
    )
    .unwrap();
    let (_, doc) = run_with(SEED_WORKER, &policy);
    assert_eq!(doc["spec"]["terminationGracePeriodSeconds"], 7200);
    assert_eq!(doc["spec"]["securityContext"]["fsGroup"], 1002);
    let c = &doc["spec"]["containers"][0];
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "2", "memory": "3Gi"})
    );
    assert_eq!(
        c["lifecycle"]["preStop"]["exec"]["command"][3],
        "http://bb:8080/"
    );
    let init = &doc["spec"]["initContainers"][0];
    assert_eq!(init["image"], "registry.local/busybox:1");
    assert!(init["command"][2].as_str().unwrap().contains(" 1001 1002 "));

    // Claims are not chowned when the policy leaves them out.
    let (_, doc) = run_with(SEED_MASTER, &policy);
    assert!(doc["spec"].get("initContainers").is_none());

    let custom = Policy::from_yaml("gracefulStop: {preStopCommand: [/bin/drain, --wait]}").unwrap();
    let (_, doc) = run_with(SEED_WORKER, &custom);
    assert_eq!(
        doc["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"],
        json!(["/bin/drain", "--wait"])
    );
}

#[test]
fn grace_is_only_ever_raised() {
    let low = Policy::from_yaml("gracefulStop: {terminationGracePeriodSeconds: 10}").unwrap();
    let (_, doc) = run_with(SEED_WORKER, &low);
    assert_eq!(
        doc["spec"]["terminationGracePeriodSeconds"], 30,
        "explicit/API default 30 not lowered"
    );
    let unset = SEED_WORKER.replace("  terminationGracePeriodSeconds: 30\n", "");
    let (_, doc) = run_with(&unset, &low);
    assert_eq!(doc["spec"]["terminationGracePeriodSeconds"], 10);
    let (_, doc) = run(&unset);
    assert_eq!(doc["spec"]["terminationGracePeriodSeconds"], 3600);
}

#[test]
fn existing_recommended_labels_are_never_changed() {
    let yaml = "metadata: {labels: {app.kubernetes.io/name: buildbot, app.kubernetes.io/component: worker, app.kubernetes.io/part-of: my-ci}}\nspec: {containers: [{name: w, image: buildbot/buildbot-worker}]}";
    let (eval, doc) = run(yaml);
    assert_eq!(labels(&doc)["app.kubernetes.io/part-of"], "my-ci");
    assert!(!eval.injected().contains(&"labels"));
}

#[test]
fn null_and_empty_fields_written_by_hand_are_handled() {
    let yaml = "metadata:\n  labels:\n  annotations:\nspec:\n  securityContext:\n  containers:\n  - name: w\n    image: buildbot/buildbot-worker\n    resources: {requests: {}}\n    lifecycle:\n";
    let (_, doc) = run(yaml);
    assert_eq!(labels(&doc)["app.kubernetes.io/component"], "worker");
    assert_eq!(doc["spec"]["securityContext"]["fsGroup"], 1000);
    assert_eq!(
        doc["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
}

#[test]
fn changes_say_what_was_injected() {
    let (eval, _) = run(SEED_WORKER);
    let text: Vec<String> = eval
        .changes
        .iter()
        .map(|c| format!("{}: {}", c.mutation, c.detail))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("labels: added labels app.kubernetes.io/name=buildbot")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t
                == "resources: requested cpu=500m, memory=1Gi for worker container \"worker\""),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t == "volumeOwnership: init container buildbot-volume-permissions chowns worker-storage→1000:1000"), "{text:?}");
}

mod properties {
    //! Random pods: the patch always applies, a second pass is empty, and no value the user
    //! set is changed (other than raising the API-default grace of 30 s).
    use super::*;
    use crate::testing::pod_strategy;
    use proptest::prelude::*;

    /// Every leaf of `before` is still in `after` with the same value.
    fn leaves_kept(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
        match (before, after) {
            (Value::Object(b), Value::Object(a)) => {
                for (k, v) in b {
                    match a.get(k) {
                        Some(av) => leaves_kept(v, av, &format!("{path}/{k}"), out),
                        None => out.push(format!("{path}/{k} removed")),
                    }
                }
            }
            (Value::Array(b), Value::Array(a)) if b.len() <= a.len() => {
                // Our only insertion is the init container at index 0.
                let offset = if path.ends_with("/initContainers") {
                    a.len() - b.len()
                } else {
                    0
                };
                for (i, v) in b.iter().enumerate() {
                    leaves_kept(v, &a[i + offset], &format!("{path}/{i}"), out);
                }
            }
            (b, a) if b == a => {}
            (b, a) => out.push(format!("{path}: {b} -> {a}")),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn patch_applies_is_idempotent_and_never_overwrites(
            doc in pod_strategy(),
            level in prop::sample::select(vec![
                PodSecurityLevel::Privileged,
                PodSecurityLevel::Baseline,
                PodSecurityLevel::Restricted,
            ]),
        ) {
            let policy = Policy::default();
            let pod: Pod = serde_json::from_value(doc.clone()).unwrap();
            let eval = evaluate_in(&pod, &policy, level);
            let mut patched = doc.clone();
            json_patch::patch(&mut patched, &eval.patch).unwrap();
            let second = evaluate_in(&serde_json::from_value(patched.clone()).unwrap(), &policy, level);
            prop_assert!(second.patch.0.is_empty(), "second pass: {:?}", second.patch);
            let mut changed = Vec::new();
            leaves_kept(&doc, &patched, "", &mut changed);
            changed.retain(|c| c != "/spec/terminationGracePeriodSeconds: 30 -> 3600");
            prop_assert!(changed.is_empty(), "overwritten: {:?}", changed);
            if eval.skipped.is_some() {
                prop_assert!(eval.patch.0.is_empty());
            }
            // The skeleton the typed path builds on gives the very patch the full document gives.
            let full = evaluate_json_in(&serde_json::to_value(&pod).unwrap(), &policy, level).unwrap();
            prop_assert_eq!(&eval.patch, &full.patch);
        }
    }
}

#[test]
fn a_component_label_that_disagrees_is_left_alone_and_reported() {
    // Found by the property test: containers say worker, a lone component label says master.
    let yaml = "metadata: {labels: {app.kubernetes.io/component: master}}\nspec: {containers: [{name: w, image: buildbot/buildbot-worker}]}";
    let (eval, doc) = run(yaml);
    assert_eq!(eval.role, Some(Role::Worker));
    assert_eq!(
        labels(&doc),
        &json!({"app.kubernetes.io/component": "master"})
    );
    assert!(
        eval.warnings.iter().any(|w| w.contains("disagrees")),
        "{:?}",
        eval.warnings
    );
    // Under a Buildbot marker the component label decides, before the legacy tier.
    let (eval, _) = run("metadata: {labels: {app: buildbot, tier: master, app.kubernetes.io/component: worker}}\nspec: {containers: [{name: w, image: x}]}");
    assert_eq!(eval.role, Some(Role::Worker));
}

#[test]
fn evaluate_json_rejects_what_is_not_a_pod() {
    assert!(evaluate_json(&json!({"spec": {"containers": "nope"}}), &Policy::default()).is_err());
    assert!(evaluate_json(&json!([1, 2]), &Policy::default()).is_err());
}

#[test]
fn a_per_build_pod_gets_requests_labels_grace_and_eviction_protection_but_no_hook() {
    let (eval, doc) = run(LATENT_WORKER);
    assert_eq!(eval.role, Some(Role::Worker));
    let worker = &doc["spec"]["containers"][0];
    assert_eq!(
        worker["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert_eq!(labels(&doc)["app.kubernetes.io/component"], "worker");
    assert_eq!(doc["spec"]["terminationGracePeriodSeconds"], 3600);
    assert_eq!(doc["metadata"]["annotations"][SAFE_TO_EVICT], "false");
    // Buildbot's stop control would set the latent worker's graceful flag, which only a new
    // connection clears: the worker would never be started again.
    assert!(worker.get("lifecycle").is_none(), "{worker}");
    assert!(eval
        .changes
        .iter()
        .any(|c| c.detail.contains("no preStop hook")));
    // The user's own choice is kept.
    let mine = LATENT_WORKER.replace(
        "metadata: {name: buildbot-latent-0-0a1b2c}",
        "metadata: {name: x, annotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: 'true'}}",
    );
    let (_, doc) = run(&mine);
    assert_eq!(doc["metadata"]["annotations"][SAFE_TO_EVICT], "true");
    // The webhook's path (a typed Pod) sees the annotation too: nothing to add, nothing
    // replaced.
    let typed = evaluate(&pod(&mine), &Policy::default());
    assert!(
        !serde_json::to_string(&typed.patch)
            .unwrap()
            .contains("safe-to-evict"),
        "{:?}",
        typed.patch
    );
    // A long-running worker (the default restartPolicy) still gets the hook.
    let (_, doc) = run(&LATENT_WORKER.replace("restartPolicy: Never", "restartPolicy: Always"));
    assert!(doc["spec"]["containers"][0]["lifecycle"]["preStop"].is_object());
    assert!(doc["metadata"].get("annotations").is_none());
}

#[test]
fn the_injected_hook_is_the_script_without_its_comments() {
    let source: Vec<&str> = GRACEFUL_STOP_SCRIPT
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(str::trim_end)
        .collect();
    let injected: Vec<&str> = INJECTED_SCRIPT.lines().collect();
    assert_eq!(
        injected[0],
        GRACEFUL_STOP_SCRIPT.lines().next().unwrap(),
        "named by its first line"
    );
    assert_eq!(
        &injected[1..],
        &source[..],
        "every line of code, as written"
    );
    assert!(INJECTED_SCRIPT.len() < GRACEFUL_STOP_SCRIPT.len() * 9 / 10);
}

#[test]
fn mutations_by_name_are_all_of_them_in_the_order_of_their_names() {
    let mut sorted = Mutation::ALL;
    sorted.sort_by_key(|m| m.name());
    assert_eq!(Mutation::BY_NAME, sorted);
    for (i, m) in Mutation::ALL.iter().enumerate() {
        assert_eq!(*m as usize, i, "injected() indexes by declaration order");
    }
}
