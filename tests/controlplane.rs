//! A real control plane for the tests: `.ci/controlplane up` once per test binary (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, and kwok's fake node that runs
//! pods), stopped when the binary exits. Each test works in a namespace of its own.
//!
//! A control plane that cannot start is a test failure, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{output_of, output_with_stdin, repo_root, temp_dir, tool, workspace_binary};

/// The running control plane of this test binary.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts it on first use; later calls return the same one.
    pub fn shared() -> &'static ControlPlane {
        static PLANE: OnceLock<ControlPlane> = OnceLock::new();
        PLANE.get_or_init(|| {
            crate::ensure_tools();
            let dir = temp_dir("controlplane");
            let started = Instant::now();
            let out = output_of(
                Command::new(repo_root().join(".ci/controlplane"))
                    .arg("up")
                    .arg(&dir)
                    .args(["--owner-pid", &std::process::id().to_string()]),
            )
            .unwrap_or_else(|e| panic!("the control plane did not start:\n{e}"));
            eprintln!("{} in {:.1} s", out.trim(), started.elapsed().as_secs_f64());
            ControlPlane {
                kubeconfig: dir.join("kubeconfig"),
                dir,
            }
        })
    }

    /// `kubectl ARGS` against it: Ok(output) or Err(output).
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        output_of(
            Command::new(tool("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
        )
    }

    /// `kubectl ARGS` with `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String, String> {
        output_with_stdin(
            Command::new(tool("kubectl"))
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    /// The real `kubectl-buildbot` binary against it: `-n NAMESPACE ARGS`.
    pub fn kubectl_buildbot(&self, namespace: &str, args: &[&str]) -> std::process::Output {
        Command::new(workspace_binary("kubectl-buildbot"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", namespace])
            .args(args)
            .output()
            .expect("run kubectl-buildbot")
    }

    /// An object as JSON (`kubectl get -o json`).
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        let text = self
            .kubectl(&all)
            .unwrap_or_else(|e| panic!("kubectl {all:?}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl {all:?}: {e}: {text}"))
    }

    /// A fresh namespace, labelled `labels` (`key=value`), once its default ServiceAccount
    /// exists (pods are refused before that).
    pub fn namespace(&self, tag: &str, labels: &[&str]) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{tag}-{}", N.fetch_add(1, Ordering::SeqCst));
        self.kubectl(&["create", "namespace", &name])
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        if !labels.is_empty() {
            let mut args = vec!["label", "namespace", name.as_str()];
            args.extend_from_slice(labels);
            self.kubectl(&args).unwrap();
        }
        wait_until(
            &format!("namespace {name}'s default ServiceAccount"),
            Duration::from_secs(30),
            || {
                self.kubectl(&["get", "serviceaccount", "default", "-n", &name])
                    .is_ok()
            },
        );
        name
    }

    /// The kubeconfig's path.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

/// Polls `f` every 200 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
