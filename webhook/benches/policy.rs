//! The policy engine alone, per kind of pod; the review's decode and encode, each next to the
//! way kube-core's types do it; and the whole review (decode, evaluate, encode).
//! `cargo bench -p buildbot-webhook --bench policy`

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::hint::black_box;

use buildbot_policy::{evaluate, Policy};
use buildbot_webhook::review::review;
use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionReview;

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

    let worker = common::admission_review(
        "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
        common::seed_worker_pod(),
    );
    let large =
        common::admission_review("0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", common::large_pod());
    let mut decode = c.benchmark_group("decode");
    for (name, body) in [("seed worker", &worker), ("20 containers", &large)] {
        decode.bench_function(format!("{name}: kube-core AdmissionReview<Pod>"), |b| {
            b.iter(|| serde_json::from_slice::<AdmissionReview<Pod>>(black_box(body)).unwrap());
        });
        decode.bench_function(format!("{name}: view"), |b| {
            b.iter(|| support::view_decode(black_box(body)));
        });
    }
    decode.finish();

    let mut encode = c.benchmark_group("encode");
    // The same answer (10 patch operations) each time; only the encoding is timed.
    let evaluated = || review(&worker, &policy).unwrap();
    encode.bench_function("seed worker: through a serde_json::Value", |b| {
        b.iter_batched(
            evaluated,
            support::value_tree_encode,
            criterion::BatchSize::SmallInput,
        );
    });
    encode.bench_function("seed worker: one buffer", |b| {
        b.iter_batched(
            evaluated,
            |r| r.into_json(),
            criterion::BatchSize::SmallInput,
        );
    });
    encode.finish();

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
