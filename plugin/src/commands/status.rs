//! `status`: reads the installation (typed, through the API server) and Buildbot's REST API
//! (through the service proxy, no port-forward), then prints [`crate::status`]'s assembly.

use std::process::ExitCode;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};

use crate::buildbot_api::BuildbotApi;
use crate::cli::{Cli, StatusArgs, StatusFormat};
use crate::cluster::{Cluster, ClusterError};
use crate::commands::deploy::mode_of;
use crate::commands::scale::worker_slots;
use crate::deploy::spec::{DeploySpec, WorkerMode};
use crate::frontend;
use crate::output::{self, Format};
use crate::status::{pod_state, Observed};

pub use crate::status::{assemble, render_table};

/// `kubectl buildbot status`.
pub async fn run(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cluster = frontend::connect(cli).await?;
    let spec = DeploySpec::new(&args.name, &cluster.namespace);
    let status = assemble(&spec, collect(&cluster, &spec).await?);
    let value = serde_json::to_value(&status)?;
    match args.output {
        StatusFormat::Table => print!("{}", render_table(&status)),
        StatusFormat::Json => print!("{}", output::render(&[value], Format::Json)),
        StatusFormat::Yaml => print!("{}", output::render(&[value], Format::Yaml)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads everything `assemble` needs.
pub async fn collect(cluster: &Cluster, spec: &DeploySpec) -> Result<Observed, ClusterError> {
    let selector = spec.instance_selector();
    let mut observed = Observed {
        database: cluster.get::<StatefulSet>(&spec.postgres_name()).await?,
        master: cluster.get::<Deployment>(&spec.master_name()).await?,
        workers: cluster.get::<StatefulSet>(&spec.worker_name()).await?,
        pods: cluster.list::<Pod>(&selector).await?,
        claims: cluster.list::<PersistentVolumeClaim>(&selector).await?,
        ..Observed::default()
    };
    observed.worker_mode = mode_of(observed.master.as_ref(), observed.workers.is_some());
    if observed.worker_mode == Some(WorkerMode::Latent) {
        observed.worker_slots = worker_slots(cluster, spec).await?;
    }
    for pod in observed
        .pods
        .iter()
        .map(pod_state)
        .filter(|p| p.reason.as_deref() == Some("CrashLoopBackOff"))
    {
        let container = pod.container.clone().unwrap_or_default();
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/log?container={container}&tailLines=10&previous=true",
            cluster.namespace, pod.name
        );
        if let Ok(log) = cluster.get_text(&path, "pod log").await {
            observed.logs.push((pod.name.clone(), log));
        }
    }
    observed.failed_creates = failed_creates(cluster, spec).await;
    if observed.master.is_some() {
        observed.rest = BuildbotApi::new(cluster, spec).snapshot().await;
    }
    Ok(observed)
}

/// The newest `FailedCreate` event of each of the installation's workloads (the master's
/// ReplicaSets, the StatefulSets). Events are diagnostics: when they cannot be read, none.
async fn failed_creates(cluster: &Cluster, spec: &DeploySpec) -> Vec<(String, String)> {
    let Ok(mut events) = cluster.list_by_fields::<Event>("reason=FailedCreate").await else {
        return Vec::new();
    };
    events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
    let ours = |kind: &str, name: &str| match kind {
        "StatefulSet" => name == spec.postgres_name() || name == spec.worker_name(),
        "ReplicaSet" => name
            .strip_prefix(&format!("{}-", spec.master_name()))
            .is_some_and(|hash| !hash.contains('-')),
        _ => false,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for e in events.iter().rev() {
        let (Some(kind), Some(name)) = (&e.involved_object.kind, &e.involved_object.name) else {
            continue;
        };
        let id = format!("{}/{name}", kind.to_ascii_lowercase());
        if ours(kind, name) && !out.iter().any(|(w, _)| *w == id) {
            out.push((id, e.message.clone().unwrap_or_default()));
        }
    }
    out
}
