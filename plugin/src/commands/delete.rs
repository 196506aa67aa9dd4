//! `delete`: removes what deploy made. PersistentVolumeClaims and Secrets (builds' history,
//! the database, passwords) are kept unless `--purge`. Every deletion is first checked with
//! a server dry run, so a refused one leaves nothing half-deleted.

use serde_json::Value;

use crate::cluster::{Cluster, ClusterError};
use crate::deploy::spec::DeploySpec;

/// One object to delete: `(apiVersion, kind, name)`.
pub type Target = (&'static str, &'static str, String);

/// What deploy and scale make: autoscalers, then workers (their preStop hooks drain builds
/// while the master is still up), data last.
pub fn targets(spec: &DeploySpec, purge: bool) -> Vec<Target> {
    let n = &spec.name;
    let mut t: Vec<Target> = vec![
        // Autoscalers first, so that nothing scales while the rest goes.
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            spec.worker_name(),
        ),
        ("keda.sh/v1alpha1", "ScaledObject", spec.worker_name()),
        ("apps/v1", "StatefulSet", spec.worker_name()),
        ("apps/v1", "Deployment", spec.master_name()),
        ("apps/v1", "StatefulSet", spec.postgres_name()),
        ("v1", "Service", spec.master_name()),
        ("v1", "Service", spec.worker_name()),
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
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            spec.worker_name(),
        ),
        ("v1", "ConfigMap", spec.config_name()),
    ];
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
    let claims: Vec<Value> = cluster
        .list("v1", "PersistentVolumeClaim", &spec.instance_selector())
        .await?;
    let claim_names: Vec<String> = claims
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
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
            if cluster.get("v1", "Secret", &secret).await?.is_some() {
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
