//! `deploy`: discover what exists, build, check everything with a server dry run, apply,
//! wait until ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use anyhow::Context as _;
use buildbot_policy::Role;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::Value;

use crate::buildbot_api::BuildbotApi;
use crate::cli::{Cli, DeployArgs, DryRun};
use crate::cluster::{Cluster, ClusterError};
use crate::commands::scale;
use crate::deploy::spec::WORKER_MODE_ANNOTATION;
use crate::deploy::{build, Database, DeploySpec, MasterConfig, Secrets, SpecError, WorkerMode};
use crate::frontend::{self, print_objects, print_warnings};
use crate::preview::Previewed;
use crate::progress::{self, Progress};
use crate::readiness::{readiness, Readiness};
use crate::status::controlled;

/// `kubectl buildbot deploy`.
pub async fn run(cli: &Cli, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    if args.dry_run == DryRun::Client {
        // No cluster at all: fresh passwords, nothing read or sent.
        let mut spec = deploy_spec(args, &frontend::offline_namespace(cli).await)?;
        set_worker_mode(
            &mut spec,
            args.worker_mode.unwrap_or_default(),
            args.workers,
        )?;
        let (objects, warnings) = objects(&spec, &Secrets::default().complete(&spec));
        print_warnings(&warnings);
        print_objects(&objects, args.output, "created (dry run)");
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = frontend::connect(cli).await?;
    let mut spec = deploy_spec(args, &cluster.namespace)?;
    let existing = discover(&cluster, &spec).await?;
    // Render nothing the namespace's Pod Security level would reject.
    match cluster.pod_security_level().await {
        Ok(level) => spec.pod_security = level,
        Err(why) => eprintln!(
            "Warning: the namespace's Pod Security level is unknown ({why}); rendering for \
             privileged: in a baseline or restricted namespace pods may be rejected"
        ),
    }
    // The workers the running master knows: deploy wrote a password for each.
    let running_workers: Vec<String> = existing.secrets.workers.keys().cloned().collect();
    let Reconciled {
        spec,
        secrets,
        switch,
    } = reconcile(spec, args.workers, args.worker_mode, existing)?;
    let (objects, warnings) = objects(&spec, &secrets);
    print_warnings(&warnings);
    let server_dry_run = args.dry_run == DryRun::Server;
    let applied = match switch {
        Some(from) if !server_dry_run => {
            switch_mode(
                &cluster,
                &spec,
                Switch {
                    from,
                    workers: &running_workers,
                },
                &objects,
                args.timeout,
                Duration::from_secs(5),
                &mut std::io::stderr(),
            )
            .await?
        }
        _ => {
            if let Some(from) = switch {
                eprintln!(
                    "Would switch from {from} to {} workers: every worker is paused and its running build awaited first",
                    spec.worker_mode
                );
            }
            apply_all(&cluster, &objects, server_dry_run).await?
        }
    };
    let suffix = if server_dry_run {
        "configured (server dry run)"
    } else {
        "configured"
    };
    print_objects(&applied, args.output, suffix);
    if server_dry_run || (!args.wait && switch.is_none()) {
        return Ok(ExitCode::SUCCESS);
    }
    wait_ready(
        &cluster,
        &spec,
        args.timeout,
        Duration::from_secs(2),
        &mut *progress::on_stderr(),
    )
    .await?;
    if switch.is_some() {
        // The new master read the pause from the database: its workers may build again.
        let buildbot = BuildbotApi::new(&cluster, &spec);
        for w in spec.worker_names() {
            buildbot.control(&w, "unpause").await.with_context(|| {
                format!("worker {w} is still paused: unpause it in the web UI (Workers page)")
            })?;
        }
        eprintln!("unpaused {}", spec.worker_names().join(", "));
    }
    eprint!("{}", next_steps(&spec));
    Ok(ExitCode::SUCCESS)
}

/// A change of worker mode: the mode left, and the workers its master runs.
pub struct Switch<'a> {
    pub from: WorkerMode,
    pub workers: &'a [String],
}

