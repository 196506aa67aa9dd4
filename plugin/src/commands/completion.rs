//! `completion`: a shell completion script.

use std::process::ExitCode;

use clap::CommandFactory as _;

use crate::cli::Cli;

/// `kubectl buildbot completion SHELL`.
pub fn run(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "kubectl-buildbot",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}
