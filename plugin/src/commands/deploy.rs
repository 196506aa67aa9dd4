//! `deploy`: discover what exists, build, check everything with a server dry run, apply,
//! wait until ready.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::cluster::{identity, Cluster, ClusterError};
use crate::deploy::{build, Database, DeploySpec, Secrets};
use crate::preview::Previewed;

/// kubectl's `--dry-run` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    None,
    Client,
    Server,
}

/// What already exists of an installation: its passwords and worker count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Existing {
    pub secrets: Secrets,
    pub worker_replicas: Option<u32>,
}

fn decode(secret: &Value, key: &str) -> Option<String> {
    let data = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Reads the Secrets and the worker StatefulSet of an earlier deploy, if any.
pub async fn discover(cluster: &Cluster, spec: &DeploySpec) -> Result<Existing, ClusterError> {
    let mut existing = Existing::default();
    if matches!(spec.database, Database::Bundled { .. }) {
        if let Some(s) = cluster.get("v1", "Secret", &spec.postgres_name()).await? {
            existing.secrets.postgres = decode(&s, "password");
        }
    }
    if let Some(s) = cluster
        .get("v1", "Secret", &spec.worker_secret_name())
        .await?
    {
        let keys: Vec<String> = s["data"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        existing.secrets.workers = keys
            .into_iter()
            .filter_map(|k| decode(&s, &k).map(|v| (k, v)))
            .collect::<BTreeMap<_, _>>();
    }
    if let Some(sts) = cluster
        .get("apps/v1", "StatefulSet", &spec.worker_name())
        .await?
    {
        existing.worker_replicas = sts["spec"]["replicas"].as_u64().map(|r| r as u32);
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

/// One component's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub component: &'static str,
    pub ready: i64,
    pub wanted: i64,
}

impl Readiness {
    pub fn done(&self) -> bool {
        self.ready >= self.wanted
    }
}

/// Readiness of a Deployment or StatefulSet object (absent: nothing ready).
pub fn readiness(component: &'static str, workload: Option<&Value>, wanted: i64) -> Readiness {
    let ready = workload
        .filter(|w| {
            w["status"]["observedGeneration"].as_i64() >= w["metadata"]["generation"].as_i64()
        })
        .and_then(|w| w["status"]["readyReplicas"].as_i64())
        .unwrap_or(0);
    Readiness {
        component,
        ready,
        wanted,
    }
}

/// The installation's readiness now.
pub async fn poll_readiness(
    cluster: &Cluster,
    spec: &DeploySpec,
) -> Result<Vec<Readiness>, ClusterError> {
    let mut out = Vec::new();
    if matches!(spec.database, Database::Bundled { .. }) {
        let pg = cluster
            .get("apps/v1", "StatefulSet", &spec.postgres_name())
            .await?;
        out.push(readiness("database", pg.as_ref(), 1));
    }
    let master = cluster
        .get("apps/v1", "Deployment", &spec.master_name())
        .await?;
    out.push(readiness("master", master.as_ref(), 1));
    let workers = cluster
        .get("apps/v1", "StatefulSet", &spec.worker_name())
        .await?;
    out.push(readiness("workers", workers.as_ref(), spec.workers as i64));
    Ok(out)
}

fn summary(states: &[Readiness]) -> String {
    states
        .iter()
        .map(|s| {
            format!(
                "{} {}/{}{}",
                s.component,
                s.ready,
                s.wanted,
                if s.done() { " ✓" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Waits until every component is ready, showing progress on `out` (a line rewritten in
/// place on a terminal, a line per change otherwise).
pub async fn wait_ready(
    cluster: &Cluster,
    spec: &DeploySpec,
    timeout: Duration,
    interval: Duration,
    terminal: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let states = poll_readiness(cluster, spec).await?;
        let line = summary(&states);
        if line != last {
            if terminal {
                write!(out, "\r\x1b[2KWaiting for Buildbot: {line}")?;
            } else {
                writeln!(out, "waiting: {line}")?;
            }
            out.flush()?;
            last = line;
        }
        if states.iter().all(Readiness::done) {
            if terminal {
                writeln!(out)?;
            }
            return Ok(());
        }
        if started.elapsed() >= timeout {
            if terminal {
                writeln!(out)?;
            }
            let missing: Vec<String> = states
                .iter()
                .filter(|s| !s.done())
                .map(|s| format!("{} ({}/{} ready)", s.component, s.ready, s.wanted))
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
    use serde_json::json;

    #[test]
    fn readiness_needs_an_observed_generation() {
        let stale = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 1, "readyReplicas": 1}});
        assert_eq!(readiness("master", Some(&stale), 1).ready, 0);
        let fresh = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "readyReplicas": 1}});
        assert!(readiness("master", Some(&fresh), 1).done());
        assert!(!readiness("master", None, 1).done());
    }

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
