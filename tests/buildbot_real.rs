//! The generated master.cfg on real Buildbot (PyPI) and real PostgreSQL, on loopback:
//! checkconfig, upgrade-master against the database, a worker started with the worker
//! StatefulSet's own command and environment connects with its generated password, and the
//! sample build succeeds.

use std::time::Duration;

use e2e_tests::buildbot::wait_for;
use e2e_tests::installation::{env_value, find, Installation};
use serde_json::json;

#[test]
fn generated_master_cfg_runs_a_build_on_real_buildbot_and_postgres() {
    let mut i = Installation::create(2);
    let checked = i
        .master
        .buildbot(&["checkconfig", "."])
        .unwrap_or_else(|e| panic!("checkconfig: {e}"));
    assert!(checked.contains("Config file is good!"), "{checked}");
    // The master's init container runs upgrade-master; here against the real database.
    let master_tpl = &find(&i.objects, "Deployment", "bb")["spec"]["template"]["spec"];
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
    let upgraded = i
        .master
        .buildbot(&["upgrade-master", "."])
        .unwrap_or_else(|e| panic!("upgrade-master: {e}"));
    assert!(upgraded.contains("upgrade complete"), "{upgraded}");
    i.master.start();

    assert_eq!(
        env_value(i.worker_container(), "BUILDMASTER"),
        i.spec.master_name()
    );
    let worker = i.start_connected_worker("bb-worker-0");
    let mut configured: Vec<String> = i.master.get("workers")["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    configured.sort();
    assert_eq!(configured, i.spec.worker_names());

    i.master.force("hello", json!({}));
    let build = wait_for(
        "the sample build to finish",
        Duration::from_secs(90),
        || {
            i.master
                .builds()
                .into_iter()
                .find(|b| b["complete"] == true)
        },
    );
    assert_eq!(
        build["results"],
        0,
        "SUCCESS\n--- master ---\n{}\n--- worker ---\n{}",
        i.master.log(),
        worker.log()
    );
}

#[test]
fn a_worker_with_the_wrong_password_is_refused() {
    let i = Installation::start(1);
    i.set_worker_password("bb-worker-0", "not-the-password");
    // The master read the real password at start; the worker now gets a wrong one.
    let worker = i.start_worker("bb-worker-0");
    wait_for("the worker to be refused", Duration::from_secs(60), || {
        worker.log().contains("unauthorized login").then_some(())
    });
    assert!(i.master.connected_workers().is_empty());
}
