//! Table-driven checks of each trap: a setup that has it, and the nearest setups that do not.

use buildbot_policy::Policy;

use super::*;
use crate::preview::parse_stream;

/// A CA made with `openssl req -x509 -days 3650` on 2026-11-26 (notAfter 2036-11-23 15:14:20 UTC).
const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUHLZh3w1wWGMhBIU+dKr0NFCso+swCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLZG9jdG9yLXRlc3QwHhcNMjYxMTI2MTUxNDIwWhcNMzYxMTIz
MTUxNDIwWjAWMRQwEgYDVQQDDAtkb2N0b3ItdGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABPhh+NyOxGdq6AQU5juBC+LvRAqojpMcWY8DKFktF5gV2qgNT/8V
CW6PBzV4EBTnHMEQadcK/yUmxv1+VzyekvSjUzBRMB0GA1UdDgQWBBRtmxqNlQaX
hRHG3fOz6JCZ6tV+9zAfBgNVHSMEGDAWgBRtmxqNlQaXhRHG3fOz6JCZ6tV+9zAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIE2he5y6VrDidrpCCiFy
H+oY47rqUHZ1hD3aJcvzBkkcAiEAi9fLkyilj61RmZNxQ9IdcFAae5yGl3eSTCCy
osu5s/s=
-----END CERTIFICATE-----
";
const CA_NOT_AFTER: i64 = 2_111_066_060;

/// A master that is right in every way, behind a Service with both ports.
const MASTER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: master}
spec:
  selector: {app: buildbot, tier: master}
  ports: [{name: web, port: 8080}, {name: worker, port: 9989, targetPort: pb}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: master}
spec:
  template:
    metadata: {labels: {app: buildbot, tier: master}}
    spec:
      containers:
      - name: master
        image: buildbot/buildbot-master:v4.3.0
        ports: [{name: pb, containerPort: 9989}]
        env: [{name: BUILDBOT_DB_URL, value: "sqlite:///state.sqlite"}]
        resources: {requests: {cpu: 500m, memory: 1Gi}}
"#;

/// A worker StatefulSet that is right in every way (with [`MASTER`]).
const WORKER: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: worker}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: buildbot, tier: worker}}
    spec:
      terminationGracePeriodSeconds: 3600
      containers:
      - name: worker
        image: buildbot/buildbot-worker:v4.3.0
        env:
        - {name: BUILDMASTER, value: master}
        - name: WORKERNAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        resources: {requests: {cpu: 500m, memory: 512Mi}}
        lifecycle: {preStop: {exec: {command: [sh, -c, "sleep 1"]}}}
"#;

fn report_at(yaml: &str, live: bool, now: i64) -> Report {
    let objects = parse_stream(yaml, "test").expect("test YAML parses");
    let policy = Policy::default();
    let ctx = Context {
        policy: &policy,
        now,
    };
    diagnose(&objects, "ci", live, &ctx).expect("valid objects")
}

/// `(code, severity, first object)` of every finding.
fn found(yaml: &str, live: bool) -> Vec<(&'static str, Severity, String)> {
    report_at(yaml, live, 1_800_000_000)
        .findings
        .into_iter()
        .map(|f| (f.code.id(), f.severity, f.objects[0].clone()))
        .collect()
}

fn with(parts: &[&str]) -> String {
    parts.join("\n---\n")
}

#[test]
fn a_correct_setup_has_no_findings() {
    assert_eq!(found(&with(&[MASTER, WORKER]), false), []);
    assert_eq!(found(&with(&[MASTER, WORKER]), true), []);
}

