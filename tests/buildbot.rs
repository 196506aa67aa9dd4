//! Real Buildbot processes for the tests: a master from a generated master.cfg, workers
//! started the way the worker StatefulSet starts them, and a small REST client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{free_port, output_of, temp_dir, tool};

/// Stand-in for the official `buildbot/buildbot-worker` image's buildbot.tac, with the same
/// contract: BUILDMASTER, BUILDMASTER_PORT, WORKERNAME, WORKERPASS from the environment, the
/// password taken out of the environment, and no `allow_shutdown` (so only the master can
/// stop the worker gracefully).
pub const WORKER_TAC: &str = r#"import os
import sys

from twisted.application import service
from twisted.python.log import FileLogObserver, ILogObserver

from buildbot_worker.bot import Worker

env = os.environ
password = env.pop("WORKERPASS", None)
application = service.Application("buildbot-worker")
application.setComponent(ILogObserver, FileLogObserver(sys.stdout).emit)
Worker(
    env.get("BUILDMASTER", "localhost"),
    int(env.get("BUILDMASTER_PORT", "9989")),
    env.get("WORKERNAME", "docker"),
    password,
    os.path.abspath(os.path.dirname(__file__)),
    600,
    umask=None,
    maxdelay=300,
    allow_shutdown=None,
    maxRetries=10,
).setServiceParent(application)
"#;

/// PATH with the tools' venv first, so `buildbot`, `twistd` and `python3` are Buildbot's.
pub fn venv_path() -> String {
    let venv_bin = tool("python").parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// One HTTP/1.0 request to loopback; JSON in and out.
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let (code, text) = http(port, method, path, body)?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// One HTTP/1.0 request to 127.0.0.1:`port`: the status and the body as text.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(&body))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    Ok((code, body.to_string()))
}

/// Polls `f` every 250 ms until it returns `Some`, or panics after `timeout` saying `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A Buildbot master in a temporary basedir, run as the master pod runs it.
pub struct Master {
    pub basedir: PathBuf,
    pub web_port: u16,
    pub pb_port: u16,
    env: Vec<(String, String)>,
    /// A command prefix for every Buildbot command (see [`in_pod`]).
    wrapper: Vec<String>,
    process: Option<Child>,
}

/// A command prefix that runs a process with a pod's service account files: in a mount
/// namespace of its own, a fresh tmpfs on /run (where /var/run points) holds
/// /var/run/secrets/kubernetes.io/serviceaccount with the files of `service_account` (`token`,
/// `ca.crt`, `namespace`), which is what Buildbot's KubeInClusterConfigLoader reads. Nothing
/// outside the process sees them. Root is needed for the mount; without it, a user
/// namespace maps the caller to root.
pub fn in_pod(service_account: &Path) -> Vec<String> {
    let mut cmd: Vec<String> = ["unshare", "--mount", "--propagation", "private"]
        .map(String::from)
        .to_vec();
    let root = output_of(Command::new("id").arg("-u")).is_ok_and(|id| id.trim() == "0");
    if !root {
        cmd.push("--map-root-user".into());
    }
    cmd.extend([
        "sh".into(),
        "-c".into(),
        "set -e; run=$(readlink -f /var/run); mount -t tmpfs kubectl-buildbot-test \"$run\"; \
         d=/var/run/secrets/kubernetes.io/serviceaccount; mkdir -p \"$d\"; cp \"$0\"/* \"$d\"/; exec \"$@\""
            .into(),
        service_account.display().to_string(),
    ]);
    cmd
}

impl Master {
    /// A fresh basedir holding only the ConfigMap's files (`master.cfg`, `buildbot.tac`), as
    /// the pod's volume does; `env` is the master container's environment.
    pub fn create(files: &[(&str, &str)], env: Vec<(String, String)>) -> Self {
        Self::create_with_web_port(files, env, None)
    }

    /// As [`Master::create`], with the web UI and REST API on `web_port` when given (the fixed
    /// ports real setups use, 8080 or 8010), listening on 127.0.0.1 only: other loopback
    /// addresses then have nothing on that port, for tests of an unreachable master.
    pub fn create_with_web_port(
        files: &[(&str, &str)],
        env: Vec<(String, String)>,
        web_port: Option<u16>,
    ) -> Self {
        let basedir = temp_dir("master");
        let pb_port = free_port();
        let fixed = web_port.is_some();
        let web_port = web_port.unwrap_or_else(free_port);
        let mut env = env;
        env.push(("BUILDBOT_WEB_PORT".into(), web_port.to_string()));
        env.push(("BUILDBOT_WORKER_PORT".into(), pb_port.to_string()));
        env.push((
            "BUILDBOT_WEB_URL".into(),
            format!("http://127.0.0.1:{web_port}/"),
        ));
        for (name, text) in files {
            let mut text = (*text).to_string();
            if fixed && *name == "master.cfg" {
                // Bind the fixed port on 127.0.0.1 alone (Buildbot takes a strports string
                // for www's port).
                text.push_str(
                    "\nc[\"www\"][\"port\"] = \"tcp:%s:interface=127.0.0.1\" % c[\"www\"][\"port\"]\n",
                );
            }
            std::fs::write(basedir.join(name), text).unwrap();
        }
        Self {
            basedir,
            web_port,
            pb_port,
            env,
            wrapper: Vec::new(),
            process: None,
        }
    }

