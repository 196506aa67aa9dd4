//! The library behind `kubectl-buildbot`. Pure manifest building and diagnosis, with the
//! Kubernetes I/O at the edges; the binary only parses and dispatches.
//!
//! - [`cli`]: the command line (kubectl's flags); [`commands`]: one module per subcommand;
//!   [`frontend`]: what the commands share (inputs, policy files, namespace, printing).
//! - Pure: [`deploy`] (the objects of an installation), [`preview`] (the webhook's policy
//!   offline), [`doctor`] (the seed's traps in an existing setup), [`scaling`] (HPA, ScaledObject, which workers leave), [`status`] (health and
//!   hints), [`readiness`], [`output`].
//! - I/O: [`cluster`] (the API server), [`buildbot_api`] (Buildbot's REST API through it).

pub mod buildbot_api;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod deploy;
pub mod doctor;
pub mod frontend;
pub mod output;
pub mod preview;
pub mod progress;
pub mod readiness;
pub mod scaling;
pub mod status;
pub mod yaml;

#[cfg(test)]
mod yaml_tests;
