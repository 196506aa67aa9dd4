//! The webhook as the chart installs it against the test control plane: `helm install` in url
//! mode (the API server refuses Service endpoints on loopback, so the webhook runs here,
//! outside the cluster, with the chart's certificate and policy).

use std::process::{Child, Command};
use std::time::Duration;

use base64::Engine as _;

use crate::controlplane::{wait_until, ControlPlane};
use crate::{free_port, repo_root, temp_dir, tool, workspace_binary};

/// Installs the chart into a namespace of its own in url mode and starts the webhook it
/// points at. Returns the webhook and the namespace.
pub fn install(cp: &ControlPlane) -> (Webhook, String) {
    let system = cp.namespace("buildbot-webhook", &[]);
    let port = free_port();
    let chart = repo_root().join("charts/buildbot-webhook");
    helm(
        cp,
        &[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "-n",
            &system,
            "--set",
            &format!("webhook.url=https://127.0.0.1:{port}/mutate"),
        ],
    );
    (Webhook::start(cp, &system, port), system)
}

/// The Helm release name the tests install the chart as.
pub const RELEASE: &str = "bbw";

/// `buildbot-webhook serve` running here, as the chart configured it.
pub struct Webhook {
    process: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Webhook {
    /// Starts `buildbot-webhook serve` with the chart's Secret and policy from the cluster.
    pub fn start(cp: &ControlPlane, ns: &str, port: u16) -> Self {
        let dir = temp_dir("webhook");
        let secret = cp.get_json(&[
            "secret",
            &format!("{RELEASE}-buildbot-webhook-tls"),
            "-n",
            ns,
        ]);
        for key in ["tls.crt", "tls.key"] {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(secret["data"][key].as_str().unwrap())
                .unwrap();
            std::fs::write(dir.join(key), pem).unwrap();
        }
        let policy = cp.get_json(&[
            "configmap",
            &format!("{RELEASE}-buildbot-webhook-policy"),
            "-n",
            ns,
        ]);
        std::fs::write(
            dir.join("policy.yaml"),
            policy["data"]["policy.yaml"].as_str().unwrap(),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("webhook.log")).unwrap();
        let process = Command::new(workspace_binary("buildbot-webhook"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .arg("--config")
            .arg(dir.join("policy.yaml"))
            .args(["--log-format", "text"])
            // A line per review, for failure messages.
            .env("BUILDBOT_WEBHOOK_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start buildbot-webhook");
        wait_until("the webhook to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Webhook { process, port, dir }
    }

    /// The /metrics text.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{}/metrics", self.port)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A counter from /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("webhook.log")).unwrap_or_default()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `helm ARGS` against the control plane; panics with the output when it fails.
pub fn helm(cp: &ControlPlane, args: &[&str]) -> String {
    crate::output_of(
        Command::new(tool("helm"))
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .args(args),
    )
    .unwrap_or_else(|e| panic!("helm {args:?}: {e}"))
}