/// Switches an installation between worker modes without interrupting a build:
/// 1. checks every object with a server dry run (a refusal changes nothing);
/// 2. pauses `workers` (every worker the running master knows) and waits for their running
///    builds (on timeout: unpaused, nothing changed);
/// 3. static to latent: removes the worker StatefulSet (its workers are idle), its Service
///    and autoscalers, before the master that no longer knows them restarts;
/// 4. applies;
/// 5. latent to static: deletes what latent mode left (per-build pods, the master's Role).
///
/// The caller waits for the master and unpauses the workers.
pub async fn switch_mode(
    cluster: &Cluster,
    spec: &DeploySpec,
    Switch { from, workers }: Switch<'_>,
    objects: &[Value],
    timeout: Duration,
    interval: Duration,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Vec<Value>> {
    apply_all(cluster, objects, true).await?;
    writeln!(
        out,
        "Switching {:?} from {from} to {} workers: pausing every worker and waiting for its running build first",
        spec.name, spec.worker_mode
    )?;
    let buildbot = BuildbotApi::new(cluster, spec);
    scale::drain(
        &buildbot,
        workers,
        timeout,
        interval,
        out,
        "Nothing was changed",
    )
    .await?;
    if from == WorkerMode::Static {
        for (api_version, kind, name) in static_worker_objects(spec) {
            if cluster.delete(api_version, kind, &name, false).await? {
                writeln!(out, "{}/{name} deleted", kind.to_ascii_lowercase())?;
            }
        }
    }
    let applied = apply_all(cluster, objects, false).await?;
    if from == WorkerMode::Latent {
        for pod in delete_per_build_pods(cluster, spec).await? {
            writeln!(out, "pod/{pod} deleted")?;
        }
        for (api_version, kind, name) in latent_objects(spec) {
            if cluster.delete(api_version, kind, &name, false).await? {
                writeln!(out, "{}/{name} deleted", kind.to_ascii_lowercase())?;
            }
        }
    }
    Ok(applied)
}

/// One object by `(apiVersion, kind, name)`.
pub type Target = (&'static str, &'static str, String);

/// What only static mode has: autoscalers first, then the workers.
pub fn static_worker_objects(spec: &DeploySpec) -> Vec<Target> {
    vec![
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            spec.worker_name(),
        ),
        ("keda.sh/v1alpha1", "ScaledObject", spec.worker_name()),
        ("apps/v1", "StatefulSet", spec.worker_name()),
        ("v1", "Service", spec.worker_name()),
    ]
}

/// What only latent mode has: the master's pod permissions.
pub fn latent_objects(spec: &DeploySpec) -> Vec<Target> {
    vec![
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            spec.latent_role_name(),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "Role",
            spec.latent_role_name(),
        ),
        ("v1", "ServiceAccount", spec.service_account_name()),
    ]
}

