//! What `kubectl buildbot deploy --dry-run=client -o yaml` prints: valid against the
//! Kubernetes schemas (the real kubernetes-validate), and wired together: selectors select,
//! references resolve, master.cfg's worker names are the StatefulSet's pod names.

use std::collections::BTreeMap;

use e2e_tests::kubernetes_validate;
use kubectl_buildbot::commands::deploy::objects;
use kubectl_buildbot::deploy::{Database, DeploySpec, MasterConfig, Secrets, WorkerMode};
use serde_json::Value;

fn rendered(spec: &DeploySpec) -> Vec<Value> {
    objects(spec, &Secrets::default().complete(spec)).0
}

fn specs() -> Vec<(&'static str, DeploySpec)> {
    let default = DeploySpec::new("buildbot", "default");
    let mut external = DeploySpec::new("ci", "build");
    external.database =
        Database::ExternalUrl("postgresql+psycopg2://bb:pw@db.example.com/bb".into());
    external.network_policy = false;
    external.storage_class = Some("fast".into());
    let mut secret_db = DeploySpec::new("bb2", "x");
    secret_db.database = Database::ExternalSecret {
        name: "my-db".into(),
        key: "uri".into(),
    };
    secret_db.config = MasterConfig::Url("https://example.com/config.tar.gz".into());
    let mut many = DeploySpec::new("big", "ci");
    many.workers = 5;
    many.max_workers = 10;
    let mut latent = DeploySpec::new("pods", "ci");
    kubectl_buildbot::commands::deploy::set_worker_mode(&mut latent, WorkerMode::Latent, None)
        .unwrap();
    vec![
        ("default", default),
        ("external-url", external),
        ("external-secret", secret_db),
        ("many", many),
        ("latent", latent),
    ]
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    for (label, spec) in specs() {
        let objs = rendered(&spec);
        for version in ["1.30.0", "1.34.0"] {
            let out = kubernetes_validate(&objs, version)
                .unwrap_or_else(|e| panic!("{label} on {version}:\n{e}"));
            let passed = out.matches(" passed for resource ").count();
            assert_eq!(
                passed,
                rendered(&spec).len(),
                "{label}: every object checked\n{out}"
            );
        }
    }
}

#[test]
fn the_validator_does_reject_a_broken_object() {
    // So that the test above can fail: an unknown field and a wrong type are caught.
    let mut objs = rendered(&DeploySpec::new("bb", "ci"));
    let sts = objs
        .iter_mut()
        .find(|o| o["kind"] == "StatefulSet")
        .unwrap();
    sts["spec"]["replicas"] = "two".into();
    sts["spec"]["template"]["spec"]["containerz"] = Value::Array(vec![]);
    let err = kubernetes_validate(&objs, "1.34.0").unwrap_err();
    assert!(
        err.contains("replicas") || err.contains("containerz"),
        "{err}"
    );
}

fn templates(objs: &[Value]) -> Vec<(String, &Value)> {
    objs.iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                &o["spec"]["template"],
            )
        })
        .collect()
}

fn selects(selector: &serde_json::Map<String, Value>, labels: &Value) -> bool {
    selector.iter().all(|(k, v)| &labels[k] == v)
}

