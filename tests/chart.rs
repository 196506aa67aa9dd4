//! The Helm chart with the real helm: lint and template with several value sets, every
//! rendered object against the Kubernetes schemas, bad values rejected readably, and the real
//! buildbot-webhook started with the certificate and policy that `helm template` rendered,
//! called over HTTPS exactly as the API server calls it.

#[path = "../webhook/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use buildbot_policy::Policy;
use buildbot_webhook::server::{Server, ServerConfig};
use e2e_tests::{kubernetes_validate, repo_root, temp_dir, tool};
use serde_json::Value;

const RELEASE: &str = "bbw";
const NAMESPACE: &str = "buildbot-system";

fn chart() -> PathBuf {
    repo_root().join("charts/buildbot-webhook")
}

fn values_file(yaml: &str) -> PathBuf {
    let f = temp_dir("chart-values").join("values.yaml");
    std::fs::write(&f, yaml).unwrap();
    f
}

fn helm(args: &[&str], values: Option<&str>) -> Result<String, String> {
    let mut c = Command::new(tool("helm"));
    c.args(args);
    if let Some(v) = values {
        c.arg("-f").arg(values_file(v));
    }
    let out = c.output().expect("run helm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(text)
    }
}

fn template(values: Option<&str>) -> Result<Vec<Value>, String> {
    let chart = chart();
    let yaml = helm(
        &[
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
        ],
        values,
    )?;
    Ok(serde_norway::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect())
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

const CERT_MANAGER: &str = "tls: {certManager: {enabled: true}}\n";
const FAIL: &str = "webhook: {failurePolicy: Fail, timeoutSeconds: 3, excludeNamespaces: [legacy-ci], objectSelector: {matchLabels: {app: buildbot}}}\nserviceMonitor: {enabled: true}\n";
const CUSTOM_POLICY: &str = "policy:\n  resources:\n    worker: {cpu: '2', memory: 4Gi}\n  mutations: {volumeOwnership: false}\n  gracefulStop: {terminationGracePeriodSeconds: 7200, masterUrl: 'http://buildbot.ci.svc:8080/'}\n";

fn value_sets() -> Vec<(&'static str, Option<&'static str>)> {
    vec![
        ("default", None),
        ("cert-manager", Some(CERT_MANAGER)),
        ("failurePolicy Fail", Some(FAIL)),
        ("custom policy", Some(CUSTOM_POLICY)),
    ]
}

#[test]
fn helm_lint_passes_for_every_value_set() {
    let chart = chart();
    for (label, values) in value_sets() {
        let out = helm(&["lint", "--strict", chart.to_str().unwrap()], values)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(out.contains("0 chart(s) failed"), "{label}: {out}");
    }
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    // cert-manager's and prometheus-operator's kinds are CRDs the validator has no schema
    // for; they are checked by shape below.
    let crd_kinds = ["Certificate", "Issuer", "ServiceMonitor"];
    for (label, values) in value_sets() {
        let objs = template(values).unwrap_or_else(|e| panic!("{label}: {e}"));
        let core: Vec<Value> = objs
            .iter()
            .filter(|o| !crd_kinds.contains(&o["kind"].as_str().unwrap()))
            .cloned()
            .collect();
        let text = kubernetes_validate(&core, "1.34.0").unwrap_or_else(|e| panic!("{label}:\n{e}"));
        assert_eq!(
            text.matches(" passed for resource ").count(),
            core.len(),
            "{label}: {text}"
        );
        for o in objs
            .iter()
            .filter(|o| crd_kinds.contains(&o["kind"].as_str().unwrap()))
        {
            let api = o["apiVersion"].as_str().unwrap();
            assert!(
                api == "cert-manager.io/v1" || api == "monitoring.coreos.com/v1",
                "{label}: {api}"
            );
            assert!(
                o["spec"].is_object() && o["metadata"]["namespace"] == NAMESPACE,
                "{label}: {o}"
            );
        }
    }
}

/// One webhook per Pod Security level, selected by the namespace's enforce label, so that the
/// policy never injects what PodSecurity would then reject.
#[test]
fn each_pod_security_level_has_its_webhook_and_path() {
    let objs = template(None).unwrap();
    let mwc = find(&objs, "MutatingWebhookConfiguration");
    let webhooks = mwc["webhooks"].as_array().unwrap();
    let seen: Vec<(String, String, String)> = webhooks
        .iter()
        .map(|w| {
            let level = w["namespaceSelector"]["matchExpressions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["key"] == "pod-security.kubernetes.io/enforce")
                .expect("every webhook selects on the enforce label");
            (
                w["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                level["operator"].as_str().unwrap().to_string(),
                level["values"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "/mutate/privileged".into(),
                "NotIn".into(),
                r#"["baseline","restricted"]"#.into()
            ),
            (
                "/mutate/baseline".into(),
                "In".into(),
                r#"["baseline"]"#.into()
            ),
            (
                "/mutate/restricted".into(),
                "In".into(),
                r#"["restricted"]"#.into()
            ),
        ]
    );
}

#[test]
fn the_webhook_configuration_is_safe_by_default() {
    let objs = template(None).unwrap();
    let mwc = find(&objs, "MutatingWebhookConfiguration");
    let w = &mwc["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    assert_eq!(w["admissionReviewVersions"], serde_json::json!(["v1"]));
    assert_eq!(w["timeoutSeconds"], 5);
    assert_eq!(w["rules"][0]["operations"], serde_json::json!(["CREATE"]));
    assert_eq!(w["rules"][0]["resources"], serde_json::json!(["pods"]));
    let exprs = w["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    let excluded = exprs
        .iter()
        .find(|e| e["key"] == "kubernetes.io/metadata.name")
        .unwrap();
    assert_eq!(excluded["operator"], "NotIn");
    for ns in ["kube-system", "kube-node-lease", NAMESPACE] {
        assert!(
            excluded["values"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == ns),
            "{ns} excluded"
        );
    }
    let opt_out = exprs
        .iter()
        .find(|e| e["key"] == "kubectl-buildbot.dev/inject")
        .unwrap();
    assert_eq!(
        (opt_out["operator"].as_str(), &opt_out["values"]),
        (Some("NotIn"), &serde_json::json!(["false"]))
    );
    assert!(w.get("objectSelector").is_none());

    let dep = find(&objs, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        pod["affinity"]["podAntiAffinity"].is_object()
            && pod["topologySpreadConstraints"].is_array()
    );
    assert_eq!(
        find(&objs, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );

    let fail = template(Some(FAIL)).unwrap();
    let w = &find(&fail, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["objectSelector"]["matchLabels"]["app"], "buildbot");
    assert!(w["namespaceSelector"]["matchExpressions"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "legacy-ci"));
}

#[test]
fn cert_manager_mode_injects_the_ca_instead_of_embedding_it() {
    let objs = template(Some(CERT_MANAGER)).unwrap();
    let mwc = find(&objs, "MutatingWebhookConfiguration");
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/{RELEASE}-buildbot-webhook")
    );
    assert!(mwc["webhooks"][0]["clientConfig"].get("caBundle").is_none());
    assert!(
        !objs.iter().any(|o| o["kind"] == "Secret"),
        "cert-manager writes the Secret"
    );
    let serving = objs
        .iter()
        .find(|o| {
            o["kind"] == "Certificate"
                && o["metadata"]["name"] == format!("{RELEASE}-buildbot-webhook")
        })
        .unwrap();
    assert_eq!(
        serving["spec"]["secretName"],
        format!("{RELEASE}-buildbot-webhook-tls")
    );
    assert!(serving["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == &format!("{RELEASE}-buildbot-webhook.{NAMESPACE}.svc")));
}

#[test]
fn bad_values_are_rejected_with_the_path_of_the_value() {
    for (values, expected) in [
        (
            "webhook: {failurePolicy: Sometimes}",
            "/webhook/failurePolicy",
        ),
        ("webhook: {timeoutSeconds: 60}", "/webhook/timeoutSeconds"),
        ("policy: {mutations: {lables: false}}", "lables"),
        (
            "policy: {resources: {worker: {cpu: lots, memory: 1Gi}}}",
            "/policy/resources/worker/cpu",
        ),
        ("replicaCount: zero", "/replicaCount"),
        (
            "tls: {certManager: {enabled: yes-please}}",
            "/tls/certManager/enabled",
        ),
    ] {
        let err = template(Some(values)).unwrap_err();
        assert!(err.contains(expected), "{values}: {err}");
    }
}

#[test]
fn the_rendered_policy_is_the_webhooks_format_and_values_yaml_lists_every_default() {
    let policy_of = |objs: &[Value]| {
        let text = find(objs, "ConfigMap")["data"]["policy.yaml"]
            .as_str()
            .unwrap()
            .to_string();
        Policy::from_yaml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    // values.yaml carries the complete default policy: chart and binary never drift apart.
    assert_eq!(policy_of(&template(None).unwrap()), Policy::default());
    let custom = policy_of(&template(Some(CUSTOM_POLICY)).unwrap());
    assert_eq!(custom.resources.worker.memory, "4Gi");
    assert!(!custom.mutations.volume_ownership);
    assert_eq!(
        custom.graceful_stop.master_url.as_deref(),
        Some("http://buildbot.ci.svc:8080/")
    );
    assert_eq!(
        custom.resources.master,
        Policy::default().resources.master,
        "other defaults kept"
    );
}

fn b64(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_real_webhook_serves_with_the_rendered_certificate_and_policy() {
    let objs = template(Some(CUSTOM_POLICY)).unwrap();
    let secret = find(&objs, "Secret");
    let mwc = find(&objs, "MutatingWebhookConfiguration");
    let client_config = &mwc["webhooks"][0]["clientConfig"];
    let ca_bundle = b64(&client_config["caBundle"]);
    // The name the API server verifies: <service>.<namespace>.svc.
    let service = find(&objs, "Service");
    assert_eq!(
        client_config["service"]["name"],
        service["metadata"]["name"]
    );
    let server_name = format!(
        "{}.{}.svc",
        client_config["service"]["name"].as_str().unwrap(),
        client_config["service"]["namespace"].as_str().unwrap()
    );
    assert_eq!(client_config["service"]["path"], "/mutate/privileged");

    let dir = temp_dir("chart-webhook");
    std::fs::write(dir.join("tls.crt"), b64(&secret["data"]["tls.crt"])).unwrap();
    std::fs::write(dir.join("tls.key"), b64(&secret["data"]["tls.key"])).unwrap();
    assert_eq!(b64(&secret["data"]["ca.crt"]), ca_bundle);
    let policy_text = find(&objs, "ConfigMap")["data"]["policy.yaml"]
        .as_str()
        .unwrap();
    // The Deployment passes these files, by these flags.
    let args =
        find(&objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    for flag in [
        "--tls-cert=/tls/tls.crt",
        "--tls-key=/tls/tls.key",
        "--config=/config/policy.yaml",
    ] {
        assert!(
            args.as_array().unwrap().iter().any(|a| a == flag),
            "{flag} in {args}"
        );
    }
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("tls.crt"),
        dir.join("tls.key"),
    );
    config.policy = Policy::from_yaml(policy_text).unwrap();
    let server = Server::bind(config)
        .await
        .expect("the rendered certificate and key load");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let review = common::admission_review(
        "4f0a2d54-6a4e-4b54-9a0e-000000000001",
        common::seed_worker_pod(),
    );
    let path = client_config["service"]["path"].as_str().unwrap();
    let reply = common::https(addr, &ca_bundle, &server_name, "POST", path, &review)
        .await
        .expect("TLS with the caBundle and the Service name");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["response"]["uid"], "4f0a2d54-6a4e-4b54-9a0e-000000000001");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(v["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = common::seed_worker_pod();
    json_patch::patch(&mut pod, &patch).unwrap();
    // The custom policy from the values, end to end.
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 7200);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "4Gi"
    );
    assert!(
        pod["spec"].get("initContainers").is_none(),
        "volumeOwnership off"
    );
    let hook = &pod["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(
        hook.as_array().unwrap().last().unwrap(),
        "http://buildbot.ci.svc:8080/"
    );

    // A client that trusts another CA is refused: only the caBundle works.
    let other = common::Ca::new("other");
    assert!(
        common::https(addr, &other.pem(), &server_name, "GET", "/healthz", b"")
            .await
            .is_err()
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
}
