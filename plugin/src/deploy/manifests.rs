//! Every object of a Buildbot installation, in the order they are applied.
//!
//! Pure: a [`DeploySpec`] and the [`Secrets`] in, objects out. Requests, volume permissions,
//! worker grace and the graceful-stop hook are not written here: each pod template goes
//! through the webhook's own policy ([`crate::preview::preview_object`]), so a cluster
//! without the webhook gets exactly what the webhook would add.

use base64::Engine as _;
use buildbot_policy::Role;
use serde_json::{json, Value};

use super::master_cfg;
use super::secrets::Secrets;
use super::spec::{
    Database, DeploySpec, MasterConfig, WorkerMode, DB_NAME, POSTGRES_PORT, WEB_PORT,
    WORKER_MODE_ANNOTATION, WORKER_PORT, WORKER_RUN_DIR, WORKER_SECRETS_DIR,
};
use crate::preview::{preview_object_in, Previewed};

/// Annotation on the master's pod template that changes with master.cfg, so that a new
/// configuration rolls the master.
pub const CONFIG_CHECKSUM: &str = "kubectl-buildbot.dev/config-checksum";

/// The installation's objects, policy applied, in apply order (Secrets and configuration
/// first, workloads last).
pub fn build(spec: &DeploySpec, secrets: &Secrets) -> Vec<Previewed> {
    let mut objects = Vec::new();
    objects.extend(secret_objects(spec, secrets));
    let cfg = config_map(spec);
    let checksum = cfg.as_ref().map(|c| fnv1a(&c["data"].to_string()));
    objects.extend(cfg);
    if spec.worker_mode == WorkerMode::Latent {
        objects.extend(latent_rbac(spec));
    }
    objects.push(master_service(spec));
    if spec.worker_mode == WorkerMode::Static {
        objects.push(worker_service(spec));
    }
    if matches!(spec.database, Database::Bundled { .. }) {
        objects.push(postgres_service(spec));
    }
    if spec.network_policy {
        objects.extend(network_policies(spec));
    }
    objects.push(master_claim(spec));
    if let Database::Bundled { image, storage } = &spec.database {
        objects.push(postgres(spec, image, storage));
    }
    objects.push(master(spec, checksum));
    if spec.worker_mode == WorkerMode::Static {
        objects.push(workers(spec));
    }
    objects
        .into_iter()
        .map(|o| {
            preview_object_in(o, &spec.policy, spec.pod_security, "deploy")
                .expect("deploy builds valid pod templates")
        })
        .collect()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// FNV-1a, 64 bits: stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

fn metadata(spec: &DeploySpec, name: String, role: Role) -> Value {
    json!({"name": name, "namespace": spec.namespace, "labels": spec.labels(role)})
}

fn secret_objects(spec: &DeploySpec, secrets: &Secrets) -> Vec<Value> {
    let mut out = Vec::new();
    let workers: serde_json::Map<String, Value> = secrets
        .workers
        .iter()
        .map(|(k, v)| (k.clone(), json!(b64(v))))
        .collect();
    out.push(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": metadata(spec, spec.worker_secret_name(), Role::Worker),
        "data": workers,
    }));
    match &spec.database {
        Database::Bundled { .. } => out.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(spec, spec.postgres_name(), Role::Database),
            "data": {"password": b64(secrets.postgres.as_deref().unwrap_or_default())},
        })),
        Database::ExternalUrl(url) => out.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(spec, spec.database_secret_name(), Role::Database),
            "data": {"url": b64(url)},
        })),
        Database::ExternalSecret { .. } => {}
    }
    out
}

fn config_map(spec: &DeploySpec) -> Option<Value> {
    let text = match &spec.config {
        MasterConfig::Generated => master_cfg::generate(spec),
        MasterConfig::File(text) => text.clone(),
        MasterConfig::Url(_) => return None,
    };
    Some(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(spec, spec.config_name(), Role::Master),
        "data": {"master.cfg": text, "buildbot.tac": master_cfg::MASTER_TAC},
    }))
}

fn master_service(spec: &DeploySpec) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(spec, spec.master_name(), Role::Master),
        "spec": {
            "type": "ClusterIP",
            "selector": spec.selector(Role::Master),
            "ports": [
                {"name": "http", "port": WEB_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "pb", "port": WORKER_PORT, "targetPort": "pb", "protocol": "TCP"},
            ],
        },
    })
}