#[test]
fn every_selector_selects_its_pods_and_every_reference_resolves() {
    for (label, spec) in specs() {
        let objs = rendered(&spec);
        let by = |kind: &str| -> BTreeMap<String, &Value> {
            objs.iter()
                .filter(|o| o["kind"] == kind)
                .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), o))
                .collect()
        };
        let (secrets, maps, claims, services) = (
            by("Secret"),
            by("ConfigMap"),
            by("PersistentVolumeClaim"),
            by("Service"),
        );
        let templates = templates(&objs);

        // Each workload's selector matches its own template; each Service selects exactly one workload's pods.
        for o in objs
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        {
            let sel = o["spec"]["selector"]["matchLabels"].as_object().unwrap();
            assert!(
                selects(sel, &o["spec"]["template"]["metadata"]["labels"]),
                "{label}: {} selector",
                o["metadata"]["name"]
            );
        }
        for (name, svc) in &services {
            let sel = svc["spec"]["selector"].as_object().unwrap();
            let hits: Vec<&String> = templates
                .iter()
                .filter(|(_, t)| selects(sel, &t["metadata"]["labels"]))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(hits.len(), 1, "{label}: Service/{name} selects {hits:?}");
            // Named target ports exist on the selected pods.
            let tpl = templates.iter().find(|(n, _)| n == hits[0]).unwrap().1;
            for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let target = port["targetPort"].as_str().unwrap();
                let found = tpl["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .any(|p| p["name"] == target);
                assert!(
                    found,
                    "{label}: Service/{name} targetPort {target} on {}",
                    hits[0]
                );
            }
        }
        // StatefulSets are governed by an existing headless Service.
        for o in objs.iter().filter(|o| o["kind"] == "StatefulSet") {
            let svc = o["spec"]["serviceName"].as_str().unwrap();
            assert_eq!(
                services.get(svc).map(|s| &s["spec"]["clusterIP"]),
                Some(&Value::from("None")),
                "{label}: {svc}"
            );
        }
        // A pod's ServiceAccount, and a RoleBinding's Role and subjects, are created.
        let (accounts, roles) = (by("ServiceAccount"), by("Role"));
        for (name, tpl) in &templates {
            if let Some(sa) = tpl["spec"]["serviceAccountName"].as_str() {
                assert!(accounts.contains_key(sa), "{label}: {name} runs as {sa}");
            }
        }
        for (name, binding) in by("RoleBinding") {
            let role = binding["roleRef"]["name"].as_str().unwrap();
            assert!(
                roles.contains_key(role),
                "{label}: RoleBinding/{name} binds {role}"
            );
            for subject in binding["subjects"].as_array().unwrap() {
                let sa = subject["name"].as_str().unwrap();
                assert!(
                    accounts.contains_key(sa),
                    "{label}: RoleBinding/{name} binds {sa}"
                );
                assert_eq!(subject["namespace"], spec.namespace.as_str(), "{label}");
            }
        }
        // Every Secret, ConfigMap and claim a pod refers to is created (or is the user's own).
        for (name, tpl) in &templates {
            let spec_ = &tpl["spec"];
            let containers = spec_["containers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(spec_["initContainers"].as_array().into_iter().flatten());
            for c in containers {
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                        let secret = r["name"].as_str().unwrap();
                        if secret == "my-db" {
                            continue; // --database-secret: the user's
                        }
                        let data = &secrets
                            .get(secret)
                            .unwrap_or_else(|| panic!("{label}: {name} needs Secret/{secret}"))
                            ["data"];
                        assert!(
                            data[r["key"].as_str().unwrap()].is_string(),
                            "{label}: {name}: key {} in Secret/{secret}",
                            r["key"]
                        );
                    }
                }
            }
            for v in spec_["volumes"].as_array().into_iter().flatten() {
                if let Some(s) = v["secret"]["secretName"].as_str() {
                    assert!(secrets.contains_key(s), "{label}: {name} mounts Secret/{s}");
                }
                if let Some(m) = v["configMap"]["name"].as_str() {
                    assert!(maps.contains_key(m), "{label}: {name} mounts ConfigMap/{m}");
                }
                if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                    assert!(claims.contains_key(c), "{label}: {name} mounts claim {c}");
                }
            }
        }
    }
}