#[test]
fn master_service_and_worker_address() {
    let only_web = MASTER.replace(", {name: worker, port: 9989, targetPort: pb}", "");
    assert_eq!(
        found(&with(&[&only_web, WORKER]), false),
        [
            ("BB01", Severity::Error, "Service/master".into()),
            ("BB02", Severity::Error, "StatefulSet/worker".into()),
        ]
    );
    // A named targetPort that names no container port forwards nowhere.
    let bad_name = MASTER.replace("targetPort: pb", "targetPort: buildbot");
    assert_eq!(found(&with(&[&bad_name, WORKER]), false)[0].0, "BB01");
    // Headless: workers reach the pod's port directly; the Service's ports do not matter.
    let headless = only_web.replace("spec:\n  selector", "spec:\n  clusterIP: None\n  selector");
    assert_eq!(found(&with(&[&headless, WORKER]), false), []);
    // No Service at all: certain in a cluster, maybe in another file among files.
    let no_service = MASTER.split("---").nth(1).unwrap();
    assert_eq!(
        found(no_service, true),
        [("BB01", Severity::Error, "Deployment/master".into())]
    );
    assert_eq!(found(no_service, false)[0].1, Severity::Warning);
    // BUILDMASTER in another spelling of the same Service, or in a namespace not read.
    let fqdn = WORKER.replace("value: master}", "value: master.ci.svc.cluster.local}");
    assert_eq!(found(&with(&[MASTER, &fqdn]), false), []);
    let elsewhere = WORKER.replace("value: master}", "value: master.other}");
    assert_eq!(found(&with(&[MASTER, &elsewhere]), false), []);
    let port = WORKER.replace(
        "- {name: BUILDMASTER, value: master}",
        "- {name: BUILDMASTER, value: master}\n        - {name: BUILDMASTER_PORT, value: \"8080\"}",
    );
    assert_eq!(
        found(&with(&[MASTER, &port]), false),
        [("BB02", Severity::Error, "StatefulSet/worker".into())]
    );
}

#[test]
fn database_wait() {
    let pg = "\napiVersion: v1\nkind: Service\nmetadata: {name: pg}\nspec: {selector: {app: pg}, ports: [{port: 5432}]}\n";
    let url = |m: &str| m.replace("sqlite:///state.sqlite", "postgresql://bb:pw@pg/bb");
    // The official image's start script retries: fine.
    assert_eq!(found(&with(&[&url(MASTER), pg]), false), []);
    let once = url(MASTER).replace(
        "        ports:",
        "        command: [sh, -c, 'buildbot upgrade-master . && twistd -ny buildbot.tac']\n        ports:",
    );
    assert_eq!(
        found(&with(&[&once, pg]), false),
        [("BB03", Severity::Error, "Deployment/master".into())]
    );
    let looped = once.replace(
        "'buildbot upgrade-master . &&",
        "'until buildbot upgrade-master .; do sleep 1; done;",
    );
    assert_eq!(found(&with(&[&looped, pg]), false), []);
    let init = once.replace(
        "      containers:",
        "      initContainers: [{name: wait, image: busybox, command: [sh, -c, 'until nc -z pg 5432; do sleep 1; done']}]\n      containers:",
    );
    assert_eq!(found(&with(&[&init, pg]), false), []);
    // The seed's `@db/` with only a `pg` Service.
    let db = MASTER.replace(
        "sqlite:///state.sqlite",
        "postgresql+psycopg2://bb:pw@db/bb",
    );
    assert_eq!(
        found(&with(&[&db, pg]), true),
        [("BB03", Severity::Error, "Deployment/master".into())]
    );
}

const HOSTPATH_WORKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: w, labels: {app: buildbot, tier: worker}}
spec:
  terminationGracePeriodSeconds: 3600
  containers:
  - name: worker
    image: buildbot/buildbot-worker:v4.3.0
    env: [{name: BUILDMASTER, value: master}]
    lifecycle: {preStop: {exec: {command: [sh, -c, "sleep 1"]}}}
    volumeMounts: [{name: data, mountPath: /buildbot}]
  volumes: [{name: data, hostPath: {path: /data/pv-3}}]
"#;

