//! What recording a review's metrics costs on the review path, next to the review itself, in
//! one run: prometheus-client (what the webhook uses) against the plain atomics of the
//! hand-written exposition it replaced (reproduced here as the baseline), single-threaded and
//! with two threads recording at once (the machine has two cores).
//! `cargo bench -p buildbot-webhook --bench metrics`

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use buildbot_policy::Policy;
use buildbot_webhook::metrics::Metrics;
use buildbot_webhook::review::{review, Outcome};
use criterion::{criterion_group, criterion_main, Criterion};

const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// The hand-written recorder's hot path: an outcome counter, the patch operations, a bucket,
/// a count and a sum, each an atomic add.
#[derive(Default)]
struct Atomics {
    reviews: [AtomicU64; 4],
    operations: AtomicU64,
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Atomics {
    fn review(&self, outcome: usize, operations: usize, took: Duration) {
        self.reviews[outcome].fetch_add(1, Relaxed);
        self.operations.fetch_add(operations as u64, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// `n` recordings split over two threads recording at once.
fn two_threads(n: u64, record: &(dyn Fn() + Sync)) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n / 2 {
                    record();
                }
            });
        }
    });
}

fn bench(c: &mut Criterion) {
    let took = Duration::from_micros(40);
    let metrics = Metrics::default();
    let atomics = Atomics::default();
    let mut g = c.benchmark_group("record one review");
    g.bench_function("prometheus-client", |b| {
        b.iter(|| metrics.review(black_box(Outcome::Patched), 10, black_box(took)));
    });
    g.bench_function("hand-written atomics", |b| {
        b.iter(|| atomics.review(black_box(Outcome::Patched as usize), 10, black_box(took)));
    });
    g.finish();

    let mut g = c.benchmark_group("record 100,000 reviews on two threads");
    g.sample_size(20);
    g.bench_function("prometheus-client", |b| {
        b.iter(|| two_threads(100_000, &|| metrics.review(Outcome::Patched, 10, took)));
    });
    g.bench_function("hand-written atomics", |b| {
        b.iter(|| {
            two_threads(100_000, &|| {
                atomics.review(Outcome::Patched as usize, 10, took);
            });
        });
    });
    g.finish();

    let policy = Policy::default();
    let body = common::admission_review(
        "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
        common::seed_worker_pod(),
    );
    let mut g = c.benchmark_group("for scale");
    g.bench_function("review of the seed worker", |b| {
        b.iter(|| review(black_box(&body), &policy).unwrap().into_json());
    });
    g.bench_function("render /metrics (prometheus-client)", |b| {
        b.iter(|| metrics.render());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
