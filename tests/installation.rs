//! A deploy-rendered installation run for real on loopback: PostgreSQL, a master from the
//! ConfigMap's master.cfg with the Deployment's environment, workers started with the worker
//! StatefulSet's command and environment. Cluster names are mapped to loopback addresses.

use std::path::PathBuf;

use kubectl_buildbot::commands::deploy::objects;
use kubectl_buildbot::deploy::spec::{WORKER_RUN_DIR, WORKER_SECRETS_DIR};
use kubectl_buildbot::deploy::{DeploySpec, Secrets};
use serde_json::Value;

use crate::buildbot::{Master, WorkerProcess};
use crate::postgres::Postgres;
use crate::temp_dir;

pub struct Installation {
    pub spec: DeploySpec,
    pub secrets: Secrets,
    /// The objects deploy applies, pod templates already through the policy.
    pub objects: Vec<Value>,
    pub master: Master,
    passwords: PathBuf,
    _pg: Postgres,
}

/// The object of that kind and name.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name}"))
}

/// A container's plain env value.
pub fn env_value(container: &Value, name: &str) -> String {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string()
}

impl Installation {
    /// Renders `bb` with `max_workers` slots, starts PostgreSQL and creates the master
    /// (not started: see [`Installation::start`]).
    pub fn create(max_workers: u32) -> Self {
        Self::create_with_web_port(max_workers, None)
    }

    /// As [`Installation::create`], with the master's web UI and REST API on a fixed port of
    /// 127.0.0.1 (see [`Master::create_with_web_port`]).
    pub fn create_with_web_port(max_workers: u32, web_port: Option<u16>) -> Self {
        let mut spec = DeploySpec::new("bb", "ci");
        spec.max_workers = max_workers;
        let secrets = Secrets::default().complete(&spec);
        let (objects, _) = objects(&spec, &secrets);
        let pg_password = secrets.postgres.clone().unwrap();
        let pg = Postgres::start("buildbot", &pg_password, "buildbot");
        let master_container =
            &find(&objects, "Deployment", "bb")["spec"]["template"]["spec"]["containers"][0];
        let db_url = env_value(master_container, "BUILDBOT_DB_URL")
            .replace("$(POSTGRES_PASSWORD)", &pg_password)
            .replace(
                &format!("{}:5432", spec.postgres_name()),
                &format!("127.0.0.1:{}", pg.port),
            );
        let passwords = temp_dir("worker-passwords");
        for (name, pw) in &secrets.workers {
            std::fs::write(passwords.join(name), pw).unwrap();
        }
        let data = &find(&objects, "ConfigMap", "bb-config")["data"];
        let files = [
            ("master.cfg", data["master.cfg"].as_str().unwrap()),
            ("buildbot.tac", data["buildbot.tac"].as_str().unwrap()),
        ];
        let master = Master::create_with_web_port(
            &files,
            vec![
                ("BUILDBOT_DB_URL".into(), db_url),
                (
                    "BUILDBOT_WORKER_PASSWORDS".into(),
                    passwords.display().to_string(),
                ),
            ],
            web_port,
        );
        Self {
            spec,
            secrets,
            objects,
            master,
            passwords,
            _pg: pg,
        }
    }

    /// Creates, upgrades the database and starts the master.
    pub fn start(max_workers: u32) -> Self {
        Self::start_with_web_port(max_workers, None)
    }

    /// As [`Installation::start`], with the master's REST API on a fixed port of 127.0.0.1.
    pub fn start_with_web_port(max_workers: u32, web_port: Option<u16>) -> Self {
        let mut i = Self::create_with_web_port(max_workers, web_port);
        i.master
            .buildbot(&["upgrade-master", "."])
            .unwrap_or_else(|e| panic!("upgrade-master: {e}"));
        i.master.start();
        i
    }

    /// The worker StatefulSet's container, as deploy applies it.
    pub fn worker_container(&self) -> &Value {
        &find(&self.objects, "StatefulSet", "bb-worker")["spec"]["template"]["spec"]["containers"]
            [0]
    }

    /// The environment the worker pod `name` gets, with the master's Service mapped to loopback.
    pub fn worker_env(&self, name: &str) -> Vec<(String, String)> {
        let c = self.worker_container();
        let master_url = env_value(c, "BUILDBOT_MASTER_URL")
            .replace(&self.spec.master_url(), &self.master.url());
        vec![
            ("WORKERNAME".into(), name.into()),
            ("BUILDMASTER".into(), "127.0.0.1".into()),
            ("BUILDMASTER_PORT".into(), self.master.pb_port.to_string()),
            ("BUILDBOT_MASTER_URL".into(), master_url),
        ]
    }

    /// The worker StatefulSet's `worker-password` init container, as deploy applies it.
    pub fn worker_password_init(&self) -> &Value {
        &find(&self.objects, "StatefulSet", "bb-worker")["spec"]["template"]["spec"]
            ["initContainers"][0]
    }

    /// Starts worker pod `name` as the kubelet would: the `worker-password` init container's
    /// command with the Secret's files and the pod's in-memory run directory materialised
    /// here, then the worker container's command (without dumb-init here, so its fallback
    /// runs) with only the run directory. Returns the process and that run directory.
    pub fn start_worker_with_run_dir(&self, name: &str) -> (WorkerProcess, PathBuf) {
        let run_dir = crate::temp_dir("worker-run");
        let materialise = |c: &Value| -> Vec<String> {
            c["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    c.as_str()
                        .unwrap()
                        .replace(WORKER_SECRETS_DIR, &self.passwords.display().to_string())
                        .replace(WORKER_RUN_DIR, &run_dir.display().to_string())
                })
                .collect()
        };
        let init = self.worker_password_init();
        assert_eq!(init["name"], "worker-password");
        let command = materialise(init);
        crate::output_of(
            std::process::Command::new(&command[0])
                .args(&command[1..])
                .env("WORKERNAME", name),
        )
        .unwrap_or_else(|e| panic!("the worker-password init container failed: {e}"));
        let worker =
            WorkerProcess::start(&materialise(self.worker_container()), self.worker_env(name));
        (worker, run_dir)
    }

    /// Starts worker pod `name` (see [`Installation::start_worker_with_run_dir`]).
    pub fn start_worker(&self, name: &str) -> WorkerProcess {
        self.start_worker_with_run_dir(name).0
    }

    /// Starts worker pod `name` and waits until the master sees it connected.
    pub fn start_connected_worker(&self, name: &str) -> WorkerProcess {
        let worker = self.start_worker(name);
        crate::buildbot::wait_for(
            &format!("{name} to connect"),
            std::time::Duration::from_secs(60),
            || {
                self.master
                    .connected_workers()
                    .iter()
                    .any(|w| w == name)
                    .then_some(())
            },
        );
        worker
    }

    /// Overwrites a worker's password file (to test refusals).
    pub fn set_worker_password(&self, name: &str, password: &str) {
        std::fs::write(self.passwords.join(name), password).unwrap();
    }
}
