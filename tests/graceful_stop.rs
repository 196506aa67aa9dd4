//! Terminating a worker in the middle of a build, as Kubernetes does, with real Buildbot:
//!
//! (a) the seed write-up's way: SIGTERM, then SIGKILL after the grace period: the build is lost;
//! (b) ours: the exact preStop command the policy puts in the worker pod spec, then SIGTERM:
//!     the build finishes with SUCCESS, no new build starts on that worker meanwhile, and the
//!     worker process exits by itself once idle;
//! (c) the drain `scale --workers` uses before lowering replicas: pause, wait, unpause.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e_tests::buildbot::{venv_path, wait_for, Master, WorkerProcess};
use e2e_tests::installation::Installation;
use serde_json::{json, Value};

const BUILD_SECONDS: &str = "20";
const SUCCESS: i64 = 0;

/// Starts bb-worker-0, waits for it, forces a 20 s build and waits until it runs on it.
fn build_running(i: &Installation) -> (WorkerProcess, Value) {
    build_of_seconds_running(i, BUILD_SECONDS)
}

/// Starts bb-worker-0, forces a build of `seconds` and waits until it runs on it.
fn build_of_seconds_running(i: &Installation, seconds: &str) -> (WorkerProcess, Value) {
    let worker = i.start_connected_worker("bb-worker-0");
    i.master.force("hello", json!({"build_seconds": seconds}));
    let build = wait_for("the build to start", Duration::from_secs(60), || {
        i.master
            .builds()
            .into_iter()
            .find(|b| b["complete"] == false && b["workerid"].is_number())
    });
    // Let it get into its step, as a real build would be.
    std::thread::sleep(Duration::from_secs(2));
    (worker, build)
}

fn build_result(master: &Master, buildid: &Value) -> Value {
    wait_for("the build to complete", Duration::from_secs(120), || {
        master
            .builds()
            .into_iter()
            .find(|b| &b["buildid"] == buildid && b["complete"] == true)
    })
}

/// Unfinished build requests, read exactly as the KEDA trigger reads them (`meta.total`).
fn demand(master: &Master) -> i64 {
    master.get(kubectl_buildbot::scaling::DEMAND_QUERY)["meta"]["total"]
        .as_i64()
        .expect("meta.total")
}

#[test]
fn a_naive_termination_loses_the_build_like_in_the_write_up() {
    let i = Installation::start(1);
    let (mut worker, build) = build_running(&i);
    worker.signal("TERM");
    if worker.wait_exit(Duration::from_secs(5)).is_none() {
        worker.signal("KILL");
    }
    let done = build_result(&i.master, &build["buildid"]);
    assert_ne!(
        done["results"], SUCCESS,
        "the build cannot succeed once its worker is gone: {done}"
    );
    assert_ne!(done["results"], json!(null));
}

/// Runs a pod's preStop hook as the kubelet does: inside the container, with its environment.
fn run_pre_stop(command: &[String], env: &[(String, String)]) -> Child {
    Command::new(&command[0])
        .args(&command[1..])
        .env("PATH", venv_path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the preStop hook")
}

/// What a drain measured.
struct Drained {
    hook_log: String,
    hook_seconds: f64,
    worker_seconds: f64,
}

/// A build of `build_seconds` running on bb-worker-0, then `hook` run as the kubelet runs a
/// preStop hook, with `env`: the hook succeeds, a build requested meanwhile does not start on
/// that worker, the running build ends in SUCCESS, and the worker exits by itself.
fn drain(
    i: &Installation,
    hook: &[String],
    env: &[(String, String)],
    build_seconds: u64,
) -> Drained {
    let (mut worker, build) = build_of_seconds_running(i, &build_seconds.to_string());
    let started = std::time::Instant::now();
    let mut pre_stop = run_pre_stop(hook, env);

    // While it drains, a new build request must wait: the worker takes no new build.
    std::thread::sleep(Duration::from_secs(2));
    i.master.force("hello", json!({"build_seconds": "1"}));
    assert_eq!(demand(&i.master), 2, "one running, one queued");

    let status = wait_for(
        "the preStop hook to return",
        Duration::from_secs(build_seconds + 120),
        || pre_stop.try_wait().unwrap(),
    );
    let hook_seconds = started.elapsed().as_secs_f64();
    let output = pre_stop.wait_with_output().unwrap();
    let hook_log = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        status.success(),
        "preStop failed: {hook_log}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        hook_log.contains("asked") && hook_log.contains("no longer connected"),
        "{hook_log}"
    );

    let done = build_result(&i.master, &build["buildid"]);
    assert_eq!(
        done["results"],
        SUCCESS,
        "the running build finished: {done}\n{}",
        worker.log()
    );
    // The worker went away by itself, before any SIGTERM.
    let exited = worker.wait_exit(Duration::from_secs(15));
    assert!(
        exited.is_some(),
        "worker exited once idle\n{}",
        worker.log()
    );
    let worker_seconds = started.elapsed().as_secs_f64();
    worker.signal("TERM"); // what the kubelet does next: nothing left to kill

    let builds = i.master.builds();
    assert_eq!(
        builds.len(),
        1,
        "no new build started on the draining worker: {builds:?}"
    );
    assert_eq!(
        demand(&i.master),
        1,
        "the second request is still queued for another worker"
    );
    Drained {
        hook_log,
        hook_seconds,
        worker_seconds,
    }
}