#[test]
fn volume_permissions() {
    assert_eq!(
        found(&with(&[MASTER, HOSTPATH_WORKER]), false),
        [("BB04", Severity::Error, "Pod/w".into())]
    );
    // fsGroup does not reach hostPath ...
    let fs_group = HOSTPATH_WORKER.replace(
        "spec:\n  termination",
        "spec:\n  securityContext: {fsGroup: 1000}\n  termination",
    );
    assert_eq!(found(&with(&[MASTER, &fs_group]), false)[0].0, "BB04");
    // ... an init chown as root does; so does running as root (BB10 says why not to).
    let chown = HOSTPATH_WORKER.replace(
        "  containers:",
        "  initContainers: [{name: fix, image: busybox, command: [chown, -R, '1000:1000', /d], volumeMounts: [{name: data, mountPath: /d}]}]\n  containers:",
    );
    assert_eq!(found(&with(&[MASTER, &chown]), false), []);
    let root = HOSTPATH_WORKER.replace("    env:", "    securityContext: {runAsUser: 0}\n    env:");
    assert_eq!(
        found(&with(&[MASTER, &root]), false),
        [("BB10", Severity::Warning, "Pod/w".into())]
    );
    // A claim bound to a hostPath volume is one; to a local volume with fsGroup it is not.
    let claim = HOSTPATH_WORKER.replace(
        "hostPath: {path: /data/pv-3}",
        "persistentVolumeClaim: {claimName: c}",
    );
    let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {volumeName: pv}\n";
    let pv_host = "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv}\nspec: {hostPath: {path: /x}}\n";
    assert_eq!(
        found(&with(&[MASTER, &claim, pvc, pv_host]), true)[0].0,
        "BB04"
    );
    let pv_local =
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv}\nspec: {local: {path: /x}}\n";
    let claim_fs = claim.replace(
        "spec:\n  termination",
        "spec:\n  securityContext: {fsGroup: 1000}\n  termination",
    );
    assert_eq!(found(&with(&[MASTER, &claim_fs, pvc, pv_local]), true), []);
    // Read-only mounts are not written to.
    let ro = HOSTPATH_WORKER.replace(
        "mountPath: /buildbot}",
        "mountPath: /buildbot, readOnly: true}",
    );
    assert_eq!(found(&with(&[MASTER, &ro]), false), []);
}

const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: w}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: worker}
  maxReplicas: 4
"#;

#[test]
fn autoscalers() {
    // No metrics means 80 % CPU; the worker has requests.
    assert_eq!(found(&with(&[MASTER, WORKER, HPA]), false), []);
    let sidecar = WORKER.replace(
        "        lifecycle:",
        "      - {name: logs, image: busybox}\n        lifecycle:",
    );
    let sidecar = sidecar.replace("      - {name: logs, image: busybox}\n        lifecycle: {preStop: {exec: {command: [sh, -c, \"sleep 1\"]}}}", "        lifecycle: {preStop: {exec: {command: [sh, -c, \"sleep 1\"]}}}\n      - {name: logs, image: busybox}");
    let f = report_at(&with(&[MASTER, &sidecar, HPA]), false, 0).findings;
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].code, Code::Autoscaler);
    assert!(
        f[0].trap.contains("logs has no cpu request"),
        "{}",
        f[0].trap
    );
    // In a cluster, the metrics API must exist too.
    let objects = parse_stream(&with(&[MASTER, WORKER, HPA]), "t").unwrap();
    let policy = Policy::default();
    let mut inv = Inventory::build(&objects, "ci", &policy, true).unwrap();
    inv.webhooks_known = true;
    inv.api_services = Some(std::collections::BTreeMap::new());
    let ctx = Context {
        policy: &policy,
        now: 0,
    };
    let r = diagnose_inventory(inv, &ctx);
    let codes: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.code.id(), f.objects[1].clone()))
        .collect();
    assert!(
        codes.contains(&("BB05", "APIService/v1beta1.metrics.k8s.io".into())),
        "{codes:?}"
    );
    // KEDA: a cpu trigger is utilisation; a metrics-api trigger is external.
    let keda = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: q}\nspec:\n  scaleTargetRef: {name: worker, kind: StatefulSet}\n  triggers: [{type: cpu, metadata: {value: '50'}}]\n";
    let no_requests = WORKER.replace(
        "        resources: {requests: {cpu: 500m, memory: 512Mi}}\n",
        "",
    );
    let f = found(&with(&[MASTER, &no_requests, keda]), false);
    assert_eq!(f[0].0, "BB05", "{f:?}");
}

