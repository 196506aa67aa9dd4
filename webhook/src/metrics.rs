//! Prometheus metrics, recorded in one place and rendered as text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::review::Outcome;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Every counter the webhook exposes.
#[derive(Default)]
pub struct Metrics {
    reviews: [AtomicU64; Outcome::ALL.len()],
    patch_operations: AtomicU64,
    bad_requests: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    cert_reloads_ok: AtomicU64,
    cert_reloads_failed: AtomicU64,
    connections_rejected: AtomicU64,
    open_connections: AtomicU64,
}

impl Metrics {
    /// One review answered.
    pub fn review(&self, outcome: Outcome, operations: usize, took: Duration) {
        self.reviews[outcome as usize].fetch_add(1, Relaxed);
        self.patch_operations.fetch_add(operations as u64, Relaxed);
        self.latency(took);
    }

    /// One request answered with a 4xx.
    pub fn bad_request(&self, took: Duration) {
        self.bad_requests.fetch_add(1, Relaxed);
        self.latency(took);
    }

    fn latency(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_nanos
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn cert_reload(&self, ok: bool) {
        if ok {
            &self.cert_reloads_ok
        } else {
            &self.cert_reloads_failed
        }
        .fetch_add(1, Relaxed);
    }

    pub fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }

    /// Reviews answered with this outcome so far.
    pub fn reviews(&self, outcome: Outcome) -> u64 {
        self.reviews[outcome as usize].load(Relaxed)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "# HELP buildbot_webhook_reviews_total AdmissionReviews answered, by outcome.\n# TYPE buildbot_webhook_reviews_total counter");
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "buildbot_webhook_reviews_total{{outcome=\"{}\"}} {}",
                o.name(),
                self.reviews(o)
            );
        }
        let simple = [
            (
                "patch_operations_total",
                "counter",
                "JSON patch operations sent.",
                self.patch_operations.load(Relaxed),
            ),
            (
                "bad_requests_total",
                "counter",
                "Requests rejected as not an AdmissionReview v1 (HTTP 4xx).",
                self.bad_requests.load(Relaxed),
            ),
            (
                "connections_rejected_total",
                "counter",
                "Connections refused at the connection limit.",
                self.connections_rejected.load(Relaxed),
            ),
            (
                "open_connections",
                "gauge",
                "TLS connections open now.",
                self.open_connections.load(Relaxed),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP buildbot_webhook_{name} {help}\n# TYPE buildbot_webhook_{name} {kind}\nbuildbot_webhook_{name} {value}");
        }
        let _ = writeln!(out, "# HELP buildbot_webhook_certificate_reloads_total Serving certificate reloads, by result.\n# TYPE buildbot_webhook_certificate_reloads_total counter");
        let _ = writeln!(
            out,
            "buildbot_webhook_certificate_reloads_total{{result=\"ok\"}} {}",
            self.cert_reloads_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "buildbot_webhook_certificate_reloads_total{{result=\"error\"}} {}",
            self.cert_reloads_failed.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP buildbot_webhook_request_duration_seconds Time to answer a /mutate request.\n# TYPE buildbot_webhook_request_duration_seconds histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(
                out,
                "buildbot_webhook_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "buildbot_webhook_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "buildbot_webhook_request_duration_seconds_sum {sum}\nbuildbot_webhook_request_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.review(Outcome::Patched, 7, Duration::from_micros(80));
        m.review(Outcome::Skipped, 0, Duration::from_millis(3));
        m.bad_request(Duration::from_secs(5));
        m.cert_reload(true);
        let text = m.render();
        for line in [
            "buildbot_webhook_reviews_total{outcome=\"patched\"} 1",
            "buildbot_webhook_reviews_total{outcome=\"skipped\"} 1",
            "buildbot_webhook_patch_operations_total 7",
            "buildbot_webhook_bad_requests_total 1",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"0.0001\"} 1",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"1\"} 2",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "buildbot_webhook_request_duration_seconds_count 3",
            "buildbot_webhook_certificate_reloads_total{result=\"ok\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
