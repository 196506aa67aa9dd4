//! `doctor`: find the seed's traps in manifests (offline) or in a cluster, and say the fix.
//! Exits 0 when nothing is found, 1 when something is (like `kubectl diff`), 2 on errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use k8s_openapi::api::{admissionregistration, apps, autoscaling, batch, core, discovery};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::cli::{Cli, DoctorArgs, StatusFormat};
use crate::cluster::{Cluster, ClusterError};
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

fn of<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Reads what doctor checks from the cluster and diagnoses it like files.
async fn live_report(cluster: &Cluster, all: bool, ctx: &Context<'_>) -> anyhow::Result<Report> {
    let namespaced = [
        of::<core::v1::Pod>(),
        of::<apps::v1::Deployment>(),
        of::<apps::v1::StatefulSet>(),
        of::<apps::v1::DaemonSet>(),
        of::<apps::v1::ReplicaSet>(),
        of::<batch::v1::Job>(),
        of::<batch::v1::CronJob>(),
        of::<core::v1::Service>(),
        of::<core::v1::ConfigMap>(),
        of::<core::v1::PersistentVolumeClaim>(),
        of::<core::v1::ResourceQuota>(),
        of::<core::v1::LimitRange>(),
        of::<autoscaling::v2::HorizontalPodAutoscaler>(),
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
            "scaledobjects",
        ),
    ];
    let cluster_scoped = [
        of::<core::v1::Namespace>(),
        of::<core::v1::PersistentVolume>(),
        of::<admissionregistration::v1::MutatingWebhookConfiguration>(),
    ];
    let mut objects = Vec::new();
    let mut unreadable = Vec::new();
    let mut read = |result: Result<Option<Vec<Value>>, ClusterError>,
                    what: &str,
                    objects: &mut Vec<Value>|
     -> anyhow::Result<()> {
        match result {
            Ok(Some(items)) => objects.extend(items),
            Ok(None) => {}
            // Not allowed to read something is a gap in the report, not a failure.
            Err(e @ ClusterError::Forbidden { .. }) => {
                unreadable.push(format!(
                    "{what}: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    };
    for r in &namespaced {
        let result = cluster.list_values(r, true, all, None, None).await;
        read(result, &r.plural, &mut objects)?;
    }
    let events = of::<core::v1::Event>();
    let result = cluster
        .list_values(&events, true, all, None, Some("reason=FailedPreStopHook"))
        .await;
    read(result, "events", &mut objects)?;
    for r in &cluster_scoped {
        let result = cluster.list_values(r, false, true, None, None).await;
        read(result, &r.plural, &mut objects)?;
    }
    // The endpoints of our webhooks' Services.
    let services: Vec<(String, String)> = objects
        .iter()
        .filter(|o| o["kind"] == "MutatingWebhookConfiguration")
        .flat_map(|o| o["webhooks"].as_array().cloned().unwrap_or_default())
        .filter(|w| {
            w["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".kubectl-buildbot.dev"))
        })
        .filter_map(|w| {
            let s = &w["clientConfig"]["service"];
            Some((
                s["namespace"].as_str()?.to_string(),
                s["name"].as_str()?.to_string(),
            ))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let slices = of::<discovery::v1::EndpointSlice>();
    for (ns, name) in services {
        let result = cluster
            .in_namespace(&ns)
            .list_values(
                &slices,
                true,
                false,
                Some(&format!("kubernetes.io/service-name={name}")),
                None,
            )
            .await;
        read(result, "endpointslices", &mut objects)?;
    }
    let mut inv = Inventory::build(&objects, &cluster.namespace, ctx.policy, true)?;
    if !all {
        // Only the namespace asked for; cluster-scoped objects stay.
        inv.workloads.retain(|w| w.namespace == cluster.namespace);
    }
    inv.webhooks_known = !unreadable
        .iter()
        .any(|u| u.starts_with("mutatingwebhookconfigurations"));
    let api_services = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
        "apiservices",
    );
    match cluster
        .list_values(&api_services, false, true, None, None)
        .await
    {
        Ok(Some(items)) => {
            inv.api_services = Some(
                items
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
        Ok(None) => {}
        Err(e @ ClusterError::Forbidden { .. }) => unreadable.push(format!(
            "apiservices: {}",
            e.to_string().lines().next().unwrap_or_default()
        )),
        Err(e) => return Err(e.into()),
    }
    let mut report = doctor::diagnose_inventory(inv, ctx);
    report.unreadable = unreadable;
    Ok(report)
}
