//! A worker pod holds its own password and no other: a build (which runs as the worker's
//! user, with code from pull requests) must not be able to read another worker's password and
//! connect as that worker.

use std::io::Write as _;
use std::time::Duration;

use e2e_tests::buildbot::wait_for;
use e2e_tests::installation::{find, Installation};
use e2e_tests::kubernetes_validate;
use kubectl_buildbot::commands::deploy::objects;
use kubectl_buildbot::deploy::{DeploySpec, Secrets};
use serde_json::{json, Value};

/// The volume a container's mount refers to.
fn volume<'a>(pod: &'a Value, mount: &Value) -> &'a Value {
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume for {mount}"))
}

#[test]
fn the_worker_container_mounts_no_volume_with_another_workers_password() {
    let mut spec = DeploySpec::new("bb", "ci");
    spec.max_workers = 10;
    let secrets = Secrets::default().complete(&spec);
    let (objs, _) = objects(&spec, &secrets);
    let sts = find(&objs, "StatefulSet", "bb-worker");
    let pod = &sts["spec"]["template"]["spec"];
    let worker = &pod["containers"][0];
    assert_eq!(worker["name"], "worker");
    for mount in worker["volumeMounts"].as_array().unwrap() {
        let v = volume(pod, mount);
        assert!(
            v["secret"].is_null() && v["projected"].is_null() && v["configMap"].is_null(),
            "the worker container mounts {v}, which may hold others' passwords"
        );
        assert_eq!(v["emptyDir"]["medium"], "Memory", "{v}");
    }
    assert!(
        worker["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "WORKERPASS" && e["valueFrom"]["secretKeyRef"].is_null()),
        "no password in the worker's environment: {}",
        worker["env"]
    );
    // Only the init container sees the Secret, and it copies this pod's own key alone.
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "worker-password");
    let script = init["command"][2].as_str().unwrap();
    assert!(
        script.contains("cp \"/etc/buildbot/workers/$WORKERNAME\" /run/buildbot/password"),
        "{script}"
    );
    let security = &init["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));
    assert!(init["resources"]["requests"]["cpu"].is_string());
    // The Secret itself still holds every slot's password for the master.
    let secret = find(&objs, "Secret", "bb-workers");
    assert_eq!(
        secret["stringData"].as_object().map_or(0, |d| d.len())
            + secret["data"].as_object().map_or(0, |d| d.len()),
        10
    );
    kubernetes_validate(std::slice::from_ref(sts), "1.34.0").unwrap_or_else(|e| panic!("{e}"));
}

/// Lists and reads everything under the worker container's mounts, and the environment of the
/// worker process and of the step: what a malicious build could read.
const INSPECT_CFG: &str = r#"

# Test only: a build that looks for credentials wherever the worker container can read.
_inspect = util.BuildFactory()
_inspect.addStep(steps.ShellCommand(
    name="inspect",
    command=["sh", "-c", r"""
tac=$(tr '\0' '\n' < /proc/$PPID/cmdline | grep 'buildbot.tac$')
run=$(dirname "$tac")
echo "== run dir $run"; ls -la "$run"
for f in "$run"/*; do echo "== file $f"; cat "$f"; echo; done
echo "== environ of the worker process"; tr '\0' '\n' < /proc/$PPID/environ
echo "== environ of the step"; env
"""],
))
c["builders"].append(util.BuilderConfig(name="inspect", workernames=WORKER_NAMES, factory=_inspect))
c["schedulers"].append(schedulers.ForceScheduler(name="force-inspect", builderNames=["inspect"]))
"#;

/// The log of a build's step, as Buildbot stored it.
fn step_log(i: &Installation, build: &Value, step: &str) -> String {
    let id = &build["buildid"];
    let steps = i.master.get(&format!("builds/{id}/steps"));
    let number = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step}: {steps}"))["number"]
        .clone();
    let chunks = i
        .master
        .get(&format!("builds/{id}/steps/{number}/logs/stdio/contents"));
    chunks["logchunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect()
}

#[test]
fn a_build_on_a_worker_finds_no_other_workers_password() {
    let mut i = Installation::create(3);
    std::fs::OpenOptions::new()
        .append(true)
        .open(i.master.basedir.join("master.cfg"))
        .unwrap()
        .write_all(INSPECT_CFG.as_bytes())
        .unwrap();
    i.master
        .buildbot(&["upgrade-master", "."])
        .unwrap_or_else(|e| panic!("upgrade-master: {e}"));
    i.master.start();

    // The pod's own command: the init container fills the run directory, the worker reads it.
    let (worker, run_dir) = i.start_worker_with_run_dir("bb-worker-1");
    wait_for("bb-worker-1 to connect", Duration::from_secs(60), || {
        i.master
            .connected_workers()
            .contains(&"bb-worker-1".to_string())
            .then_some(())
    });
    let mut files: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(files, ["buildbot.tac", "password"]);

    i.master.force("inspect", json!({}));
    let build = wait_for("the inspect build", Duration::from_secs(90), || {
        i.master
            .builds()
            .into_iter()
            .find(|b| b["complete"] == true)
    });
    assert_eq!(build["results"], 0, "{}", worker.log());
    let log = step_log(&i, &build, "inspect");
    assert!(log.contains("== file"), "the step read the mounts: {log}");
    for (name, password) in &i.secrets.workers {
        if name == "bb-worker-1" {
            // Its own password is in its own file, which the worker must be able to read.
            assert!(log.contains(password.as_str()), "{log}");
        } else {
            assert!(
                !log.contains(password.as_str()),
                "{name}'s password leaked:\n{log}"
            );
        }
    }
    // The output section (the header before it echoes the script).
    let environ = &log[log.rfind("== environ of the worker process").unwrap()..];
    assert!(!environ.contains("WORKERPASS"), "{environ}");
    assert!(
        !environ.contains(i.secrets.workers["bb-worker-1"].as_str()),
        "no process environment holds the password:\n{environ}"
    );
}
