//! `scale`: by hand (draining the workers that go), or automatically on CPU (an HPA) or on
//! Buildbot's own queue (a KEDA ScaledObject).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::buildbot_api::BuildbotApi;
use crate::cli::{Cli, DryRun, ScaleArgs};
use crate::cluster::{Cluster, ClusterError};
use crate::commands::deploy::installed_mode;
use crate::deploy::spec::{DeploySpec, WorkerMode};
use crate::frontend;
use crate::scaling::{self, ScaleError};

/// `kubectl buildbot scale`: `--workers N`, `--auto` on CPU, or `--auto --queue`.
pub async fn run(cli: &Cli, args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let print = |objects: &[Value], suffix: &str| {
        frontend::print_objects(objects, args.output, suffix);
    };
    let max = args.max.unwrap_or(0);
    if args.dry_run == DryRun::Client {
        let spec = DeploySpec::new(&args.name, &frontend::offline_namespace(cli).await);
        if args.auto {
            // The slots are only known on the cluster; the rest can be checked here.
            scaling::check_bounds(&spec, args.min, max, u32::MAX, args.queue)?;
        }
        let object = match args.workers {
            Some(n) => scaling::scale_object(&spec, n),
            None if args.queue => {
                scaling::scaled_object(&spec, args.min, max, args.builds_per_worker)
            }
            None => scaling::hpa(&spec, args.min, max, args.cpu),
        };
        print(&[object], "configured (dry run)");
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = frontend::connect(cli).await?;
    let spec = DeploySpec::new(&args.name, &cluster.namespace);
    if installed_mode(&cluster, &spec).await? == Some(WorkerMode::Latent) {
        return Err(ScaleError::Latent {
            name: spec.name.clone(),
            namespace: cluster.namespace.clone(),
            slots: worker_slots(&cluster, &spec).await?,
        }
        .into());
    }
    let server_dry_run = args.dry_run == DryRun::Server;
    let suffix = if server_dry_run {
        "configured (server dry run)"
    } else {
        "configured"
    };
    match args.workers {
        Some(n) if server_dry_run => {
            cluster
                .scale("apps/v1", "StatefulSet", &spec.worker_name(), n, true)
                .await?;
            print(&[scaling::scale_object(&spec, n)], suffix);
        }
        Some(n) => {
            scale_to(
                &cluster,
                &spec,
                n,
                args.timeout,
                Duration::from_secs(5),
                &mut std::io::stderr(),
            )
            .await?;
        }
        None if args.queue => {
            let applied = autoscale_queue(
                &cluster,
                &spec,
                args.min,
                max,
                args.builds_per_worker,
                server_dry_run,
            )
            .await?;
            print(&[applied], suffix);
        }
        None => {
            let applied =
                autoscale_cpu(&cluster, &spec, args.min, max, args.cpu, server_dry_run).await?;
            print(&[applied], suffix);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the worker StatefulSet looks like now.
pub struct Workers {
    pub statefulset: StatefulSet,
    pub replicas: u32,
    /// Worker slots declared in master.cfg: deploy writes one password per slot.
    pub slots: u32,
}

/// Reads the worker StatefulSet and its slots.
pub async fn workers(cluster: &Cluster, spec: &DeploySpec) -> anyhow::Result<Workers> {
    let Some(statefulset) = cluster.get::<StatefulSet>(&spec.worker_name()).await? else {
        return Err(ScaleError::NotDeployed(
            spec.worker_name(),
            cluster.namespace.clone(),
            spec.name.clone(),
        )
        .into());
    };
    let replicas = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, |r| u32::try_from(r).unwrap_or(0));
    Ok(Workers {
        statefulset,
        replicas,
        slots: worker_slots(cluster, spec).await?,
    })
}

/// The worker slots: deploy writes a password per slot master.cfg declares.
pub async fn worker_slots(cluster: &Cluster, spec: &DeploySpec) -> Result<u32, ClusterError> {
    Ok(cluster
        .get::<Secret>(&spec.worker_secret_name())
        .await?
        .and_then(|s| s.data)
        .map_or(0, |d| u32::try_from(d.len()).unwrap_or(u32::MAX)))
}

/// An autoscaler already owning the replicas, if any.
pub async fn autoscaler(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Option<String>, ClusterError> {
    if cluster
        .get::<HorizontalPodAutoscaler>(&spec.worker_name())
        .await?
        .is_some()
    {
        return Ok(Some(format!("hpa/{}", spec.worker_name())));
    }
    if keda_installed(cluster).await?
        && cluster
            .exists("keda.sh/v1alpha1", "ScaledObject", &spec.worker_name())
            .await?
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
    let buildbot = BuildbotApi::new(cluster, spec);
    if let Some(owner) = autoscaler(cluster, spec).await? {
        return Err(ScaleError::Autoscaled(owner).into());
    }
    scaling::check_slots(spec, target, current.slots)?;
    let leaving = scaling::leaving(spec, current.replicas, target);
    drain(
        &buildbot,
        &leaving,
        timeout,
        interval,
        out,
        "Nothing was scaled",
    )
    .await?;
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

/// Pauses `workers` (no new builds) and waits until none of them runs a build, bounded by
/// `timeout`. On timeout they are unpaused and the error says what is still running and that
/// `unchanged` (what the caller did not do).
pub async fn drain(
    buildbot: &BuildbotApi<'_>,
    workers: &[String],
    timeout: Duration,
    interval: Duration,
    out: &mut dyn Write,
    unchanged: &str,
) -> anyhow::Result<()> {
    if workers.is_empty() {
        return Ok(());
    }
    for w in workers {
        buildbot.control(w, "pause").await?;
    }
    writeln!(
        out,
        "paused {} (no new builds); waiting for their running builds",
        workers.join(", ")
    )?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let running = buildbot.running_builds_on(workers).await?;
        if running.is_empty() {
            return Ok(());
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
            for w in workers {
                let _ = buildbot.control(w, "unpause").await;
            }
            anyhow::bail!(
                "timed out after {}s; still running: {line}. {unchanged} and the workers were unpaused: \
                 retry with a longer --timeout",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(interval).await;
    }
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
    scaling::check_bounds(spec, min, max, current.slots, false)?;
    scaling::check_cpu_requests(&current.statefulset)?;
    let hpa = scaling::hpa(spec, min, max, cpu);
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
    scaling::check_bounds(spec, min, max, current.slots, true)?;
    let object = scaling::scaled_object(spec, min, max, per_worker);
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
