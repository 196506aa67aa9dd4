//! Buildbot on Kubernetes, made correct by policy.
//!
//! - [`policy`]: the pure policy engine (what a correct Buildbot pod looks like).
//! - [`review`]: AdmissionReview v1 in, AdmissionReview v1 out, no I/O.
//! - [`server`]: the HTTPS admission server (axum over rustls), metrics, certificate reload.

pub mod policy;