#[test]
fn master_cfg_names_the_stateful_set_pods_and_the_database_host_is_the_postgres_service() {
    let mut spec = DeploySpec::new("bb", "ci");
    spec.max_workers = 6;
    let objs = rendered(&spec);
    let cfg = objs.iter().find(|o| o["kind"] == "ConfigMap").unwrap()["data"]["master.cfg"]
        .as_str()
        .unwrap()
        .to_string();
    let sts = objs
        .iter()
        .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "bb-worker")
        .unwrap();
    let pod_names: Vec<String> = (0..spec.max_workers)
        .map(|i| format!("{}-{i}", sts["metadata"]["name"].as_str().unwrap()))
        .collect();
    let declared = cfg
        .lines()
        .find(|l| l.starts_with("WORKER_NAMES = "))
        .unwrap()
        .trim_start_matches("WORKER_NAMES = ");
    let declared: Vec<String> = serde_json::from_str(declared).unwrap();
    assert_eq!(declared, pod_names);
    // The worker's name in Buildbot is its pod name.
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    let workername = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "WORKERNAME")
        .unwrap();
    assert_eq!(
        workername["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    // The master's database URL points at the PostgreSQL Service, on its port.
    let master = objs.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let url = master["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BUILDBOT_DB_URL")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let host_port = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let pg_svc = objs
        .iter()
        .find(|o| {
            o["kind"] == "Service"
                && o["metadata"]["labels"]["app.kubernetes.io/component"] == "database"
        })
        .unwrap();
    assert_eq!(
        host_port,
        format!(
            "{}:{}",
            pg_svc["metadata"]["name"].as_str().unwrap(),
            pg_svc["spec"]["ports"][0]["port"]
        )
    );
    // Workers reach the master Service by name, on its pb port.
    let buildmaster = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BUILDMASTER")
        .unwrap()["value"]
        .clone();
    let master_svc = objs
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == buildmaster)
        .unwrap();
    assert!(master_svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == 9989));
}

#[test]
fn pods_run_as_non_root_without_privileges() {
    let objs = rendered(&DeploySpec::new("bb", "ci"));
    for (name, tpl) in templates(&objs) {
        assert_eq!(
            tpl["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert_eq!(tpl["spec"]["automountServiceAccountToken"], false, "{name}");
        for c in tpl["spec"]["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true, "{name}/{}", c["name"]);
            assert_eq!(
                sc["allowPrivilegeEscalation"], false,
                "{name}/{}",
                c["name"]
            );
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}/{}",
                c["name"]
            );
        }
        // The only root process: the policy's chown init container, with CHOWN/FOWNER alone.
        for c in tpl["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if c["securityContext"]["runAsUser"] == 0 {
                assert_eq!(c["name"], "buildbot-volume-permissions", "{name}");
                assert_eq!(
                    c["securityContext"]["capabilities"]["add"],
                    serde_json::json!(["CHOWN", "FOWNER"])
                );
            }
        }
    }
}

/// In a namespace with a ResourceQuota on `requests.cpu` or `requests.memory`, the API server
/// rejects a pod in which any container, init containers included, has no request.
#[test]
fn every_container_deploy_renders_has_cpu_and_memory_requests_init_containers_included() {
    for (label, spec) in specs() {
        let mut seen = 0;
        for obj in rendered(&spec) {
            let pod = &obj["spec"]["template"]["spec"];
            for list in ["initContainers", "containers"] {
                for c in pod[list].as_array().into_iter().flatten() {
                    seen += 1;
                    for resource in ["cpu", "memory"] {
                        assert!(
                            c["resources"]["requests"][resource].is_string(),
                            "{label}: {} {list} {:?} has no {resource} request: {}",
                            obj["metadata"]["name"],
                            c["name"],
                            c["resources"]
                        );
                    }
                }
            }
        }
        assert!(seen >= 2, "{label}: containers checked");
    }
    // The master's init container is there to be checked, in the default installation.
    let objs = rendered(&DeploySpec::new("bb", "ci"));
    let master = objs
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("master");
    let init = master["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .expect("init containers");
    assert!(
        init.iter().any(|c| c["name"] == "upgrade-master"),
        "{init:?}"
    );
}