fn worker_service(spec: &DeploySpec) -> Value {
    // The StatefulSet's governing Service: stable DNS names for the worker pods.
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(spec, spec.worker_name(), Role::Worker),
        "spec": {"clusterIP": "None", "selector": spec.selector(Role::Worker)},
    })
}

fn postgres_service(spec: &DeploySpec) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(spec, spec.postgres_name(), Role::Database),
        "spec": {
            "clusterIP": "None",
            "selector": spec.selector(Role::Database),
            "ports": [{"name": "postgres", "port": POSTGRES_PORT, "targetPort": "postgres", "protocol": "TCP"}],
        },
    })
}

fn network_policies(spec: &DeploySpec) -> Vec<Value> {
    let np = |name: String, role: Role, ingress: Value| {
        let mut policy = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(spec, name, role),
            "spec": {"podSelector": {"matchLabels": spec.selector(role)}, "policyTypes": ["Ingress"]},
        });
        // No rules at all (deny all ingress) is said by leaving `ingress` out: the API server
        // drops an empty list, so applying one again would write the object every time.
        if ingress.as_array().is_some_and(|rules| !rules.is_empty()) {
            policy["spec"]["ingress"] = ingress;
        }
        policy
    };
    let from = |role: Role| json!([{"podSelector": {"matchLabels": spec.selector(role)}}]);
    let mut out = vec![
        // Workers reach 9989; the web UI (and the workers' preStop hook) reach 8080.
        np(
            format!("{}-master", spec.name),
            Role::Master,
            json!([
                {"from": from(Role::Worker), "ports": [{"protocol": "TCP", "port": WORKER_PORT}]},
                {"ports": [{"protocol": "TCP", "port": WEB_PORT}]},
            ]),
        ),
        // Nothing needs to connect to a worker.
        np(format!("{}-worker", spec.name), Role::Worker, json!([])),
    ];
    if matches!(spec.database, Database::Bundled { .. }) {
        out.push(np(
            format!("{}-postgres", spec.name),
            Role::Database,
            json!([{"from": from(Role::Master), "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}]}]),
        ));
    }
    out
}

fn claim_spec(spec: &DeploySpec, size: &str) -> Value {
    let mut s =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(class) = &spec.storage_class {
        s["storageClassName"] = json!(class);
    }
    s
}

fn master_claim(spec: &DeploySpec) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": metadata(spec, spec.master_claim_name(), Role::Master),
        "spec": claim_spec(spec, &spec.master_storage),
    })
}

/// A container security context: the given user, nothing else.
fn restricted(uid: i64) -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn pod_spec_common() -> Value {
    json!({
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn postgres(spec: &DeploySpec, image: &str, storage: &str) -> Value {
    let probe = |period: u32| {
        json!({"exec": {"command": ["pg_isready", "-U", DB_NAME, "-d", DB_NAME, "-h", "127.0.0.1"]},
               "periodSeconds": period, "timeoutSeconds": 5})
    };
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata(spec, spec.postgres_name(), Role::Database),
        "spec": {
            "serviceName": spec.postgres_name(),
            "replicas": 1,
            "selector": {"matchLabels": spec.selector(Role::Database)},
            "template": {
                "metadata": {"labels": spec.labels(Role::Database)},
                "spec": with(pod_spec_common(), json!({
                    "containers": [{
                        "name": "postgres",
                        "image": image,
                        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
                        "env": [
                            {"name": "POSTGRES_USER", "value": DB_NAME},
                            {"name": "POSTGRES_DB", "value": DB_NAME},
                            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": spec.postgres_name(), "key": "password"}}},
                            // A subdirectory: a fresh volume's root may hold lost+found.
                            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                        ],
                        "readinessProbe": probe(5),
                        "livenessProbe": with(probe(20), json!({"failureThreshold": 6})),
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                        "securityContext": restricted(999),
                    }],
                })),
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": spec.labels(Role::Database)},
                "spec": claim_spec(spec, storage),
            }],
        },
    })
}

fn database_url_env(spec: &DeploySpec) -> Vec<Value> {
    match &spec.database {
        Database::Bundled { .. } => vec![
            json!({"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": spec.postgres_name(), "key": "password"}}}),
            json!({"name": "BUILDBOT_DB_URL", "value": format!(
                "postgresql+psycopg2://{DB_NAME}:$(POSTGRES_PASSWORD)@{}:{POSTGRES_PORT}/{DB_NAME}", spec.postgres_name()
            )}),
        ],
        Database::ExternalUrl(_) => vec![
            json!({"name": "BUILDBOT_DB_URL", "valueFrom": {"secretKeyRef": {"name": spec.database_secret_name(), "key": "url"}}}),
        ],
        Database::ExternalSecret { name, key } => vec![
            json!({"name": "BUILDBOT_DB_URL", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}),
        ],
    }
}

