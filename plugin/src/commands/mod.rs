//! One module per subcommand, each with a `run` that the binary dispatches to. The pure parts
//! live outside (`deploy`, `preview`, `scaling`, `status`); the API I/O is in `cluster` and
//! `buildbot_api`.

pub mod completion;
pub mod delete;
pub mod deploy;
pub mod doctor;
pub mod preview;
pub mod scale;
pub mod status;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match &cli.command {
        Command::Preview(args) => preview::run(cli, args),
        Command::Doctor(args) => runtime()?.block_on(doctor::run(cli, args)),
        Command::Deploy(args) => runtime()?.block_on(deploy::run(cli, args)),
        Command::Status(args) => runtime()?.block_on(status::run(cli, args)),
        Command::Delete(args) => runtime()?.block_on(delete::run(cli, args)),
        Command::Scale(args) => runtime()?.block_on(scale::run(cli, args)),
        Command::Completion { shell } => Ok(completion::run(*shell)),
        Command::Version => {
            println!("kubectl-buildbot {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
