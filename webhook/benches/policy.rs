//! The policy engine alone, per kind of pod, and the whole review (decode, evaluate, encode).
//! `cargo bench -p buildbot-webhook --bench policy`

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use buildbot_policy::{evaluate, Policy};
use buildbot_webhook::review::review;
use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::Pod;

fn pods() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("seed worker (typical)", common::seed_worker_pod()),
        ("seed master", common::seed_master_pod()),
        ("20 containers", common::large_pod()),
        ("not Buildbot", common::nginx_pod()),
    ]
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let mut engine = c.benchmark_group("policy engine");
    for (name, pod) in pods() {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        engine.bench_function(name, |b| b.iter(|| evaluate(black_box(&pod), &policy)));
    }
    engine.finish();
    let mut whole = c.benchmark_group("review (decode + evaluate + encode)");
    for (name, pod) in pods() {
        let body = common::admission_review("0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", pod);
        whole.bench_function(name, |b| {
            b.iter(|| review(black_box(&body), &policy).unwrap().into_json());
        });
    }
    whole.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