fn master(spec: &DeploySpec, checksum: Option<String>) -> Value {
    let basedir = "/var/lib/buildbot";
    let mut env = database_url_env(spec);
    env.extend([
        json!({"name": "BUILDBOT_WEB_URL", "value": spec.web_url}),
        json!({"name": "BUILDBOT_WEB_PORT", "value": WEB_PORT.to_string()}),
        json!({"name": "BUILDBOT_WORKER_PORT", "value": WORKER_PORT.to_string()}),
    ]);
    let mut mounts = vec![json!({"name": "basedir", "mountPath": basedir})];
    // Latent workers get a random password from Buildbot at each start: no Secret to read.
    let passwords = spec.worker_mode == WorkerMode::Static;
    if passwords {
        mounts.push(
            json!({"name": "worker-passwords", "mountPath": WORKER_SECRETS_DIR, "readOnly": true}),
        );
    }
    match &spec.config {
        MasterConfig::Url(url) => env.extend([
            json!({"name": "BUILDBOT_CONFIG_URL", "value": url}),
            json!({"name": "BUILDBOT_CONFIG_DIR", "value": "config"}),
        ]),
        _ => {
            for file in ["master.cfg", "buildbot.tac"] {
                mounts.push(json!({"name": "config", "mountPath": format!("{basedir}/{file}"), "subPath": file, "readOnly": true}));
            }
        }
    }
    let mut volumes = vec![
        json!({"name": "basedir", "persistentVolumeClaim": {"claimName": spec.master_claim_name()}}),
    ];
    if passwords {
        volumes.push(json!({"name": "worker-passwords", "secret": {"secretName": spec.worker_secret_name()}}));
    }
    if !matches!(spec.config, MasterConfig::Url(_)) {
        volumes.push(json!({"name": "config", "configMap": {"name": spec.config_name()}}));
    }
    let http_probe = |period: u32, failures: u32| json!({"httpGet": {"path": "/", "port": "http"}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 5});
    let mut template_meta = json!({"labels": spec.labels(Role::Master)});
    if let Some(sum) = checksum {
        template_meta["annotations"] = json!({CONFIG_CHECKSUM: sum});
    }
    let container = |name: &str| {
        json!({
            "name": name,
            "image": spec.master_image,
            "workingDir": basedir,
            "env": env,
            "volumeMounts": mounts,
            "securityContext": restricted(1000),
        })
    };
    // Waits for the database, then creates or upgrades its schema: the master never starts
    // against a database that is not there or not upgraded (the seed's crash loop). With
    // --config-url the image's entrypoint downloads master.cfg first and runs the same loop
    // itself, so there is nothing to run before it.
    let mut upgrade = container("upgrade-master");
    upgrade["command"] = json!(["sh", "-c",
        format!("until buildbot upgrade-master {basedir}; do echo 'waiting for the database...'; sleep 3; done")]);
    // A ResourceQuota on requests needs them on every container, init containers too. It
    // runs before the master, in the room the master's own request reserves.
    let requests = &spec.policy.resources.master;
    upgrade["resources"] = json!({"requests": {"cpu": requests.cpu, "memory": requests.memory}});
    let mut main = container("master");
    main["ports"] = json!([
        {"name": "http", "containerPort": WEB_PORT},
        {"name": "pb", "containerPort": WORKER_PORT},
    ]);
    main["startupProbe"] = http_probe(5, 60);
    main["readinessProbe"] = http_probe(10, 3);
    main["livenessProbe"] = http_probe(20, 6);
    let mut meta = metadata(spec, spec.master_name(), Role::Master);
    meta["annotations"] = json!({WORKER_MODE_ANNOTATION: spec.worker_mode.as_str()});
    let mut pod = with(
        pod_spec_common(),
        json!({
            "initContainers": if matches!(spec.config, MasterConfig::Url(_)) { json!([]) } else { json!([upgrade]) },
            "containers": [main],
            "volumes": volumes,
        }),
    );
    if spec.worker_mode == WorkerMode::Latent {
        // The master creates and deletes the worker pods with this account's token.
        pod["serviceAccountName"] = json!(spec.service_account_name());
        pod["automountServiceAccountToken"] = json!(true);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            // One master owns the basedir and the claim: never two at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": spec.selector(Role::Master)},
            "template": {"metadata": template_meta, "spec": pod},
        },
    })
}