#[test]
fn grace_and_hook() {
    let no_hook = WORKER.replace(
        "        lifecycle: {preStop: {exec: {command: [sh, -c, \"sleep 1\"]}}}\n",
        "",
    );
    assert_eq!(
        found(&with(&[MASTER, &no_hook]), false),
        [("BB06", Severity::Warning, "StatefulSet/worker".into())]
    );
    assert_eq!(
        found(&with(&[MASTER, &no_hook, HPA]), false),
        [("BB06", Severity::Error, "StatefulSet/worker".into())],
        "an autoscaler scaling down makes it certain"
    );
    let short = WORKER.replace(
        "terminationGracePeriodSeconds: 3600",
        "terminationGracePeriodSeconds: 30",
    );
    assert_eq!(found(&with(&[MASTER, &short]), false)[0].0, "BB06");
    // The policy's hook: reachable at master:8080; not when the Service has no web port.
    let policy = Policy::default();
    let hook =
        serde_json::to_string(&buildbot_policy::pre_stop_command(&policy.graceful_stop)).unwrap();
    let graceful = WORKER.replace("[sh, -c, \"sleep 1\"]", &hook);
    assert_eq!(found(&with(&[MASTER, &graceful]), false), []);
    let no_web = MASTER.replace("{name: web, port: 8080}, ", "");
    assert_eq!(
        found(&with(&[&no_web, &graceful]), false),
        [("BB07", Severity::Error, "StatefulSet/worker".into())]
    );
    let url = graceful.replace(
        "        - {name: BUILDMASTER, value: master}",
        "        - {name: BUILDMASTER, value: master}\n        - {name: BUILDBOT_MASTER_URL, value: 'http://web:80/'}",
    );
    let web = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: buildbot, tier: master}, ports: [{port: 80, targetPort: 8080}]}\n";
    assert_eq!(found(&with(&[&no_web, &url, web]), false), []);
    // A per-build pod (KubeLatentWorker's) ends with its build: no hook is wanted.
    let latent = "apiVersion: v1\nkind: Pod\nmetadata: {name: buildbot-w-1, labels: {app: buildbot, tier: worker}}\n\
                  spec:\n  restartPolicy: Never\n  containers:\n  - name: buildbot-w-1\n    image: buildbot/buildbot-worker:v4.3.0\n    \
                  env: [{name: BUILDMASTER, value: master}, {name: WORKERNAME, value: w}]\n    \
                  resources: {requests: {cpu: 500m, memory: 512Mi}}\n";
    assert_eq!(found(&with(&[MASTER, latent]), true), []);
}

#[test]
fn worker_names() {
    let cfg = |names: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata:\n  master.cfg: |\n    c['workers'] = [worker.Worker(n, 'p') for n in NAMES]\n    NAMES = [{names}]\n"
        )
    };
    let master = MASTER.replace(
        "        resources:",
        "        volumeMounts: [{name: cfg, mountPath: /cfg}]\n        resources:",
    ) + "      volumes: [{name: cfg, configMap: {name: cfg}}]\n";
    let ok = cfg("'worker-0', 'worker-1', 'worker-2'");
    assert_eq!(found(&with(&[&master, WORKER, &ok]), false), []);
    let other = cfg("'example-worker'");
    let f = found(&with(&[&master, WORKER, &other]), false);
    assert_eq!(
        f,
        [
            ("BB08", Severity::Error, "StatefulSet/worker".into()),
            ("BB08", Severity::Warning, "Deployment/master".into()),
        ]
    );
    let deployment = WORKER.replace("kind: StatefulSet", "kind: Deployment");
    assert_eq!(
        found(&with(&[MASTER, &deployment]), false),
        [("BB08", Severity::Error, "Deployment/worker".into())]
    );
}

fn webhook(namespace_selector: &str, ca: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: bw}}
webhooks:
- name: pods.bw.kubectl-buildbot.dev
  failurePolicy: Fail
  clientConfig:
    service: {{name: bw, namespace: sys}}
    caBundle: {ca}
  namespaceSelector: {namespace_selector}
"#
    )
}

