//! The admission webhook: the transport around the policy crate (`buildbot_policy`), which
//! decides what a correct Buildbot pod looks like.
//!
//! - [`review`]: AdmissionReview v1 in, AdmissionReview v1 out, no I/O.
//! - [`patch_base64`]: the patch as the response carries it, long strings encoded once.
//! - [`view`]: the review decoded for what the policy reads, and nothing else.
//! - [`env_compact`]: environment variables the policy does not read, cut before decoding.
//! - `json_bytes`: the bytes a JSON string cannot hold as they are (reader and writer).
//! - [`server`]: the HTTPS admission server (axum over rustls), certificate reload.
//! - [`metrics`]: the Prometheus counters, recorded in one place.

pub mod env_compact;
mod json_bytes;
pub mod metrics;
pub mod patch_base64;
pub mod review;
pub mod server;
pub mod view;