/// Latent mode: the master's ServiceAccount, and a Role in its own namespace that lets it
/// create, read and delete pods, and nothing else. Buildbot's KubeLatentWorker POSTs a pod,
/// DELETEs it, and polls `pods/<name>/status` until it is gone; `list` and `watch` are for
/// tools reading what it made.
fn latent_rbac(spec: &DeploySpec) -> Vec<Value> {
    let sa = spec.service_account_name();
    let role = spec.latent_role_name();
    vec![
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(spec, sa.clone(), Role::Master),
            // Only the master's pod mounts the token (it asks for it).
            "automountServiceAccountToken": false,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": metadata(spec, role.clone(), Role::Master),
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
                {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": metadata(spec, role.clone(), Role::Master),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": spec.namespace}],
        }),
    ]
}

/// What the pod policy (and deploy's own choices: labels, a non-root user, no API token)
/// gives a per-build worker pod, in three parts for master.cfg's KubeLatentWorker subclass:
/// `metadata`, pod `spec` (without containers) and the build `container` (without name,
/// image and env, which Buildbot sets). The same pure code as the webhook: a pod as Buildbot
/// builds it goes through [`preview_object_in`].
pub fn latent_pod_policy(spec: &DeploySpec) -> Value {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "per-build-worker", "labels": spec.labels(Role::Worker)},
        "spec": with(pod_spec_common(), json!({
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch"},
            "restartPolicy": "Never",
            "containers": [{
                "name": "per-build-worker",
                "image": spec.worker_image,
                "env": [
                    {"name": "BUILDMASTER", "value": spec.master_name()},
                    {"name": "BUILDMASTER_PORT", "value": WORKER_PORT.to_string()},
                ],
                "securityContext": restricted(1000),
            }],
        })),
    });
    let after = preview_object_in(pod, &spec.policy, spec.pod_security, "deploy")
        .expect("a valid pod")
        .after;
    let mut metadata = after["metadata"].clone();
    let mut pod_spec = after["spec"].clone();
    let mut container = pod_spec["containers"][0].clone();
    if let Some(m) = metadata.as_object_mut() {
        m.remove("name");
    }
    if let Some(p) = pod_spec.as_object_mut() {
        p.remove("containers");
        p.remove("restartPolicy");
    }
    if let Some(c) = container.as_object_mut() {
        for key in ["name", "image", "env"] {
            c.remove(key);
        }
    }
    json!({"metadata": metadata, "spec": pod_spec, "container": container})
}

/// The buildbot.tac each worker runs: the official image's contract (BUILDMASTER,
/// BUILDMASTER_PORT, WORKERNAME; basedir the working directory), with the password read from
/// the pod's own file instead of WORKERPASS, so that no process environment holds it.
pub const WORKER_TAC: &str = r#"# buildbot.tac written by kubectl-buildbot's worker-password init container.
import os
import sys

from twisted.application import service
from twisted.python.log import FileLogObserver, ILogObserver

from buildbot_worker.bot import Worker

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "password")) as f:
    password = f.read().strip()
env = os.environ
application = service.Application("buildbot-worker")
application.setComponent(ILogObserver, FileLogObserver(sys.stdout).emit)
Worker(
    env.get("BUILDMASTER", "localhost"),
    int(env.get("BUILDMASTER_PORT", "9989")),
    env["WORKERNAME"],
    password,
    os.getcwd(),
    600,
    umask=None,
    maxdelay=300,
    allow_shutdown=None,
    maxRetries=10,
).setServiceParent(application)
"#;

