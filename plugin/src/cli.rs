//! The command line: kubectl's conventions (global `--kubeconfig`, `--context`, `-n`,
//! `-o yaml|json`, `--dry-run`), one subcommand per job.

use std::path::PathBuf;
use std::time::Duration;

use buildbot_policy::duration::parse_duration;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::deploy::WorkerMode;
use crate::doctor::Severity;
use crate::output::Format;

/// kubectl's `--dry-run` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    None,
    Client,
    Server,
}

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
    /// Deploy (or update) a complete Buildbot: PostgreSQL, master, workers.
    Deploy(Box<DeployArgs>),
    /// Show an installation's health, Buildbot's workers and builds, and hints.
    Status(StatusArgs),
    /// Delete an installation; claims and Secrets are kept unless --purge.
    Delete(DeleteArgs),
    /// Scale workers by hand (draining those that go) or automatically (CPU or Buildbot's queue).
    Scale(ScaleArgs),
    /// Find the known traps of a Buildbot setup (files or a cluster) and say the fix; exits 1 on findings.
    Doctor(DoctorArgs),
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

#[derive(Args)]
pub struct DeployArgs {
    /// Installation name: prefixes every object (Service `NAME` is the master).
    #[arg(default_value = "buildbot")]
    pub name: String,
    /// Master image.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Worker image (FROM buildbot/buildbot-worker: it starts buildbot.tac with twistd).
    #[arg(long, value_name = "IMAGE")]
    pub worker_image: Option<String>,
    /// Worker replicas (default 1; on an update, the current count is kept unless given).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// `static`: long-running worker pods (a StatefulSet); `latent`: the master starts a pod
    /// per build (Buildbot's KubeLatentWorker) and deletes it when the build ends. Default
    /// static; an update keeps the current mode unless given, and switching drains first.
    #[arg(long, value_enum, value_name = "MODE")]
    pub worker_mode: Option<WorkerMode>,
    /// Worker slots declared in master.cfg: scaling up to this needs no master restart
    /// (latent: at most this many build pods at once).
    #[arg(long, value_name = "M", default_value_t = 4)]
    pub max_workers: u32,
    /// Use an external database (SQLAlchemy URL, stored in a Secret) instead of PostgreSQL.
    #[arg(long, value_name = "URL", conflicts_with = "database_secret")]
    pub database_url: Option<String>,
    /// Use an external database whose URL is in an existing Secret (NAME or NAME:KEY, key `url` by default).
    #[arg(long, value_name = "NAME[:KEY]")]
    pub database_secret: Option<String>,
    /// PostgreSQL image of the bundled database.
    #[arg(long, value_name = "IMAGE", default_value = "postgres:16")]
    pub database_image: String,
    /// Size of the bundled database's volume.
    #[arg(long, value_name = "SIZE", default_value = "8Gi")]
    pub database_storage: String,
    /// Size of the master's basedir volume.
    #[arg(long, value_name = "SIZE", default_value = "1Gi")]
    pub master_storage: String,
    /// StorageClass of the volumes (the cluster default when unset).
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Your own master.cfg (stored in the ConfigMap; declare the workers NAME-worker-0 .. NAME-worker-<max-1>).
    #[arg(long, value_name = "FILE", conflicts_with = "config_url")]
    pub config_file: Option<PathBuf>,
    /// A master.cfg (or .tar.gz of a config directory) the master downloads at start.
    #[arg(long, value_name = "URL")]
    pub config_url: Option<String>,
    /// The URL users open the web UI at (Buildbot's buildbotURL).
    #[arg(long, value_name = "URL")]
    pub web_url: Option<String>,
    /// Pod policy file (the webhook's --config format) for requests, permissions, grace.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Do not create NetworkPolicies.
    #[arg(long)]
    pub no_network_policy: bool,
    /// `client`: print the objects, contact no cluster; `server`: have the API server check them, persist nothing.
    #[arg(long, value_enum, default_value_t = DryRun::None, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: DryRun,
    /// Print the objects as yaml or json.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Wait until PostgreSQL, the master and the workers are Ready (--wait=false to return at once).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `status -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Installation name.
    #[arg(default_value = "buildbot")]
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = StatusFormat::Table)]
    pub output: StatusFormat,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// Check manifest files or directories offline (no cluster needed), `-` for standard
    /// input; without -f, check the cluster's namespace (-n) or all namespaces (-A).
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
    pub filename: Vec<PathBuf>,
    /// With -f DIR, also read the directory's subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Check every namespace of the cluster.
    #[arg(short = 'A', long, conflicts_with = "filename")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = StatusFormat::Table)]
    pub output: StatusFormat,
    /// Print the long story of a finding (BB01..BB11 or its name) and exit; alone, list them.
    #[arg(long, value_name = "CODE", num_args = 0..=1, default_missing_value = "")]
    pub explain: Option<String>,
    /// Policy file (the webhook's --config): recognition rules and what the webhook injects.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Exit 1 only when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = Severity::Info)]
    pub fail_on: Severity,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Installation name.
    #[arg(default_value = "buildbot")]
    pub name: String,
    /// Also delete the PersistentVolumeClaims (database, master basedir) and Secrets.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask before --purge.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["workers", "auto"])))]
pub struct ScaleArgs {
    /// Installation name.
    #[arg(default_value = "buildbot")]
    pub name: String,
    /// Set the number of workers; going down drains the highest-numbered workers first.
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Scale automatically between --min and --max: on CPU (--cpu), or on Buildbot's queue (--queue, needs KEDA).
    #[arg(long, requires = "max")]
    pub auto: bool,
    /// Fewest workers (0 needs --queue).
    #[arg(long, value_name = "A", default_value_t = 1, requires = "auto")]
    pub min: u32,
    /// Most workers (at most the slots master.cfg declares).
    #[arg(long, value_name = "B", requires = "auto")]
    pub max: Option<u32>,
    /// Target average CPU utilisation of the workers, in percent of their request.
    #[arg(
        long,
        value_name = "PCT",
        default_value_t = 70,
        conflicts_with = "queue"
    )]
    pub cpu: u32,
    /// Scale on Buildbot's unfinished build requests through KEDA instead of CPU.
    #[arg(long, requires = "auto")]
    pub queue: bool,
    /// With --queue: unfinished build requests per worker.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub builds_per_worker: u32,
    /// With --workers, how long to wait for the leaving workers' builds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// `client`: print the objects, contact no cluster; `server`: have the API server check them.
    #[arg(long, value_enum, default_value_t = DryRun::None, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: DryRun,
    /// Print the objects as yaml or json.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}
