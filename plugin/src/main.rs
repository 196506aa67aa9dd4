//! `kubectl-buildbot`: deploy, preview, scale and inspect Buildbot on Kubernetes.
//! Installed on the PATH, it runs as `kubectl buildbot ...`.

use std::process::ExitCode;

use clap::Parser as _;
use kubectl_buildbot::cli::{Cli, Command};
use kubectl_buildbot::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Like `kubectl diff`: 1 means differences, so errors are 2 there.
            let diff_mode = matches!(&cli.command, Command::Preview(a) if a.diff)
                || matches!(&cli.command, Command::Doctor(_));
            ExitCode::from(if diff_mode { 2 } else { 1 })
        }
    }
}
