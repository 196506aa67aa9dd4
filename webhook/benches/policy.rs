//! The policy engine alone, per kind of pod; the review's decode and encode, each next to the
//! way kube-core's types do it; and the whole review (decode, evaluate, encode).
//! `cargo bench -p buildbot-webhook --bench policy`

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use base64::Engine as _;
use buildbot_policy::{evaluate, Policy};
use buildbot_webhook::review::review;
use buildbot_webhook::view::{PodView, ReviewView};
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

/// The review as the view reads it: the typed Pod the policy gets.
fn view_decode(body: &[u8]) -> (Pod, bool) {
    let review: ReviewView = serde_json::from_slice(body).unwrap();
    let view: PodView = review
        .request
        .unwrap()
        .object
        .unwrap()
        .into_pod_view()
        .unwrap();
    let present = view.metadata_present();
    (view.into_pod(), present)
}

/// How the response was encoded before: the whole review through a `serde_json::Value`,
/// the patch written back as base64 into the tree.
fn value_tree_encode(reviewed: buildbot_webhook::review::Reviewed) -> Vec<u8> {
    let mut response = reviewed.response;
    let patch = response.patch.take();
    let mut value = serde_json::to_value(response.into_review()).unwrap();
    if let Some(patch) = patch {
        value["response"]["patch"] = base64::engine::general_purpose::STANDARD
            .encode(patch)
            .into();
    }
    serde_json::to_vec(&value).unwrap()
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
            b.iter(|| view_decode(black_box(body)));
        });
    }
    decode.finish();

    let mut encode = c.benchmark_group("encode");
    // The same answer (10 patch operations) each time; only the encoding is timed.
    let evaluated = || review(&worker, &policy).unwrap();
    encode.bench_function("seed worker: through a serde_json::Value", |b| {
        b.iter_batched(
            evaluated,
            value_tree_encode,
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
