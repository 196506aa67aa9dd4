//! The command line: kubectl's conventions (global `--kubeconfig`, `--context`, `-n`,
//! `-o yaml|json`, `--dry-run`), one subcommand per job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(
    name = "kubectl-buildbot",
    bin_name = "kubectl buildbot",
    version,
    about = "Run Buildbot on Kubernetes: deploy it, preview the pod policy, scale workers safely",
    after_help = "Installed on your PATH as kubectl-buildbot, this runs as `kubectl buildbot ...`."
)]
pub struct Cli {
    /// Path to the kubeconfig file to use.
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show what the admission webhook would do to manifests, offline (no cluster needed).
    Preview(PreviewArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the version.
    Version,
}

#[derive(Args)]
pub struct PreviewArgs {
    /// Manifest file(s), or `-` for standard input. Multi-document YAML or JSON, `kind: List` too.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub filename: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// Print a unified diff of what would change instead of the objects; exits 1 when
    /// something would change, 0 when nothing would (like `kubectl diff`).
    #[arg(long)]
    pub diff: bool,
    /// Policy file, the same format as `buildbot-webhook --config`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