#[test]
fn the_injected_pre_stop_hook_lets_the_build_finish_then_the_worker_exits() {
    let i = Installation::start(1);
    // The hook exactly as the policy wrote it into the worker StatefulSet's pod spec.
    let hook: Vec<String> = i.worker_container()["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("the policy injected a preStop exec hook")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let grace = e2e_tests::installation::find(&i.objects, "StatefulSet", "bb-worker")["spec"]
        ["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap();
    assert!(grace >= 3600, "grace {grace}");
    drain(&i, &hook, &i.worker_env("bb-worker-0"), 20);
}

#[test]
fn pausing_drains_a_worker_for_scale_down_and_unpausing_resumes_it() {
    let i = Installation::start(1);
    let (_worker, build) = build_running(&i);
    let (code, answer) = i.master.control(
        "workers/bb-worker-0",
        "pause",
        json!({"reason": "kubectl buildbot scale"}),
    );
    assert_eq!(code, 200, "{answer}");
    i.master.force("hello", json!({"build_seconds": "1"}));
    let done = build_result(&i.master, &build["buildid"]);
    assert_eq!(done["results"], SUCCESS);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        i.master.builds().len(),
        1,
        "a paused worker starts nothing new"
    );
    assert!(
        i.master
            .connected_workers()
            .contains(&"bb-worker-0".to_string()),
        "paused, still connected"
    );

    let (code, _) = i
        .master
        .control("workers/bb-worker-0", "unpause", json!({}));
    assert_eq!(code, 200);
    let second = wait_for(
        "the queued build to run after unpause",
        Duration::from_secs(60),
        || {
            i.master
                .builds()
                .into_iter()
                .find(|b| b["buildid"] != build["buildid"] && b["complete"] == true)
        },
    );
    assert_eq!(second["results"], SUCCESS);
}

/// The preStop hook the policy gives the seed's own worker Deployment, exactly as
/// `kubectl buildbot preview -f tests/fixtures/seed/worker.yaml` prints it.
fn seed_worker_hook() -> Vec<String> {
    let path = e2e_tests::repo_root().join("tests/fixtures/seed/worker.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let previewed = kubectl_buildbot::preview::preview(
        &text,
        "worker.yaml",
        &buildbot_policy::Policy::default(),
    )
    .unwrap();
    let container = &previewed[0].after["spec"]["template"]["spec"]["containers"][0];
    container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("the policy injected a preStop exec hook into the seed's worker")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// The seed worker's environment: only what the docker-compose example sets (no
/// BUILDBOT_MASTER_URL, no BUILDBOT_WEB_PORT), with its names mapped to this installation.
fn seed_env(i: &Installation, worker: &str) -> Vec<(String, String)> {
    vec![
        ("BUILDMASTER".into(), "127.0.0.1".into()),
        ("BUILDMASTER_PORT".into(), i.master.pb_port.to_string()),
        ("WORKERNAME".into(), worker.into()),
        ("WORKERPASS".into(), i.secrets.workers[worker].clone()),
    ]
}

/// A master on `web_port`, a build of `build_seconds` on the seed's worker, then the hook with
/// the seed's environment: the build succeeds, nothing new starts there, the worker exits by
/// itself. Prints the measured drain.
fn seed_worker_drains_with_master_on(web_port: u16, build_seconds: u64) {
    let i = Installation::start_with_web_port(1, Some(web_port));
    let drained = drain(
        &i,
        &seed_worker_hook(),
        &seed_env(&i, "bb-worker-0"),
        build_seconds,
    );
    let used = format!("using the master at http://127.0.0.1:{web_port}/");
    assert!(drained.hook_log.contains(&used), "{}", drained.hook_log);
    println!(
        "drain with the master on {web_port}: {build_seconds} s build, preStop returned after \
         {:.1} s, worker exited after {:.1} s, result SUCCESS",
        drained.hook_seconds, drained.worker_seconds
    );
}

/// The seed's setup: the official master image serves on 8080; a build longer than the old
/// hook's 60 s limit must finish. Then Buildbot's own sample master.cfg, which serves on 8010.
/// One after the other: both masters would answer on 127.0.0.1, and the hook rightly takes the
/// first that knows its worker.
#[test]
fn the_seeds_worker_drains_with_its_master_on_8080_or_8010() {
    seed_worker_drains_with_master_on(8080, 75);
    seed_worker_drains_with_master_on(8010, 20);
}

/// No master anywhere: the hook says so, names what it tried and how to fix it, and fails, so
/// that the kubelet records a FailedPreStopHook event.
#[test]
fn a_hook_that_reaches_no_master_fails_with_what_it_tried_and_how_to_fix_it() {
    let hook = seed_worker_hook();
    // The tests' masters listen on 127.0.0.1 only: nothing answers on 127.0.0.2.
    let env = vec![
        ("BUILDMASTER".to_string(), "127.0.0.2".to_string()),
        ("BUILDMASTER_PORT".to_string(), "9989".to_string()),
        ("WORKERNAME".to_string(), "example-worker".to_string()),
    ];
    let started = std::time::Instant::now();
    let output = run_pre_stop(&hook, &env).wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(1), "{log}");
    for expected in [
        "ERROR",
        "http://127.0.0.2:8080/",
        "http://127.0.0.2:8010/",
        "NOT drained",
        "BUILDBOT_MASTER_URL",
        "gracefulStop.masterUrl",
    ] {
        assert!(log.contains(expected), "{expected:?} in {log}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it gives up on discovery within about 30 s, not after a build's length"
    );
}
