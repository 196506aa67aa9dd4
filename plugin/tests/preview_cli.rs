//! `kubectl-buildbot preview` as a user runs it: files and stdin, output formats, exit codes.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubectl-buildbot"));
    c.env_remove("KUBECONFIG");
    c
}

fn run_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary may rightly exit before reading its input (a bad --config): that EPIPE is
    // not the test's concern, its exit code and stderr are.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

const SEED_WORKER: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: worker}\nspec:\n  selector: {matchLabels: {app: buildbot, tier: worker}}\n  template:\n    metadata: {labels: {app: buildbot, tier: worker}}\n    spec:\n      terminationGracePeriodSeconds: 60\n      containers: [{name: worker, image: buildbot/buildbot-worker:master}]\n";
const NGINX: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: nginx, image: nginx}]}\n";

#[test]
fn yaml_from_stdin_with_warnings_on_stderr() {
    let out = run_stdin(&["preview", "-f", "-"], SEED_WORKER);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let obj: serde_json::Value = serde_norway::from_str(&stdout).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert_eq!(
        obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 60,
        "user's grace kept"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("Warning: Deployment/worker: terminationGracePeriodSeconds=60 kept"),
        "{stderr}"
    );
}

#[test]
fn json_output_is_one_object_or_a_list() {
    let out = run_stdin(
        &["preview", "-f", "-", "-o", "json"],
        &format!("{SEED_WORKER}---\n{NGINX}"),
    );
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][1]["metadata"]["name"], "web");
    let out = run_stdin(&["preview", "-f", "-", "-o", "json"], NGINX);
    let one: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["kind"], "Pod");
}

#[test]
fn diff_exit_codes_follow_kubectl_diff() {
    let changed = run_stdin(&["preview", "-f", "-", "--diff"], SEED_WORKER);
    assert_eq!(changed.status.code(), Some(1));
    let text = String::from_utf8(changed.stdout).unwrap();
    assert!(
        text.starts_with("--- a/Deployment/worker\n+++ b/Deployment/worker\n"),
        "{text}"
    );
    assert!(String::from_utf8(changed.stderr)
        .unwrap()
        .contains("Deployment/worker: resources: requested cpu=500m"));
    let same = run_stdin(&["preview", "-f", "-", "--diff"], NGINX);
    assert_eq!(same.status.code(), Some(0));
    assert!(same.stdout.is_empty());
    let broken = run_stdin(&["preview", "-f", "-", "--diff"], "kind: [");
    assert_eq!(broken.status.code(), Some(2));
}

#[test]
fn errors_name_the_input_and_exit_non_zero() {
    let out = run_stdin(
        &["preview", "-f", "-"],
        "apiVersion: v1\nkind: Pod\n---\njust a string\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: <stdin>: document 2 is not a Kubernetes object"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing half-printed");

    let out = bin()
        .args(["preview", "-f", "/definitely/missing.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot read /definitely/missing.yaml"));
}

#[test]
fn policy_file_is_the_webhook_format() {
    let dir = std::env::temp_dir().join(format!("kbb-preview-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("policy.yaml");
    std::fs::write(&cfg, "resources:\n  worker: {cpu: '2', memory: 4Gi}\n").unwrap();
    let out = run_stdin(
        &["preview", "-f", "-", "--config", cfg.to_str().unwrap()],
        SEED_WORKER,
    );
    let obj: serde_json::Value = serde_norway::from_slice(&out.stdout).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "4Gi"
    );
    std::fs::write(&cfg, "mutations: {lables: false}\n").unwrap();
    let out = run_stdin(
        &["preview", "-f", "-", "--config", cfg.to_str().unwrap()],
        SEED_WORKER,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("lables"));
}

#[test]
fn completion_and_version() {
    let out = bin().args(["completion", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("kubectl-buildbot"));
    let out = bin().arg("version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("kubectl-buildbot {}\n", env!("CARGO_PKG_VERSION"))
    );
}
