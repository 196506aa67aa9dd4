//! What every command's front end shares: reading `-f` inputs and policy files, resolving
//! the namespace with or without a cluster, connecting, and printing results and warnings the
//! way kubectl does.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use buildbot_policy::Policy;
use serde_json::Value;

use crate::cli::Cli;
use crate::cluster::{self, identity, Cluster};
use crate::output::{self, Format};

/// Reads a policy file, or the defaults.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    Ok(path.map(Policy::from_file).transpose()?.unwrap_or_default())
}

/// Reads `-f` inputs: files, or `-` for standard input. Returns `(name, text)` pairs.
pub fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                Ok(("<stdin>".to_string(), text))
            } else {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                Ok((f.display().to_string(), text))
            }
        })
        .collect()
}

/// Connects with kubectl's flags.
pub async fn connect(cli: &Cli) -> anyhow::Result<Cluster> {
    Ok(Cluster::connect(
        cli.kubeconfig.as_deref(),
        cli.context.as_deref(),
        cli.namespace.as_deref(),
    )
    .await?)
}

/// The namespace without contacting a cluster: `-n`, else the kubeconfig context's, else
/// `default` (also when there is no kubeconfig at all: `--dry-run=client` needs none).
pub async fn offline_namespace(cli: &Cli) -> String {
    if let Some(ns) = &cli.namespace {
        return ns.clone();
    }
    cluster::load_config(cli.kubeconfig.as_deref(), cli.context.as_deref())
        .await
        .map_or_else(|_| "default".to_string(), |c| c.default_namespace)
}

/// kubectl-style result lines (`secret/bb-workers configured`).
pub fn result_lines(objects: &[Value], suffix: &str) -> String {
    objects
        .iter()
        .map(|o| {
            let (_, kind, name) = identity(o);
            format!("{}/{name} {suffix}\n", kind.to_ascii_lowercase())
        })
        .collect()
}

/// Prints objects with `-o`, else a result line each.
pub fn print_objects(objects: &[Value], format: Option<Format>, suffix: &str) {
    match format {
        Some(format) => print!("{}", output::render(objects, format)),
        None => print!("{}", result_lines(objects, suffix)),
    }
}

/// Prints policy warnings as kubectl prints an API server's.
pub fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("Warning: {w}");
    }
}