    /// Runs every later Buildbot command of this master with `wrapper` in front (see
    /// [`in_pod`]), and with `env` added to its environment.
    pub fn wrap(&mut self, wrapper: Vec<String>, env: Vec<(String, String)>) {
        self.wrapper = wrapper;
        self.env.extend(env);
    }

    /// `program` through the wrapper, in the basedir, with the master's environment.
    fn command(&self, program: PathBuf) -> Command {
        let mut command = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .current_dir(&self.basedir)
            .env("PATH", venv_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `buildbot ARGS` in the basedir with the master's environment: Ok(output) when it
    /// succeeds, Err(output) otherwise.
    pub fn buildbot(&self, args: &[&str]) -> Result<String, String> {
        output_of(self.command(tool("buildbot")).args(args))
    }

    /// Runs the venv's `python3 ARGS` as the master's commands run (wrapper, basedir, env).
    pub fn python(&self, args: &[&str]) -> Result<String, String> {
        output_of(self.command(tool("python")).args(args))
    }

    /// Starts the master in the foreground, as the image's entrypoint does
    /// (`twistd -ny buildbot.tac`), and returns once its REST API answers.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.basedir.join("master.log")).unwrap();
        let child = self
            .command(tool("twistd"))
            .args(["--pidfile=", "-ny", "buildbot.tac"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start twistd");
        self.process = Some(child);
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = http_json(self.web_port, "GET", "/api/v2/masters", None) {
                return;
            }
            let exited = self.process.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && started.elapsed() < Duration::from_secs(60),
                "master did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.web_port)
    }

    /// GET /api/v2/PATH.
    pub fn get(&self, path: &str) -> Value {
        let (code, text) =
            http(self.web_port, "GET", &format!("/api/v2/{path}"), None).expect("REST GET");
        assert_eq!(code, 200, "GET {path}: {text}");
        // The whole answer when it is not JSON: a poll that reads it must say what it got.
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    /// A JSON-RPC control call on /api/v2/PATH.
    pub fn control(&self, path: &str, method: &str, params: Value) -> (u16, Value) {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        http_json(
            self.web_port,
            "POST",
            &format!("/api/v2/{path}"),
            Some(&body),
        )
        .expect("REST POST")
    }

    /// The names of the workers connected now.
    pub fn connected_workers(&self) -> Vec<String> {
        let answer = self.get("workers");
        answer["workers"]
            .as_array()
            .unwrap_or_else(|| panic!("GET workers: no workers in {answer}"))
            .iter()
            .filter(|w| w["connected_to"].as_array().is_some_and(|c| !c.is_empty()))
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Forces a build of `builder` with extra properties; returns the build request's id.
    pub fn force(&self, builder: &str, properties: Value) -> i64 {
        let builders = self.get("builders");
        let id = builders["builders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == builder)
            .expect("builder")["builderid"]
            .clone();
        let mut params = json!({"builderid": id.to_string()});
        params
            .as_object_mut()
            .unwrap()
            .extend(properties.as_object().cloned().unwrap_or_default());
        let (code, v) = self.control("forceschedulers/force", "force", params);
        assert_eq!(code, 200, "force: {v}");
        v["result"][0].as_i64().expect("buildset id")
    }

    /// All builds, oldest first.
    pub fn builds(&self) -> Vec<Value> {
        let answer = self.get("builds?order=buildid");
        answer["builds"]
            .as_array()
            .unwrap_or_else(|| panic!("GET builds: no builds in {answer}"))
            .clone()
    }

    /// The master's output so far (the tac logs to stdout), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.basedir.join("master.log")).unwrap_or_default()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A worker process, started with the worker StatefulSet's own command.
pub struct WorkerProcess {
    pub child: Child,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts `command` (the container's command without dumb-init) in a fresh worker
    /// directory holding the image's buildbot.tac, with the container's environment.
    pub fn start(command: &[String], env: Vec<(String, String)>) -> Self {
        let dir = temp_dir("worker");
        std::fs::write(dir.join("buildbot.tac"), WORKER_TAC).unwrap();
        let log = dir.join("worker.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&command[0])
            .args(&command[1..])
            .current_dir(&dir)
            .env("PATH", venv_path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the worker");
        Self {
            child,
            dir,
            env,
            log,
        }
    }

    /// Sends a signal, as the kubelet does (`TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        // The process may have exited already (that is what the graceful stop is for).
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
