//! `kubectl buildbot deploy`: a complete Buildbot (PostgreSQL, master, workers).
//!
//! - [`spec`]: the user's choices and every derived name;
//! - [`master_cfg`]: the default master.cfg;
//! - [`secrets`]: passwords generated once, then kept;
//! - [`manifests`]: the objects, pure.

pub mod manifests;
pub mod master_cfg;
pub mod secrets;
pub mod spec;

pub use manifests::build;
pub use secrets::Secrets;
pub use spec::{Database, DeploySpec, MasterConfig, SpecError, WorkerMode};
