//! `scale`: by hand (draining the workers that go), or automatically on CPU (an HPA) or on
//! Buildbot's own queue (a KEDA ScaledObject).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterError};
use crate::commands::status::rest_path;
use crate::deploy::spec::DeploySpec;
use crate::scale::{self, ScaleError};

/// What the worker StatefulSet looks like now.
pub struct Workers {
    pub statefulset: Value,
    pub replicas: u32,
    /// Worker slots declared in master.cfg: deploy writes one password per slot.
    pub slots: u32,
}

/// Reads the worker StatefulSet and its slots.
pub async fn workers(cluster: &Cluster, spec: &DeploySpec) -> anyhow::Result<Workers> {
    let Some(statefulset) = cluster
        .get("apps/v1", "StatefulSet", &spec.worker_name())
        .await?
    else {
        return Err(ScaleError::NotDeployed(
            spec.worker_name(),
            cluster.namespace.clone(),
            spec.name.clone(),
        )
        .into());
    };
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
    let secret = cluster
        .get("v1", "Secret", &spec.worker_secret_name())
        .await?;
    let slots = secret
        .as_ref()
        .and_then(|s| s["data"].as_object())
        .map_or(0, |d| d.len() as u32);
    Ok(Workers {
        statefulset,
        replicas,
        slots,
    })
}

/// An autoscaler already owning the replicas, if any.
pub async fn autoscaler(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Option<String>, ClusterError> {
    if cluster
        .get(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            &spec.worker_name(),
        )
        .await?
        .is_some()
    {
        return Ok(Some(format!("hpa/{}", spec.worker_name())));
    }
    if keda_installed(cluster).await?
        && cluster
            .get("keda.sh/v1alpha1", "ScaledObject", &spec.worker_name())
            .await?
            .is_some()
    {
        return Ok(Some(format!("scaledobject/{}", spec.worker_name())));
    }
    Ok(None)
}

/// Whether the cluster serves KEDA's API group.
pub async fn keda_installed(cluster: &Cluster) -> Result<bool, ClusterError> {
    match cluster
        .get_text("/apis/keda.sh/v1alpha1", "KEDA API group")
        .await
    {
        Ok(_) => Ok(true),
        Err(ClusterError::Api { code: 404, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A worker control action (`pause`, `unpause`, `stop`) through the service proxy.
async fn control(
    cluster: &Cluster,
    spec: &DeploySpec,
    worker: &str,
    method: &str,
) -> Result<(), ClusterError> {
    // Buildbot's pattern /workers/i:name: the name is the path segment itself.
    let path = rest_path(spec, &cluster.namespace, &format!("workers/{worker}"));
    let body = json!({"jsonrpc": "2.0", "method": method, "id": 1, "params": {"reason": "kubectl buildbot scale"}});
    cluster
        .post_json(&path, &body, "Buildbot worker control")
        .await
        .map(|_| ())
}

/// The builds running on each of `workers` now: worker name → ["hello #12", ...].
pub async fn running_builds(
    cluster: &Cluster,
    spec: &DeploySpec,
    workers: &[String],
) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
    let get = |endpoint: &'static str| {
        let path = rest_path(spec, &cluster.namespace, endpoint);
        async move {
            let text = cluster.get_text(&path, "Buildbot REST API").await?;
            Ok::<Value, ClusterError>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let (all_workers, builds, builders) = (
        get("workers").await?,
        get("builds?complete=false").await?,
        get("builders").await?,
    );
    let name_by = |list: &Value, key: &str, id: &Value| {
        list.as_array()
            .into_iter()
            .flatten()
            .find(|x| &x[key] == id)
            .and_then(|x| x["name"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in builds["builds"].as_array().into_iter().flatten() {
        let worker = name_by(&all_workers["workers"], "workerid", &b["workerid"]);
        if workers.contains(&worker) {
            let builder = name_by(&builders["builders"], "builderid", &b["builderid"]);
            out.entry(worker)
                .or_default()
                .push(format!("{builder} #{}", b["number"]));
        }
    }
    Ok(out)
}

/// Scales the workers to `target` by hand. Scaling down pauses the workers that will go
/// (no new builds), waits for their running builds (bounded by `timeout`), then lowers the
/// replicas; their preStop hooks finish the graceful stop. On timeout the workers are
/// unpaused, nothing is scaled, and the error says what is still running.
pub async fn scale_to(
    cluster: &Cluster,
    spec: &DeploySpec,
    target: u32,
    timeout: Duration,
    interval: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let current = workers(cluster, spec).await?;
    if let Some(owner) = autoscaler(cluster, spec).await? {
        return Err(ScaleError::Autoscaled(owner).into());
    }
    scale::check_slots(spec, target, current.slots)?;
    let leaving = scale::leaving(spec, current.replicas, target);
    if !leaving.is_empty() {
        for w in &leaving {
            control(cluster, spec, w, "pause").await?;
        }
        writeln!(
            out,
            "paused {} (no new builds); waiting for their running builds",
            leaving.join(", ")
        )?;
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let running = running_builds(cluster, spec, &leaving).await?;
            if running.is_empty() {
                break;
            }
            let line = running
                .iter()
                .map(|(w, b)| format!("{w}: {}", b.join(", ")))
                .collect::<Vec<_>>()
                .join("; ");
            if line != last {
                writeln!(out, "still building: {line}")?;
                last = line.clone();
            }
            if started.elapsed() >= timeout {
                for w in &leaving {
                    let _ = control(cluster, spec, w, "unpause").await;
                }
                anyhow::bail!(
                    "timed out after {}s; still running: {line}. Nothing was scaled and the workers were unpaused: \
                     retry with a longer --timeout",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(interval).await;
        }
    }
    cluster
        .scale("apps/v1", "StatefulSet", &spec.worker_name(), target, false)
        .await?;
    writeln!(
        out,
        "statefulset/{} scaled from {} to {target}",
        spec.worker_name(),
        current.replicas
    )?;
    Ok(())
}

/// CPU autoscaling: applies the HPA (after checking requests and slots), replacing a
/// ScaledObject if there was one.
pub async fn autoscale_cpu(
    cluster: &Cluster,
    spec: &DeploySpec,
    min: u32,
    max: u32,
    cpu: u32,
    dry_run: bool,
) -> anyhow::Result<Value> {
    let current = workers(cluster, spec).await?;
    scale::check_bounds(spec, min, max, current.slots, false)?;
    scale::check_cpu_requests(&current.statefulset)?;
    let hpa = scale::hpa(spec, min, max, cpu);
    let applied = cluster.apply(&hpa, dry_run).await?;
    if !dry_run && keda_installed(cluster).await? {
        cluster
            .delete(
                "keda.sh/v1alpha1",
                "ScaledObject",
                &spec.worker_name(),
                false,
            )
            .await?;
    }
    Ok(applied)
}

/// Queue autoscaling through KEDA: applies the ScaledObject, replacing our HPA.
pub async fn autoscale_queue(
    cluster: &Cluster,
    spec: &DeploySpec,
    min: u32,
    max: u32,
    per_worker: u32,
    dry_run: bool,
) -> anyhow::Result<Value> {
    if !keda_installed(cluster).await? {
        return Err(ScaleError::NoKeda.into());
    }
    let current = workers(cluster, spec).await?;
    scale::check_bounds(spec, min, max, current.slots, true)?;
    let object = scale::scaled_object(spec, min, max, per_worker);
    let applied = cluster.apply(&object, dry_run).await?;
    if !dry_run {
        cluster
            .delete(
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                &spec.worker_name(),
                false,
            )
            .await?;
    }
    Ok(applied)
}
