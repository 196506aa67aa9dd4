//! `kubectl buildbot doctor` live: the seed's broken setup applied to a real control plane
//! (the controllers create its ReplicaSets and pods) is diagnosed like the same files
//! offline. Only what a cluster alone can tell is added: the metrics API the HPA needs and
//! the webhook that is not installed.

use std::time::Duration;

use e2e_tests::controlplane::{wait_until, ControlPlane};
use e2e_tests::repo_root;
use serde_json::Value;

/// `(code, first object)` of each finding, from `-o json` output, sorted (a multiset: one
/// object may have a code twice).
fn findings(json: &str) -> Vec<(String, String)> {
    let report: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    sorted(&report, None)
}

/// `(code, first object)` of the findings of a report (of one namespace), sorted.
fn sorted(report: &Value, namespace: Option<&str>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e2e_tests::doctor_findings(report))
        .filter(|(f, _)| namespace.is_none_or(|ns| f["namespace"] == ns))
        .map(|(_, (code, _, object))| (code, object))
        .collect();
    v.sort();
    v
}

/// What is in `a` and not in `b`, counting repeats.
fn minus(a: &[(String, String)], b: &[(String, String)]) -> Vec<(String, String)> {
    let mut rest = b.to_vec();
    a.iter()
        .filter(|x| match rest.iter().position(|y| y == *x) {
            Some(i) => {
                rest.remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

#[test]
fn live_mode_finds_what_file_mode_finds_on_the_seed_setup() {
    let cp = ControlPlane::shared();
    let ns = cp.namespace("doctor", &[]);
    let seed = repo_root().join("tests/fixtures/doctor/seed");
    let seed = seed.display().to_string();
    cp.kubectl(&["apply", "-n", &ns, "-f", &seed])
        .unwrap_or_else(|e| panic!("apply the seed setup: {e}"));
    // The Deployment controller's ReplicaSets and their pods exist: doctor must not report
    // each trap again for them.
    wait_until("the seed's pods", Duration::from_secs(60), || {
        cp.get_json(&["pods", "-n", &ns])["items"]
            .as_array()
            .is_some_and(|p| p.len() == 3)
    });

    let offline = cp.kubectl_buildbot(&ns, &["doctor", "-f", &seed, "-o", "json"]);
    let live = cp.kubectl_buildbot(&ns, &["doctor", "-o", "json"]);
    assert_eq!(live.status.code(), Some(1), "{}", e2e_tests::text_of(&live));
    let offline = findings(&String::from_utf8_lossy(&offline.stdout));
    let live_text = String::from_utf8_lossy(&live.stdout).to_string();
    let live = findings(&live_text);
    let report: Value = serde_json::from_str(&live_text).unwrap();
    assert_eq!(report["source"], "cluster");

    let missing = minus(&offline, &live);
    assert!(
        missing.is_empty(),
        "live mode misses {missing:?}\nlive: {live_text}"
    );
    let extra = minus(&live, &offline);
    let cluster_only: Vec<(String, String)> = [
        ("BB05", "HorizontalPodAutoscaler/worker"), // no metrics-server on this plane
        ("BB09", "Deployment/master"),              // the webhook is not installed
    ]
    .into_iter()
    .map(|(c, o)| (c.to_string(), o.to_string()))
    .collect();
    assert_eq!(extra, cluster_only, "live: {live_text}");
    assert!(
        live_text.contains("APIService v1beta1.metrics.k8s.io is missing"),
        "{live_text}"
    );
    // In a cluster an absent Service is certain: BB03's `db` is an error there.
    let db = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "BB03")
        .unwrap();
    assert_eq!(db["severity"], "error");

    // All namespaces: the same findings for this one, among others'.
    let all = cp.kubectl_buildbot(&ns, &["doctor", "-A", "-o", "json"]);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    let here = sorted(&all, Some(&ns));
    assert_eq!(here, live);
}
