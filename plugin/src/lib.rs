//! The library behind `kubectl-buildbot`: pure manifest building and previewing, with the
//! Kubernetes I/O kept in its own modules; the binary is a thin CLI over it.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod deploy;
pub mod output;
pub mod preview;
pub mod scale;