/// Deletes the worker pods the master made (latent mode): the installation's worker pods
/// that no controller owns. Returns their names.
pub async fn delete_per_build_pods(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Vec<String>, ClusterError> {
    let mut deleted = Vec::new();
    for pod in per_build_pods(cluster, spec).await? {
        let Some(name) = pod.metadata.name else {
            continue;
        };
        if cluster.delete("v1", "Pod", &name, false).await? {
            deleted.push(name);
        }
    }
    Ok(deleted)
}

/// The installation's per-build worker pods (no controller owns them).
pub async fn per_build_pods(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Vec<Pod>, ClusterError> {
    Ok(cluster
        .list::<Pod>(&spec.selector_string(Role::Worker))
        .await?
        .into_iter()
        .filter(|p| !controlled(p))
        .collect())
}

/// The worker mode an installation runs in: its master's annotation, else static when it
/// has a worker StatefulSet (installations from before the annotation); `None` when neither
/// is there.
pub async fn installed_mode(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Option<WorkerMode>, ClusterError> {
    let master = cluster.get::<Deployment>(&spec.master_name()).await?;
    if let Some(mode) = mode_of(master.as_ref(), false) {
        return Ok(Some(mode));
    }
    let workers = cluster.get::<StatefulSet>(&spec.worker_name()).await?;
    Ok(mode_of(master.as_ref(), workers.is_some()))
}

/// The mode a master Deployment records, else static when there is a worker StatefulSet.
pub fn mode_of(master: Option<&Deployment>, has_statefulset: bool) -> Option<WorkerMode> {
    master
        .and_then(|m| m.metadata.annotations.as_ref())
        .and_then(|a| a.get(WORKER_MODE_ANNOTATION))
        .and_then(|m| WorkerMode::parse(m))
        .or(has_statefulset.then_some(WorkerMode::Static))
}

/// The user's choices as a [`DeploySpec`], checked before anything is sent.
pub fn deploy_spec(args: &DeployArgs, namespace: &str) -> anyhow::Result<DeploySpec> {
    let mut spec = DeploySpec::new(&args.name, namespace);
    if let Some(image) = &args.image {
        spec.master_image.clone_from(image);
    }
    if let Some(image) = &args.worker_image {
        spec.worker_image.clone_from(image);
    }
    spec.max_workers = args.max_workers;
    spec.database = match (&args.database_url, &args.database_secret) {
        (Some(url), _) => Database::ExternalUrl(url.clone()),
        (None, Some(secret)) => {
            let (name, key) = secret.split_once(':').unwrap_or((secret, "url"));
            Database::ExternalSecret {
                name: name.into(),
                key: key.into(),
            }
        }
        (None, None) => Database::Bundled {
            image: args.database_image.clone(),
            storage: args.database_storage.clone(),
        },
    };
    spec.config = match (&args.config_file, &args.config_url) {
        (Some(path), _) => MasterConfig::File(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --config-file {}", path.display()))?,
        ),
        (None, Some(url)) => MasterConfig::Url(url.clone()),
        (None, None) => MasterConfig::Generated,
    };
    spec.network_policy = !args.no_network_policy;
    spec.master_storage.clone_from(&args.master_storage);
    spec.storage_class.clone_from(&args.storage_class);
    if let Some(url) = &args.web_url {
        spec.web_url.clone_from(url);
    }
    spec.policy = frontend::load_policy(args.policy.as_deref())?;
    spec.validate()?;
    Ok(spec)
}

/// Sets the worker mode and the worker count it allows (`--workers` as given: latent mode
/// has none), and checks the result.
pub fn set_worker_mode(
    spec: &mut DeploySpec,
    mode: WorkerMode,
    workers: Option<u32>,
) -> Result<(), SpecError> {
    spec.worker_mode = mode;
    spec.workers = match (mode, workers) {
        (_, Some(n)) => n,
        (WorkerMode::Static, None) => 1,
        (WorkerMode::Latent, None) => 0,
    };
    spec.validate()
}

/// What already exists of an installation: its passwords, worker mode and worker count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Existing {
    pub secrets: Secrets,
    pub worker_mode: Option<WorkerMode>,
    pub worker_replicas: Option<u32>,
}

fn decode(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Reads the Secrets and the worker StatefulSet of an earlier deploy, if any.
pub async fn discover(cluster: &Cluster, spec: &DeploySpec) -> Result<Existing, ClusterError> {
    let mut existing = Existing::default();
    if matches!(spec.database, Database::Bundled { .. }) {
        if let Some(s) = cluster.get::<Secret>(&spec.postgres_name()).await? {
            existing.secrets.postgres = decode(&s, "password");
        }
    }
    if let Some(s) = cluster.get::<Secret>(&spec.worker_secret_name()).await? {
        let keys: Vec<String> = s.data.iter().flat_map(|d| d.keys().cloned()).collect();
        existing.secrets.workers = keys
            .into_iter()
            .filter_map(|k| decode(&s, &k).map(|v| (k, v)))
            .collect::<BTreeMap<_, _>>();
    }
    let workers = cluster.get::<StatefulSet>(&spec.worker_name()).await?;
    existing.worker_replicas = workers
        .as_ref()
        .and_then(|s| s.spec.as_ref()?.replicas)
        .and_then(|r| u32::try_from(r).ok());
    let master = cluster.get::<Deployment>(&spec.master_name()).await?;
    existing.worker_mode = mode_of(master.as_ref(), workers.is_some());
    Ok(existing)
}

/// Applies every object: first all with a server dry run (so a rejected object leaves
/// nothing half-applied), then for real unless `dry_run_only`. Returns what the server
/// answered, in order.
pub async fn apply_all(
    cluster: &Cluster,
    objects: &[Value],
    dry_run_only: bool,
) -> Result<Vec<Value>, ClusterError> {
    let mut checked = Vec::with_capacity(objects.len());
    for obj in objects {
        checked.push(cluster.apply(obj, true).await?);
    }
    if dry_run_only {
        return Ok(checked);
    }
    let mut applied = Vec::with_capacity(objects.len());
    for obj in objects {
        applied.push(cluster.apply(obj, false).await?);
    }
    Ok(applied)
}

/// A deploy's spec and passwords once what exists is taken into account.
#[derive(Debug)]
pub struct Reconciled {
    pub spec: DeploySpec,
    pub secrets: Secrets,
    /// The mode the installation leaves, when `--worker-mode` changes it.
    pub switch: Option<WorkerMode>,
}

/// The spec with what exists taken into account: passwords kept; the worker mode kept
/// unless `--worker-mode` was given; the worker count kept unless `--workers` was given (a
/// scaled or autoscaled installation is not shrunk back).
pub fn reconcile(
    mut spec: DeploySpec,
    workers: Option<u32>,
    mode: Option<WorkerMode>,
    existing: Existing,
) -> Result<Reconciled, SpecError> {
    let mode = mode.or(existing.worker_mode).unwrap_or_default();
    set_worker_mode(&mut spec, mode, workers)?;
    if workers.is_none() && mode == WorkerMode::Static {
        if let Some(r) = existing.worker_replicas {
            spec.workers = r.min(spec.max_workers);
        }
    }
    let secrets = existing.secrets.complete(&spec);
    Ok(Reconciled {
        switch: existing.worker_mode.filter(|m| *m != mode),
        spec,
        secrets,
    })
}

/// The objects to apply, with policy warnings.
pub fn objects(spec: &DeploySpec, secrets: &Secrets) -> (Vec<Value>, Vec<String>) {
    let built: Vec<Previewed> = build(spec, secrets);
    let warnings = built
        .iter()
        .flat_map(|p| p.warnings.iter().map(move |w| format!("{}: {w}", p.id)))
        .collect();
    (built.into_iter().map(|p| p.after).collect(), warnings)
}

/// The installation's readiness now.
pub async fn poll_readiness(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Vec<Readiness>, ClusterError> {
    let mut out = Vec::new();
    if matches!(spec.database, Database::Bundled { .. }) {
        let name = spec.postgres_name();
        let pg = cluster.get::<StatefulSet>(&name).await?;
        out.push(readiness(Role::Database, name, pg.as_ref(), Some(1)));
    }
    let name = spec.master_name();
    let master = cluster.get::<Deployment>(&name).await?;
    out.push(readiness(Role::Master, name, master.as_ref(), Some(1)));
    if spec.worker_mode == WorkerMode::Static {
        let name = spec.worker_name();
        let workers = cluster.get::<StatefulSet>(&name).await?;
        let wanted = i32::try_from(spec.workers).unwrap_or(i32::MAX);
        out.push(readiness(
            Role::Worker,
            name,
            workers.as_ref(),
            Some(wanted),
        ));
    }
    Ok(out)
}

fn summary(states: &[Readiness]) -> String {
    states
        .iter()
        .map(|s| {
            format!(
                "{} {}/{}{}",
                s.label(),
                s.ready,
                s.wanted,
                if s.done() { " ✓" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Waits until every component is ready, showing progress (see [`progress`]).
pub async fn wait_ready(
    cluster: &Cluster,
    spec: &DeploySpec,
    timeout: Duration,
    interval: Duration,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let states = poll_readiness(cluster, spec).await?;
        let line = summary(&states);
        if line != last {
            progress.update(&line);
            last = line;
        }
        if states.iter().all(Readiness::done) {
            progress.finish(true);
            return Ok(());
        }
        if started.elapsed() >= timeout {
            progress.finish(false);
            let missing: Vec<String> = states
                .iter()
                .filter(|s| !s.done())
                .map(|s| format!("{} ({}/{} ready)", s.label(), s.ready, s.wanted))
                .collect();
            anyhow::bail!(
                "timed out after {}s waiting for {}\n  hint: `kubectl buildbot status {} -n {}` shows why",
                timeout.as_secs(),
                missing.join(", "),
                spec.name,
                cluster.namespace
            );
        }
        tokio::time::sleep(interval).await;
    }
}

/// What to tell the user once Buildbot is up.
pub fn next_steps(spec: &DeploySpec) -> String {
    let workers = match spec.worker_mode {
        WorkerMode::Static => format!(
            "{} running, {} slots declared (kubectl buildbot scale {} --workers N -n {})",
            spec.workers, spec.max_workers, spec.name, spec.namespace
        ),
        WorkerMode::Latent => format!(
            "a pod per build, at most {} at once (kubectl buildbot deploy {} --max-workers M -n {})",
            spec.max_workers, spec.name, spec.namespace
        ),
    };
    format!(
        "Buildbot {name:?} is ready in namespace {ns:?}.\n\
         \x20 Web UI:   kubectl port-forward -n {ns} svc/{name} 8080:8080   then open http://localhost:8080/\n\
         \x20 Status:   kubectl buildbot status {name} -n {ns}\n\
         \x20 Workers:  {workers}\n",
        name = spec.name,
        ns = spec.namespace,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeploy_keeps_passwords_and_worker_count_unless_told() {
        let spec = DeploySpec::new("bb", "ci");
        let existing = Existing {
            secrets: Secrets {
                postgres: Some("pg".into()),
                workers: [("bb-worker-0".into(), "w".into())].into(),
            },
            worker_mode: Some(WorkerMode::Static),
            worker_replicas: Some(3),
        };
        let r = reconcile(spec.clone(), None, None, existing.clone()).unwrap();
        assert_eq!(r.spec.workers, 3);
        assert_eq!(r.secrets.postgres.as_deref(), Some("pg"));
        assert_eq!(r.secrets.workers["bb-worker-0"], "w");
        assert_eq!(r.switch, None);
        let r = reconcile(spec, Some(1), None, existing).unwrap();
        assert_eq!(r.spec.workers, 1);
    }

    #[test]
    fn the_worker_mode_is_kept_unless_given_and_a_change_is_a_switch() {
        let spec = DeploySpec::new("bb", "ci");
        let latent = Existing {
            worker_mode: Some(WorkerMode::Latent),
            ..Existing::default()
        };
        let r = reconcile(spec.clone(), None, None, latent.clone()).unwrap();
        assert_eq!(
            (r.spec.worker_mode, r.spec.workers, r.switch),
            (WorkerMode::Latent, 0, None)
        );
        let r = reconcile(spec.clone(), None, Some(WorkerMode::Static), latent.clone()).unwrap();
        assert_eq!(
            (r.spec.worker_mode, r.spec.workers, r.switch),
            (WorkerMode::Static, 1, Some(WorkerMode::Latent))
        );
        assert_eq!(
            reconcile(spec.clone(), Some(2), None, latent).unwrap_err(),
            SpecError::WorkersWithLatent
        );
        // A fresh installation: static unless asked, and no switch.
        let r = reconcile(spec, None, Some(WorkerMode::Latent), Existing::default()).unwrap();
        assert_eq!((r.spec.worker_mode, r.switch), (WorkerMode::Latent, None));
    }
}