#[test]
fn webhook_coverage_expiry_and_endpoints() {
    let covers = webhook("{}", CA);
    let excludes = webhook(
        "{matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [ci]}]}",
        CA,
    );
    // Covered: the hostPath worker is admitted with the init chown, so BB04 is gone.
    assert_eq!(found(&with(&[MASTER, HOSTPATH_WORKER, &covers]), false), []);
    assert_eq!(
        found(&with(&[MASTER, HOSTPATH_WORKER, &excludes]), false),
        [
            ("BB04", Severity::Error, "Pod/w".into()),
            ("BB09", Severity::Warning, "Deployment/master".into()),
        ]
    );
    let near = report_at(
        &with(&[MASTER, WORKER, &covers]),
        false,
        CA_NOT_AFTER - 86_400 * 10,
    );
    assert_eq!(near.findings.len(), 1);
    assert!(
        near.findings[0].trap.contains("expires in 10 days"),
        "{:?}",
        near.findings[0]
    );
    let past = report_at(
        &with(&[MASTER, WORKER, &covers]),
        false,
        CA_NOT_AFTER + 86_400 * 3,
    );
    assert_eq!(past.findings[0].severity, Severity::Error);
    assert!(past.findings[0].trap.contains("expired 3 days ago"));
    // Live, with no ready endpoint and failurePolicy Fail: every pod is refused.
    let f = found(&with(&[MASTER, WORKER, &covers]), true);
    assert_eq!(
        f,
        [(
            "BB09",
            Severity::Error,
            "MutatingWebhookConfiguration/bw".into()
        )]
    );
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: bw-x, namespace: sys, labels: {kubernetes.io/service-name: bw}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]\n";
    assert_eq!(found(&with(&[MASTER, WORKER, &covers, slice]), true), []);
}

#[test]
fn quotas_and_opt_out() {
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {requests.cpu: '4', limits.memory: 8Gi}}\n";
    let f = found(&with(&[MASTER, WORKER, quota]), false);
    assert_eq!(
        f,
        [
            ("BB10", Severity::Error, "Deployment/master".into()),
            ("BB10", Severity::Error, "StatefulSet/worker".into()),
        ],
        "limits.memory is unset everywhere; the requests are there"
    );
    let limits = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: l}\nspec: {limits: [{type: Container, default: {memory: 1Gi}}]}\n";
    assert_eq!(found(&with(&[MASTER, WORKER, quota, limits]), false), []);
    // Opted out by the namespace label: the webhook-fixable trap becomes one info finding.
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ci, labels: {kubectl-buildbot.dev/inject: 'false'}}\n";
    let covers = webhook("{}", CA);
    assert_eq!(
        found(&with(&[MASTER, HOSTPATH_WORKER, ns, &covers]), false),
        [("BB11", Severity::Info, "Pod/w".into())]
    );
}

#[test]
fn codes_parse_and_every_code_has_a_story() {
    assert_eq!(Code::parse("BB04"), Some(Code::VolumePermissions));
    assert_eq!(Code::parse("bb4"), Some(Code::VolumePermissions));
    assert_eq!(Code::parse("worker-grace"), Some(Code::WorkerGrace));
    assert_eq!(Code::parse("BB12"), None);
    for c in Code::ALL {
        assert!(explain::story(c).starts_with(&format!("{} {}", c.id(), c.slug())));
    }
}

#[test]
fn a_real_certificate_expiry() {
    assert_eq!(cert::pem_not_after(CA.as_bytes()), [CA_NOT_AFTER]);
}

#[test]
fn a_statefulsets_claim_templates_are_its_pods_volumes() {
    // The pods mount their claim templates without a `volumes` entry: doctor sees the pod as
    // the controller creates it, as preview does, so a template that binds a hostPath
    // volume is found.
    let sts = WORKER
        .replace(
            "        lifecycle:",
            "        volumeMounts: [{name: data, mountPath: /buildbot}]\n        lifecycle:",
        )
        + "  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce]}}]\n";
    let pv = "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv}\nspec: {hostPath: {path: /data/pv-1}}\n";
    assert_eq!(found(&with(&[MASTER, &sts]), false), []);
    assert_eq!(
        found(&with(&[MASTER, &sts, pv]), false),
        [("BB04", Severity::Error, "StatefulSet/worker".into())]
    );
}
