//! Prometheus metrics, recorded in one place, exposed in the OpenMetrics text format by the
//! official client (`prometheus-client`): its escaping, naming (`_total` on counters) and
//! histogram encoding are the ones dashboards and Prometheus expect.
//!
//! The label sets are known up front (an outcome, a reload result), so each labelled counter
//! is created once here and recording is an atomic add: no family lookup on the review path.
//! `cargo bench -p buildbot-webhook --bench metrics` puts recording one review next to the
//! atomics it replaced. (The client appends the period to each HELP text itself.)

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::review::Outcome;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// The media type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the webhook exposes, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    reviews: [Counter; Outcome::ALL.len()],
    patch_operations: Counter,
    bad_requests: Counter,
    latency: Histogram,
    cert_reloads_ok: Counter,
    cert_reloads_failed: Counter,
    connections_rejected: Counter,
    open_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("buildbot_webhook");
        let reviews_family = Family::<Labels, Counter>::default();
        let reviews = Outcome::ALL.map(|o| {
            reviews_family
                .get_or_create(&vec![("outcome", o.name())])
                .clone()
        });
        registry.register(
            "reviews",
            "AdmissionReviews answered, by outcome",
            reviews_family,
        );
        let patch_operations = Counter::default();
        registry.register(
            "patch_operations",
            "JSON patch operations sent",
            patch_operations.clone(),
        );
        let bad_requests = Counter::default();
        registry.register(
            "bad_requests",
            "Requests rejected as not an AdmissionReview v1 (HTTP 4xx)",
            bad_requests.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Connections refused at the connection limit",
            connections_rejected.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "TLS connections open now",
            open_connections.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        let cert_reloads_ok = reloads.get_or_create(&vec![("result", "ok")]).clone();
        let cert_reloads_failed = reloads.get_or_create(&vec![("result", "error")]).clone();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads, by result",
            reloads,
        );
        let latency = Histogram::new(BUCKETS);
        registry.register(
            "request_duration_seconds",
            "Time to answer a /mutate request",
            latency.clone(),
        );
        Self {
            registry,
            reviews,
            patch_operations,
            bad_requests,
            latency,
            cert_reloads_ok,
            cert_reloads_failed,
            connections_rejected,
            open_connections,
        }
    }
}

impl Metrics {
    /// One review answered.
    pub fn review(&self, outcome: Outcome, operations: usize, took: Duration) {
        self.reviews[outcome as usize].inc();
        self.patch_operations.inc_by(operations as u64);
        self.latency.observe(took.as_secs_f64());
    }

    /// One request answered with a 4xx.
    pub fn bad_request(&self, took: Duration) {
        self.bad_requests.inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub fn cert_reload(&self, ok: bool) {
        if ok {
            &self.cert_reloads_ok
        } else {
            &self.cert_reloads_failed
        }
        .inc();
    }

    pub fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// Reviews answered with this outcome so far.
    pub fn reviews(&self, outcome: Outcome) -> u64 {
        self.reviews[outcome as usize].get()
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
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
        m.connection_opened();
        let text = m.render();
        for line in [
            "# HELP buildbot_webhook_reviews AdmissionReviews answered, by outcome.",
            "# TYPE buildbot_webhook_reviews counter",
            "buildbot_webhook_reviews_total{outcome=\"patched\"} 1",
            "buildbot_webhook_reviews_total{outcome=\"skipped\"} 1",
            "buildbot_webhook_reviews_total{outcome=\"unchanged\"} 0",
            "buildbot_webhook_patch_operations_total 7",
            "buildbot_webhook_bad_requests_total 1",
            "buildbot_webhook_open_connections 1",
            "# TYPE buildbot_webhook_request_duration_seconds histogram",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"0.0001\"} 1",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"1.0\"} 2",
            "buildbot_webhook_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "buildbot_webhook_request_duration_seconds_count 3",
            "buildbot_webhook_certificate_reloads_total{result=\"ok\"} 1",
            "buildbot_webhook_certificate_reloads_total{result=\"error\"} 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
