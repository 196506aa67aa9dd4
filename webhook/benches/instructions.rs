//! Instructions per review, counted by valgrind's callgrind: exact where time is noisy (two
//! cores shared with everything else). Each case runs in a child process under callgrind
//! twice, with 0 and with N iterations; the difference over N is the cost of one.
//!
//! `cargo bench -p buildbot-webhook --bench instructions [-- --iterations 2000]`
//!
//! Cases, side by side: decoding a review as kube-core's `AdmissionReview<Pod>` (and as
//! `AdmissionReview<DynamicObject>`, what kube-rs' admission_controller example decodes) and
//! through the webhook's view; encoding the response through a `serde_json::Value` and into
//! one buffer; whole reviews of each kind of pod.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::hint::black_box;
use std::process::Command;

use buildbot_policy::Policy;
use buildbot_webhook::review::review;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;

const CASES: &[&str] = &[
    "decode seed worker: kube-core AdmissionReview<Pod>",
    "decode seed worker: kube-core AdmissionReview<DynamicObject> (kube-rs example)",
    "decode seed worker: view",
    "decode 20 containers: kube-core AdmissionReview<Pod>",
    "decode 20 containers: view",
    "encode seed worker: through a serde_json::Value",
    "encode seed worker: one buffer",
    "review seed worker",
    "review seed master",
    "review 20 containers",
    "review not Buildbot",
];

fn body(case: &str) -> Vec<u8> {
    let pod = if case.contains("20 containers") {
        common::large_pod()
    } else if case.contains("master") {
        common::seed_master_pod()
    } else if case.contains("not Buildbot") {
        common::nginx_pod()
    } else {
        common::seed_worker_pod()
    };
    common::admission_review("0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", pod)
}

/// One iteration of `case`.
fn run(case: &str, body: &[u8], policy: &Policy) {
    if case.starts_with("decode") {
        if case.ends_with("AdmissionReview<Pod>") {
            black_box(serde_json::from_slice::<AdmissionReview<Pod>>(body).unwrap());
        } else if case.contains("DynamicObject") {
            black_box(serde_json::from_slice::<AdmissionReview<DynamicObject>>(body).unwrap());
        } else {
            black_box(support::view_decode(body));
        }
    } else if case.starts_with("encode") {
        let reviewed = review(body, policy).unwrap();
        if case.ends_with("serde_json::Value") {
            black_box(support::value_tree_encode(reviewed));
        } else {
            black_box(reviewed.into_json());
        }
    } else {
        black_box(review(body, policy).unwrap().into_json());
    }
}

/// Instructions callgrind counted for the child running `case` `n` times.
fn instructions(case: &str, n: u64) -> Option<u64> {
    let out = std::env::temp_dir().join(format!("bbwh-callgrind-{}.out", std::process::id()));
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().ok()?)
        .args(["--child", case, &n.to_string()])
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (case, n) = (&args[i + 1], args[i + 2].parse::<u64>().unwrap());
        let (body, policy) = (body(case), Policy::default());
        // The setup (and one iteration, for lazily built statics) is in both counts.
        run(case, &body, &policy);
        for _ in 0..n {
            run(case, &body, &policy);
        }
        return;
    }
    let n: u64 = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1000);
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed: apt-get install valgrind");
        std::process::exit(1);
    }
    println!("instructions per iteration (callgrind, {n} iterations less 0)");
    for case in CASES {
        match (instructions(case, 0), instructions(case, n)) {
            (Some(base), Some(total)) => {
                println!("{:>10}  {case}", (total.saturating_sub(base)) / n);
            }
            _ => println!("{:>10}  {case}", "failed"),
        }
    }
}
