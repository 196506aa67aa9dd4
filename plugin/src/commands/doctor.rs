//! `doctor`: find the seed's traps in manifests (offline) or in a cluster, and say the fix.
//! Exits 0 when nothing is found, 1 when something is (like `kubectl diff`), 2 on errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use kube::core::ApiResource;
use serde_json::Value;

use crate::cli::{Cli, DoctorArgs, StatusFormat};
use crate::cluster::{api_resource, Cluster, ClusterError};
use crate::doctor::{self, explain, render, Code, Context, Inventory, Report};
use crate::frontend::{connect, load_policy, offline_namespace, read_inputs};
use crate::preview::parse_stream;

pub async fn run(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = &args.explain {
        if code.is_empty() {
            print!("{}", explain::index());
            return Ok(ExitCode::SUCCESS);
        }
        let code = Code::parse(code).with_context(|| {
            format!("unknown finding {code:?}; the codes are BB01 to BB11 (`kubectl buildbot doctor --explain` lists them)")
        })?;
        println!("{}", explain::story(code));
        return Ok(ExitCode::SUCCESS);
    }
    let policy = load_policy(args.config.as_deref())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let ctx = Context {
        policy: &policy,
        now,
    };
    let report = if args.filename.is_empty() {
        let cluster = connect(cli).await?;
        live_report(&cluster, args.all_namespaces, &ctx).await?
    } else {
        let namespace = offline_namespace(cli).await;
        let mut objects = Vec::new();
        for (name, text) in read_inputs(&expand(&args.filename, args.recursive)?)? {
            objects.extend(parse_stream(&text, &name)?);
        }
        doctor::diagnose(&objects, &namespace, false, &ctx)?
    };
    print!(
        "{}",
        match args.output {
            StatusFormat::Table => render::table(&report),
            StatusFormat::Json => render::json(&report),
            StatusFormat::Yaml => render::yaml(&report),
        }
    );
    Ok(match report.worst() {
        Some(s) if s >= args.fail_on => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// Files as given, directories as their `.yaml`, `.yml` and `.json` files (with `-R`, their
/// subdirectories' too), like `kubectl apply -f DIR`.
fn expand(paths: &[PathBuf], recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read directory {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read directory {}", dir.display()))?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if recursive {
                    walk(&p, recursive, out)?;
                }
            } else if p
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, recursive, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The namespaced kinds doctor reads: workloads and pods, and what they use.
const NAMESPACED: [(&str, &str); 14] = [
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
];

/// The cluster-scoped kinds doctor reads.
const CLUSTER_SCOPED: [(&str, &str); 3] = [
    ("v1", "Namespace"),
    ("v1", "PersistentVolume"),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    ),
];

fn resource(api_version: &str, kind: &str) -> ApiResource {
    api_resource(api_version, kind).expect("doctor reads only kinds of cluster::api_resource")
}

/// Adds a list's objects; says whether the list was read. A kind the user may not list is
/// a gap in the report (`unreadable`), not a failure; a kind the cluster does not serve (a
/// CRD not installed) has no objects.
fn read(
    result: Result<Option<Vec<Value>>, ClusterError>,
    what: &str,
    objects: &mut Vec<Value>,
    unreadable: &mut Vec<String>,
) -> anyhow::Result<bool> {
    match result {
        Ok(Some(items)) => {
            objects.extend(items);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e @ ClusterError::Forbidden { .. }) => {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            unreadable.push(format!("{what}: {first}"));
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads what doctor checks from the cluster and diagnoses it like files.
async fn live_report(cluster: &Cluster, all: bool, ctx: &Context<'_>) -> anyhow::Result<Report> {
    let mut objects = Vec::new();
    let mut unreadable = Vec::new();
    for (api_version, kind) in NAMESPACED {
        let r = resource(api_version, kind);
        let result = cluster.list_values(&r, true, all, None, None).await;
        read(result, &r.plural, &mut objects, &mut unreadable)?;
    }
    let events = resource("v1", "Event");
    let result = cluster
        .list_values(&events, true, all, None, Some("reason=FailedPreStopHook"))
        .await;
    read(result, "events", &mut objects, &mut unreadable)?;
    let mut webhooks_known = false;
    for (api_version, kind) in CLUSTER_SCOPED {
        let r = resource(api_version, kind);
        let result = cluster.list_values(&r, false, true, None, None).await;
        let listed = read(result, &r.plural, &mut objects, &mut unreadable)?;
        if kind == "MutatingWebhookConfiguration" {
            webhooks_known = listed;
        }
    }
    let mut inv = Inventory::build(&objects, &cluster.namespace, ctx.policy, true)?;
    inv.webhooks_known = webhooks_known;
    if !all {
        // Only the namespace asked for; cluster-scoped objects stay.
        inv.workloads.retain(|w| w.namespace == cluster.namespace);
    }
    // The endpoints of our webhooks' Services.
    let slices = resource("discovery.k8s.io/v1", "EndpointSlice");
    for (ns, name) in doctor::webhook::services(&inv) {
        let selector = format!("kubernetes.io/service-name={name}");
        let result = cluster
            .in_namespace(&ns)
            .list_values(&slices, true, false, Some(&selector), None)
            .await;
        let mut found = Vec::new();
        read(result, "endpointslices", &mut found, &mut unreadable)?;
        inv.extend(&found, &ns, ctx.policy)?;
    }
    let apis = resource("apiregistration.k8s.io/v1", "APIService");
    let result = cluster.list_values(&apis, false, true, None, None).await;
    let mut found = Vec::new();
    if read(result, "apiservices", &mut found, &mut unreadable)? {
        inv.api_services = Some(
            found
                .iter()
                .filter_map(|a| {
                    let available = a["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Available" && c["status"] == "True");
                    Some((a["metadata"]["name"].as_str()?.to_string(), available))
                })
                .collect(),
        );
    }
    let mut report = doctor::diagnose_inventory(inv, ctx);
    report.unreadable = unreadable;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_doctor_reads_has_its_api_resource() {
        for (api_version, kind) in NAMESPACED.iter().chain(&CLUSTER_SCOPED) {
            assert!(api_resource(api_version, kind).is_some(), "{kind}");
        }
        assert_eq!(
            resource("apiregistration.k8s.io/v1", "APIService").plural,
            "apiservices"
        );
        assert_eq!(
            resource("keda.sh/v1alpha1", "ScaledObject").plural,
            "scaledobjects"
        );
        assert_eq!(resource("v1", "Event").plural, "events");
    }
}
