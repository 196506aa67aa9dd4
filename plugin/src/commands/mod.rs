//! The subcommands that talk to a cluster; each keeps its pure parts testable without one.

pub mod delete;
pub mod deploy;
pub mod scale;
pub mod status;
