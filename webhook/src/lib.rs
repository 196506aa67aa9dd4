//! Buildbot on Kubernetes, made correct by policy.
//!
//! - [`policy`]: the pure policy engine (what a correct Buildbot pod looks like).
//! - [`review`]: AdmissionReview v1 in, AdmissionReview v1 out, no I/O.
//! - [`server`]: the HTTPS admission server (axum over rustls), certificate reload.
//! - [`metrics`]: the Prometheus counters, recorded in one place.
//! - [`duration`]: `30s`-style durations for both command lines.

pub mod duration;
pub mod metrics;
pub mod policy;
pub mod review;
pub mod server;
