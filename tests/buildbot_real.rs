//! The generated master.cfg on real Buildbot (PyPI) and real PostgreSQL, on loopback:
//! checkconfig, upgrade-master against the database, a worker started with the worker
//! StatefulSet's own command and environment connects with its generated password, and the
//! sample build succeeds.

use std::time::Duration;

use e2e_tests::buildbot::{wait_for, Master, WorkerProcess};
use e2e_tests::postgres::Postgres;
use e2e_tests::temp_dir;
use kubectl_buildbot::commands::deploy::objects;
use kubectl_buildbot::deploy::spec::WORKER_SECRETS_DIR;
use kubectl_buildbot::deploy::{DeploySpec, Secrets};
use serde_json::{json, Value};

/// The installation as deploy renders it, and its passwords.
pub fn installation(max_workers: u32) -> (DeploySpec, Secrets, Vec<Value>) {
    let mut spec = DeploySpec::new("bb", "ci");
    spec.max_workers = max_workers;
    let secrets = Secrets::default().complete(&spec);
    let (objs, _) = objects(&spec, &secrets);
    (spec, secrets, objs)
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap()
}

/// The value of a container's plain env var.
fn env_value(container: &Value, name: &str) -> String {
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

#[test]
fn generated_master_cfg_runs_a_build_on_real_buildbot_and_postgres() {
    let (spec, secrets, objs) = installation(2);
    let pg_password = secrets.postgres.clone().unwrap();
    let pg = Postgres::start("buildbot", &pg_password, "buildbot");

    // The master container's database URL, with the Secret's password and loopback for the
    // Service name.
    let master_tpl = &find(&objs, "Deployment", "bb")["spec"]["template"]["spec"];
    let master_container = &master_tpl["containers"][0];
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
    let cfg = find(&objs, "ConfigMap", "bb-config")["data"]["master.cfg"]
        .as_str()
        .unwrap();
    let mut master = Master::create(
        cfg,
        vec![
            ("BUILDBOT_DB_URL".into(), db_url),
            (
                "BUILDBOT_WORKER_PASSWORDS".into(),
                passwords.display().to_string(),
            ),
        ],
    );

    let checked = master
        .buildbot(&["checkconfig", "."])
        .unwrap_or_else(|e| panic!("checkconfig: {e}"));
    assert!(checked.contains("Config file is good!"), "{checked}");
    // The init container's command, run against the real database.
    let upgrade = master_tpl["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "upgrade-master")
        .unwrap();
    assert!(upgrade["command"][2]
        .as_str()
        .unwrap()
        .contains("buildbot upgrade-master /var/lib/buildbot"));
    let upgraded = master
        .buildbot(&["upgrade-master", "."])
        .unwrap_or_else(|e| panic!("upgrade-master: {e}"));
    assert!(upgraded.contains("upgrade complete"), "{upgraded}");
    master.start();

    // A worker started like the StatefulSet's pod bb-worker-0.
    let sts = &find(&objs, "StatefulSet", "bb-worker")["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<String> = sts["command"].as_array().unwrap()[1..]
        .iter()
        .map(|c| {
            c.as_str()
                .unwrap()
                .replace(WORKER_SECRETS_DIR, &passwords.display().to_string())
        })
        .collect();
    let worker_env = vec![
        ("WORKERNAME".to_string(), "bb-worker-0".to_string()),
        ("BUILDMASTER".to_string(), "127.0.0.1".to_string()),
        ("BUILDMASTER_PORT".to_string(), master.pb_port.to_string()),
    ];
    assert_eq!(env_value(sts, "BUILDMASTER"), spec.master_name());
    let worker = WorkerProcess::start(&command, worker_env);

    wait_for("bb-worker-0 to connect", Duration::from_secs(60), || {
        master
            .connected_workers()
            .contains(&"bb-worker-0".to_string())
            .then_some(())
    });
    let mut configured: Vec<String> = master.get("workers")["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    configured.sort();
    assert_eq!(configured, spec.worker_names());

    master.force("hello", json!({}));
    let build = wait_for(
        "the sample build to finish",
        Duration::from_secs(90),
        || master.builds().into_iter().find(|b| b["complete"] == true),
    );
    assert_eq!(
        build["results"],
        0,
        "SUCCESS\n--- master ---\n{}\n--- worker ---\n{}",
        master.log(),
        worker.log()
    );
}

#[test]
fn a_worker_with_the_wrong_password_is_refused() {
    let (_, secrets, objs) = installation(1);
    let pg = Postgres::start("buildbot", secrets.postgres.as_deref().unwrap(), "buildbot");
    let passwords = temp_dir("worker-passwords");
    std::fs::write(passwords.join("bb-worker-0"), "not-the-password").unwrap();
    let cfg = find(&objs, "ConfigMap", "bb-config")["data"]["master.cfg"]
        .as_str()
        .unwrap();
    // The master reads the real passwords; the worker gets a wrong one.
    let real = temp_dir("real-passwords");
    std::fs::write(real.join("bb-worker-0"), &secrets.workers["bb-worker-0"]).unwrap();
    let db_url = format!(
        "postgresql+psycopg2://buildbot:{}@127.0.0.1:{}/buildbot",
        secrets.postgres.as_deref().unwrap(),
        pg.port
    );
    let mut master = Master::create(
        cfg,
        vec![
            ("BUILDBOT_DB_URL".into(), db_url),
            (
                "BUILDBOT_WORKER_PASSWORDS".into(),
                real.display().to_string(),
            ),
        ],
    );
    master.buildbot(&["upgrade-master", "."]).unwrap();
    master.start();
    let sts = &find(&objs, "StatefulSet", "bb-worker")["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<String> = sts["command"].as_array().unwrap()[1..]
        .iter()
        .map(|c| {
            c.as_str()
                .unwrap()
                .replace(WORKER_SECRETS_DIR, &passwords.display().to_string())
        })
        .collect();
    let worker = WorkerProcess::start(
        &command,
        vec![
            ("WORKERNAME".into(), "bb-worker-0".into()),
            ("BUILDMASTER".into(), "127.0.0.1".into()),
            ("BUILDMASTER_PORT".into(), master.pb_port.to_string()),
        ],
    );
    wait_for("the worker to be refused", Duration::from_secs(60), || {
        worker.log().contains("unauthorized login").then_some(())
    });
    assert!(master.connected_workers().is_empty());
}