/// The `worker-password` init container: it alone mounts the Secret with every worker's
/// password, and copies this pod's own into the in-memory run directory, with the tac that
/// reads it. Non-root, no capabilities, read-only root filesystem.
fn worker_password_init(spec: &DeploySpec) -> Value {
    let secret = spec.worker_secret_name();
    let script = format!(
        "set -eu\numask 077\n\
         if [ ! -f \"{WORKER_SECRETS_DIR}/$WORKERNAME\" ]; then\n  \
         echo \"no password for $WORKERNAME in Secret {secret}: deploy with a larger --max-workers\" >&2\n  exit 1\nfi\n\
         cp \"{WORKER_SECRETS_DIR}/$WORKERNAME\" {WORKER_RUN_DIR}/password\n\
         cat > {WORKER_RUN_DIR}/buildbot.tac <<'EOF'\n{WORKER_TAC}EOF\n"
    );
    let res = &spec.policy.permissions.init_resources;
    let mut security = restricted(1000);
    security["readOnlyRootFilesystem"] = json!(true);
    json!({
        "name": "worker-password",
        "image": spec.worker_image,
        "command": ["sh", "-c", script],
        "env": [{"name": "WORKERNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"requests": {"cpu": res.cpu, "memory": res.memory}, "limits": {"memory": res.memory}},
        "securityContext": security,
        "volumeMounts": [
            {"name": "worker-passwords", "mountPath": WORKER_SECRETS_DIR, "readOnly": true},
            {"name": "worker-run", "mountPath": WORKER_RUN_DIR},
        ],
    })
}

fn workers(spec: &DeploySpec) -> Value {
    // dumb-init (the image's PID 1, at /usr/bin from apt) reaps build processes; a custom
    // image without it runs twistd directly. The image's own buildbot.tac would read the
    // password from WORKERPASS, which stays readable in /proc/<pid>/environ.
    let tac = format!("{WORKER_RUN_DIR}/buildbot.tac");
    let start = format!(
        "if command -v dumb-init >/dev/null 2>&1; then exec dumb-init twistd --pidfile= -ny {tac}; \
         else exec twistd --pidfile= -ny {tac}; fi"
    );
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata(spec, spec.worker_name(), Role::Worker),
        "spec": {
            "serviceName": spec.worker_name(),
            "replicas": spec.workers,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": spec.selector(Role::Worker)},
            "template": {
                "metadata": {"labels": spec.labels(Role::Worker)},
                "spec": with(pod_spec_common(), json!({
                    // The Secret's files are the group's (0440): the init container reads
                    // them as uid 1000 with this group.
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch"},
                    "initContainers": [worker_password_init(spec)],
                    "containers": [{
                        "name": "worker",
                        "image": spec.worker_image,
                        "command": ["sh", "-c", start],
                        "env": [
                            {"name": "WORKERNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "BUILDMASTER", "value": spec.master_name()},
                            {"name": "BUILDMASTER_PORT", "value": WORKER_PORT.to_string()},
                            {"name": "BUILDBOT_MASTER_URL", "value": spec.master_url()},
                        ],
                        // Only this pod's own password: the Secret is the init container's.
                        "volumeMounts": [{"name": "worker-run", "mountPath": WORKER_RUN_DIR, "readOnly": true}],
                        "securityContext": restricted(1000),
                    }],
                    "volumes": [
                        {"name": "worker-passwords", "secret": {"secretName": spec.worker_secret_name(), "defaultMode": 0o440}},
                        {"name": "worker-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    ],
                })),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::spec::DeploySpec;

    fn objects(spec: &DeploySpec) -> Vec<Value> {
        build(spec, &Secrets::default().complete(spec))
            .into_iter()
            .map(|p| p.after)
            .collect()
    }

    fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} not built"))
    }

    #[test]
    fn builds_a_complete_installation_in_apply_order() {
        let spec = DeploySpec::new("bb", "ci");
        let objs = objects(&spec);
        let ids: Vec<String> = objs.iter().map(crate::preview::object_id).collect();
        assert_eq!(
            ids,
            [
                "Secret/bb-workers",
                "Secret/bb-postgres",
                "ConfigMap/bb-config",
                "Service/bb",
                "Service/bb-worker",
                "Service/bb-postgres",
                "NetworkPolicy/bb-master",
                "NetworkPolicy/bb-worker",
                "NetworkPolicy/bb-postgres",
                "PersistentVolumeClaim/bb-master",
                "StatefulSet/bb-postgres",
                "Deployment/bb",
                "StatefulSet/bb-worker",
            ]
        );
        assert!(objs.iter().all(|o| o["metadata"]["namespace"] == "ci"));
    }

    #[test]
    fn pod_templates_carry_the_webhook_policy() {
        let objs = objects(&DeploySpec::new("bb", "ci"));
        let worker = &find(&objs, "StatefulSet", "bb-worker")["spec"]["template"]["spec"];
        assert_eq!(worker["terminationGracePeriodSeconds"], 3600);
        assert_eq!(
            worker["containers"][0]["resources"]["requests"]["cpu"],
            "500m"
        );
        assert!(worker["containers"][0]["lifecycle"]["preStop"]["exec"]["command"].is_array());
        assert_eq!(worker["securityContext"]["fsGroup"], 1000);
        // The official image has dumb-init at /usr/bin (apt): found on PATH, never by a fixed path.
        let start = &worker["containers"][0]["command"];
        assert_eq!(start[0], "sh");
        assert!(
            start[2].as_str().unwrap().contains("command -v dumb-init"),
            "{start}"
        );
        let master = &find(&objs, "Deployment", "bb")["spec"]["template"]["spec"];
        assert_eq!(
            master["containers"][0]["resources"]["requests"]["memory"],
            "512Mi"
        );
        assert_eq!(
            master["initContainers"][0]["name"], "buildbot-volume-permissions",
            "claim chowned first"
        );
        assert_eq!(master["initContainers"][1]["name"], "upgrade-master");
        let pg = &find(&objs, "StatefulSet", "bb-postgres")["spec"]["template"]["spec"];
        assert_eq!(pg["securityContext"]["fsGroup"], 999);
        let init = &pg["initContainers"][0];
        assert_eq!(
            init["volumeMounts"][0]["name"], "data",
            "volumeClaimTemplates count as claims"
        );
        assert!(init["command"][2]
            .as_str()
            .unwrap()
            .contains("999 999 '0700'"));
    }

    #[test]
    fn the_policy_has_nothing_left_to_add() {
        // What deploy applies is already what the webhook wants: a webhook in the cluster
        // changes nothing.
        let objs = objects(&DeploySpec::new("bb", "ci"));
        for o in &objs {
            let again =
                crate::preview::preview_object(o.clone(), &buildbot_policy::Policy::default(), "t")
                    .unwrap();
            assert!(!again.changed(), "{} changed again", again.id);
        }
    }

    #[test]
    fn the_master_gets_a_buildbot_tac_that_upgrade_master_accepts() {
        let objs = objects(&DeploySpec::new("bb", "ci"));
        let tac = find(&objs, "ConfigMap", "bb-config")["data"]["buildbot.tac"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            tac.contains("Application('buildmaster')"),
            "buildbot checks for this literal"
        );
        let master = &find(&objs, "Deployment", "bb")["spec"]["template"]["spec"];
        for c in ["upgrade-master", "master"] {
            let container = master["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(master["containers"].as_array().unwrap())
                .find(|x| x["name"] == c)
                .unwrap();
            let paths: Vec<&str> = container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["mountPath"].as_str())
                .collect();
            assert!(
                paths.contains(&"/var/lib/buildbot/buildbot.tac")
                    && paths.contains(&"/var/lib/buildbot/master.cfg"),
                "{c}: {paths:?}"
            );
        }
    }

    #[test]
    fn external_database_replaces_postgres() {
        let mut spec = DeploySpec::new("bb", "ci");
        spec.database = Database::ExternalUrl("postgresql://u:p@db.example.com/bb".into());
        spec.network_policy = false;
        let objs = objects(&spec);
        assert!(!objs.iter().any(|o| o["metadata"]["name"] == "bb-postgres"));
        assert!(!objs.iter().any(|o| o["kind"] == "NetworkPolicy"));
        let env =
            &find(&objs, "Deployment", "bb")["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(
            env["valueFrom"]["secretKeyRef"],
            json!({"name": "bb-database", "key": "url"})
        );
        let secret = find(&objs, "Secret", "bb-database");
        assert_eq!(
            secret["data"]["url"],
            b64("postgresql://u:p@db.example.com/bb")
        );
    }

    #[test]
    fn config_url_mode_has_no_config_map_and_sets_the_entrypoint_variables() {
        let mut spec = DeploySpec::new("bb", "ci");
        spec.config = MasterConfig::Url("https://example.com/cfg.tar.gz".into());
        let objs = objects(&spec);
        assert!(!objs.iter().any(|o| o["kind"] == "ConfigMap"));
        let master = &find(&objs, "Deployment", "bb")["spec"]["template"];
        assert!(master["metadata"].get("annotations").is_none());
        let env = master["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "BUILDBOT_CONFIG_URL"));
        // The image's entrypoint downloads master.cfg, then waits for the database and upgrades.
        let init = master["spec"]["initContainers"].as_array().unwrap();
        assert!(
            !init.iter().any(|c| c["name"] == "upgrade-master"),
            "{init:?}"
        );
    }

    #[test]
    fn a_new_config_changes_the_checksum() {
        let mut spec = DeploySpec::new("bb", "ci");
        let sum = |spec: &DeploySpec| {
            find(&objects(spec), "Deployment", "bb")["spec"]["template"]["metadata"]["annotations"]
                [CONFIG_CHECKSUM]
                .clone()
        };
        let a = sum(&spec);
        spec.config = MasterConfig::File("c = BuildmasterConfig = {}\n".into());
        assert_ne!(a, sum(&spec));
        assert_eq!(fnv1a(""), "cbf29ce484222325");
    }

    #[test]
    fn latent_mode_has_no_worker_statefulset_and_gives_the_master_its_pod_permissions() {
        let mut spec = DeploySpec::new("bb", "ci");
        spec.worker_mode = WorkerMode::Latent;
        spec.workers = 0;
        let objs = objects(&spec);
        let ids: Vec<String> = objs.iter().map(crate::preview::object_id).collect();
        assert_eq!(
            ids,
            [
                "Secret/bb-workers",
                "Secret/bb-postgres",
                "ConfigMap/bb-config",
                "ServiceAccount/bb-master",
                "Role/bb-latent-workers",
                "RoleBinding/bb-latent-workers",
                "Service/bb",
                "Service/bb-postgres",
                "NetworkPolicy/bb-master",
                "NetworkPolicy/bb-worker",
                "NetworkPolicy/bb-postgres",
                "PersistentVolumeClaim/bb-master",
                "StatefulSet/bb-postgres",
                "Deployment/bb",
            ]
        );
        let role = find(&objs, "Role", "bb-latent-workers");
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
                {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]},
            ])
        );
        let binding = find(&objs, "RoleBinding", "bb-latent-workers");
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "bb-master", "namespace": "ci"}])
        );
        let master = find(&objs, "Deployment", "bb");
        assert_eq!(
            master["metadata"]["annotations"][WORKER_MODE_ANNOTATION],
            "latent"
        );
        let pod = &master["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "bb-master");
        assert_eq!(pod["automountServiceAccountToken"], true);
        assert!(
            !pod.to_string().contains("worker-passwords"),
            "Buildbot makes latent workers' passwords: {pod}"
        );
        // Ingress only: the master reaches the API server; pods carrying the worker labels
        // reach the master's 9989.
        for np in objs.iter().filter(|o| o["kind"] == "NetworkPolicy") {
            assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        }
        let to_master = &find(&objs, "NetworkPolicy", "bb-master")["spec"]["ingress"][0];
        assert_eq!(
            to_master["from"][0]["podSelector"]["matchLabels"],
            spec.selector(Role::Worker)
        );
        let cfg = find(&objs, "ConfigMap", "bb-config")["data"]["master.cfg"]
            .as_str()
            .unwrap();
        assert!(
            cfg.contains("KUBE_CONFIG = KubeInClusterConfigLoader()")
                && cfg.contains("kube_config=KUBE_CONFIG,"),
            "{cfg}"
        );
        assert!(cfg.contains(r#"MASTER_ADDRESS = "bb:9989""#), "{cfg}");
    }

    #[test]
    fn the_per_build_pod_policy_is_the_webhooks() {
        let mut spec = DeploySpec::new("bb", "ci");
        spec.worker_mode = WorkerMode::Latent;
        let policy = latent_pod_policy(&spec);
        assert_eq!(
            policy["container"]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert!(policy["container"].get("lifecycle").is_none());
        assert_eq!(policy["metadata"]["labels"], spec.labels(Role::Worker));
        assert_eq!(
            policy["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
            "false"
        );
        assert_eq!(policy["spec"]["terminationGracePeriodSeconds"], 3600);
        assert_eq!(policy["spec"]["automountServiceAccountToken"], false);
        // A policy file changes it, as it changes the webhook.
        spec.policy =
            buildbot_policy::Policy::from_yaml("resources:\n  worker: {cpu: '2', memory: 4Gi}\n")
                .unwrap();
        assert_eq!(
            latent_pod_policy(&spec)["container"]["resources"]["requests"],
            json!({"cpu": "2", "memory": "4Gi"})
        );
    }
}
