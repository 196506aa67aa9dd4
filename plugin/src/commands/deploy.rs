//! `deploy`: discover what exists, build, check everything with a server dry run, apply,
//! wait until ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use anyhow::Context as _;
use buildbot_policy::Role;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::cli::{Cli, DeployArgs, DryRun};
use crate::cluster::{Cluster, ClusterError};
use crate::deploy::{build, Database, DeploySpec, MasterConfig, Secrets};
use crate::frontend::{self, print_objects, print_warnings};
use crate::preview::Previewed;
use crate::progress::{self, Progress};
use crate::readiness::{readiness, Readiness};

/// `kubectl buildbot deploy`.
pub async fn run(cli: &Cli, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    if args.dry_run == DryRun::Client {
        // No cluster at all: fresh passwords, nothing read or sent.
        let spec = deploy_spec(args, &frontend::offline_namespace(cli).await)?;
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
    let (spec, secrets) = reconcile(spec, args.workers.is_some(), existing);
    let (objects, warnings) = objects(&spec, &secrets);
    print_warnings(&warnings);
    let server_dry_run = args.dry_run == DryRun::Server;
    let applied = apply_all(&cluster, &objects, server_dry_run).await?;
    let suffix = if server_dry_run {
        "configured (server dry run)"
    } else {
        "configured"
    };
    print_objects(&applied, args.output, suffix);
    if server_dry_run || !args.wait {
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
    eprint!("{}", next_steps(&spec));
    Ok(ExitCode::SUCCESS)
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
    spec.workers = args.workers.unwrap_or(1);
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

/// What already exists of an installation: its passwords and worker count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Existing {
    pub secrets: Secrets,
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
    if let Some(sts) = cluster.get::<StatefulSet>(&spec.worker_name()).await? {
        existing.worker_replicas = sts
            .spec
            .and_then(|s| s.replicas)
            .and_then(|r| u32::try_from(r).ok());
    }
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

/// The spec with what exists taken into account: passwords kept, the worker count kept
/// unless `--workers` was given (a scaled or autoscaled installation is not shrunk back).
pub fn reconcile(
    mut spec: DeploySpec,
    workers_given: bool,
    existing: Existing,
) -> (DeploySpec, Secrets) {
    if !workers_given {
        if let Some(r) = existing.worker_replicas {
            spec.workers = r.min(spec.max_workers);
        }
    }
    let secrets = existing.secrets.complete(&spec);
    (spec, secrets)
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
    let name = spec.worker_name();
    let workers = cluster.get::<StatefulSet>(&name).await?;
    let wanted = i32::try_from(spec.workers).unwrap_or(i32::MAX);
    out.push(readiness(
        Role::Worker,
        name,
        workers.as_ref(),
        Some(wanted),
    ));
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
    format!(
        "Buildbot {name:?} is ready in namespace {ns:?}.\n\
         \x20 Web UI:   kubectl port-forward -n {ns} svc/{name} 8080:8080   then open http://localhost:8080/\n\
         \x20 Status:   kubectl buildbot status {name} -n {ns}\n\
         \x20 Workers:  {w} running, {m} slots declared (kubectl buildbot scale {name} --workers N -n {ns})\n",
        name = spec.name,
        ns = spec.namespace,
        w = spec.workers,
        m = spec.max_workers,
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
            worker_replicas: Some(3),
        };
        let (s, secrets) = reconcile(spec.clone(), false, existing.clone());
        assert_eq!(s.workers, 3);
        assert_eq!(secrets.postgres.as_deref(), Some("pg"));
        assert_eq!(secrets.workers["bb-worker-0"], "w");
        let (s, _) = reconcile(spec, true, existing);
        assert_eq!(s.workers, 1);
    }
}
