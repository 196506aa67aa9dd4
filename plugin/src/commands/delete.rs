//! `delete`: removes what deploy made. PersistentVolumeClaims and Secrets (builds' history,
//! the database, passwords) are kept unless `--purge`. Every deletion is first checked with
//! a server dry run, so a refused one leaves nothing half-deleted.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};

use crate::cli::{Cli, DeleteArgs};
use crate::cluster::{Cluster, ClusterError};
use crate::commands::deploy::{latent_objects, per_build_pods, static_worker_objects};
use crate::deploy::spec::DeploySpec;
use crate::frontend;

/// `kubectl buildbot delete`. `--purge` asks first unless `--yes`.
pub async fn run(cli: &Cli, args: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let cluster = frontend::connect(cli).await?;
    let spec = DeploySpec::new(&args.name, &cluster.namespace);
    if args.purge && !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "--purge deletes the database and the master's data for good: add --yes to confirm"
            );
        }
        eprint!(
            "Delete Buildbot {:?} in namespace {:?} with its database, volumes and passwords, for good? [y/N] ",
            spec.name, cluster.namespace
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Nothing deleted.");
            return Ok(ExitCode::from(1));
        }
    }
    let result = delete(&cluster, &spec, args.purge).await?;
    for d in &result.deleted {
        println!("{d} deleted");
    }
    if result.deleted.is_empty() {
        eprintln!(
            "Nothing of {:?} found in namespace {:?}.",
            spec.name, cluster.namespace
        );
    }
    if !result.kept.is_empty() {
        eprintln!("Kept (delete with --purge): {}", result.kept.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// One object to delete: `(apiVersion, kind, name)`.
pub use crate::commands::deploy::Target;

/// What deploy and scale make: autoscalers, then workers (their preStop hooks drain builds
/// while the master is still up), data last. The per-build pods of latent mode are added by
/// [`delete`], right after the master that makes them.
pub fn targets(spec: &DeploySpec, purge: bool) -> Vec<Target> {
    let n = &spec.name;
    // Autoscalers first, so that nothing scales while the rest goes; then the workers.
    let mut t: Vec<Target> = static_worker_objects(spec);
    t.extend([
        ("apps/v1", "Deployment", spec.master_name()),
        ("apps/v1", "StatefulSet", spec.postgres_name()),
        ("v1", "Service", spec.master_name()),
        ("v1", "Service", spec.postgres_name()),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            format!("{n}-master"),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            format!("{n}-worker"),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            format!("{n}-postgres"),
        ),
        ("v1", "ConfigMap", spec.config_name()),
    ]);
    // Latent mode: once the master is gone, its pod permissions.
    t.extend(latent_objects(spec));
    if purge {
        t.extend([
            ("v1", "Secret", spec.worker_secret_name()),
            ("v1", "Secret", spec.postgres_name()),
            ("v1", "Secret", spec.database_secret_name()),
            ("v1", "PersistentVolumeClaim", spec.master_claim_name()),
        ]);
    }
    t
}

/// The result of a delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// `kind/name` of what was deleted.
    pub deleted: Vec<String>,
    /// `kind/name` of what was kept (data and passwords without --purge).
    pub kept: Vec<String>,
}

fn id(kind: &str, name: &str) -> String {
    format!("{}/{name}", kind.to_ascii_lowercase())
}

/// Deletes the installation. With `purge`, also its claims (including the database's, made
/// from the StatefulSet's claim template) and Secrets.
pub async fn delete(
    cluster: &Cluster,
    spec: &DeploySpec,
    purge: bool,
) -> Result<Deleted, ClusterError> {
    let mut targets = targets(spec, purge);
    // Latent mode's pods: the master made them, so they go right after it.
    let after_master = targets
        .iter()
        .position(|(_, kind, _)| *kind == "Deployment")
        .map_or(targets.len(), |i| i + 1);
    let pods: Vec<Target> = per_build_pods(cluster, spec)
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .map(|name| ("v1", "Pod", name))
        .collect();
    targets.splice(after_master..after_master, pods);
    let claim_names: Vec<String> = cluster
        .list::<PersistentVolumeClaim>(&spec.instance_selector())
        .await?
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let mut result = Deleted::default();
    if purge {
        for name in &claim_names {
            if !targets
                .iter()
                .any(|(_, k, n)| *k == "PersistentVolumeClaim" && n == name)
            {
                targets.push(("v1", "PersistentVolumeClaim", name.clone()));
            }
        }
    } else {
        result
            .kept
            .extend(claim_names.iter().map(|n| id("PersistentVolumeClaim", n)));
        for secret in [
            spec.worker_secret_name(),
            spec.postgres_name(),
            spec.database_secret_name(),
        ] {
            if cluster.get::<Secret>(&secret).await?.is_some() {
                result.kept.push(id("Secret", &secret));
            }
        }
    }
    for (api_version, kind, name) in &targets {
        cluster.delete(api_version, kind, name, true).await?;
    }
    for (api_version, kind, name) in &targets {
        if cluster.delete(api_version, kind, name, false).await? {
            result.deleted.push(id(kind, name));
        }
    }
    Ok(result)
}
