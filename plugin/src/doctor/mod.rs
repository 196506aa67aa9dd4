//! `kubectl buildbot doctor`: finds the seed write-up's traps in an existing Buildbot setup,
//! from manifests or from a cluster, and says the fix.
//!
//! Pure: objects in, a [`Report`] out. The same [`Inventory`] comes from files and from a
//! cluster, so both modes find the same. One module per trap family:
//!
//! | code | module | trap |
//! |---|---|---|
//! | BB01, BB02 | [`network`] | Services, ports and `BUILDMASTER` |
//! | BB03 | [`database`] | the master cannot wait for its database |
//! | BB04 | [`volumes`] | root-owned hostPath/local volumes |
//! | BB05 | [`autoscaling`] | autoscalers without requests or metrics |
//! | BB06, BB07 | [`graceful`] | workers killed mid-build; a hook that cannot reach the master |
//! | BB08 | [`worker_names`] | names master.cfg and the pods disagree on |
//! | BB09 | [`webhook`] | the admission webhook itself |
//! | BB10 | [`hygiene`] | quotas that need requests; root |
//! | BB11 | here | opted-out pods that keep webhook-fixable traps |
//!
//! The long story of each code is in [`explain`].

pub mod autoscaling;
pub mod cert;
pub mod database;
pub mod explain;
pub mod finding;
pub mod graceful;
pub mod hygiene;
pub mod inventory;
pub mod master_config;
pub mod network;
pub mod render;
pub mod volumes;
pub mod webhook;
pub mod worker_names;

use std::collections::BTreeMap;

use buildbot_policy::{evaluate_in, PodSecurityLevel, Policy, Role, INJECT_KEY};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;

pub use finding::{Code, Finding, Severity};
pub use inventory::{InvalidObject, Inventory, Workload};
use webhook::Coverage;

/// What the checks need besides the objects.
pub struct Context<'a> {
    pub policy: &'a Policy,
    /// Now, in seconds since the Unix epoch (certificate expiry).
    pub now: i64,
}

/// The Buildbot pods of one namespace, by role.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Installation {
    pub namespace: String,
    pub masters: Vec<String>,
    pub workers: Vec<String>,
    pub databases: Vec<String>,
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `files` or `cluster`.
    pub source: &'static str,
    pub installations: Vec<Installation>,
    pub findings: Vec<Finding>,
    /// Kinds read and not checked, with counts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub not_checked: BTreeMap<String, usize>,
    /// What doctor could not read (live mode: forbidden or absent APIs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl Report {
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// Diagnoses `objects` (files, or a cluster's when `live`); objects without a namespace are
/// in `default_namespace`.
pub fn diagnose(
    objects: &[Value],
    default_namespace: &str,
    live: bool,
    ctx: &Context,
) -> Result<Report, InvalidObject> {
    let inv = Inventory::build(objects, default_namespace, ctx.policy, live)?;
    Ok(diagnose_inventory(inv, ctx))
}

/// Diagnoses an inventory; the live mode adds what only a cluster has (APIServices).
pub fn diagnose_inventory(mut inv: Inventory, ctx: &Context) -> Report {
    admit(&mut inv, ctx.policy);
    inv.index();
    let mut findings = Vec::new();
    network::check_master_services(&inv, &mut findings);
    network::check_worker_addresses(&inv, &mut findings);
    database::check(&inv, &mut findings);
    volumes::check(&inv, ctx.policy, &mut findings);
    autoscaling::check(&inv, &mut findings);
    graceful::check_grace(&inv, &mut findings);
    graceful::check_hook_reach(&inv, &mut findings);
    worker_names::check(&inv, &mut findings);
    webhook::check(&inv, ctx, &mut findings);
    hygiene::check(&inv, &mut findings);
    let mut findings = fold_opted_out(&inv, findings);
    findings.sort_by(|a, b| {
        (b.severity, &a.namespace, a.code, &a.objects).cmp(&(
            a.severity,
            &b.namespace,
            b.code,
            &b.objects,
        ))
    });
    findings.dedup();
    Report {
        source: if inv.live { "cluster" } else { "files" },
        installations: installations(&inv),
        findings,
        not_checked: inv.ignored.clone(),
        unreadable: Vec::new(),
    }
}

/// Marks opted-out namespaces, and gives the pods the webhook will admit the webhook's
/// mutations: a trap the webhook fixes at creation is not one.
fn admit(inv: &mut Inventory, policy: &Policy) {
    let mut covered = Vec::new();
    for (i, w) in inv.workloads.iter().enumerate() {
        let ns_labels = inv.labels_of_namespace(&w.namespace);
        if w.opted_out.is_none() && ns_labels.get(INJECT_KEY).map(String::as_str) == Some("false") {
            covered.push((i, None, Some(format!("namespace label {INJECT_KEY}=false"))));
            continue;
        }
        if w.opted_out.is_some() || w.admitted {
            continue;
        }
        if let Coverage::Covered(_) = webhook::coverage(inv, &w.namespace, w.labels()) {
            let level =
                PodSecurityLevel::of_namespace(&ns_labels).unwrap_or(PodSecurityLevel::Privileged);
            covered.push((i, Some(level), None));
        }
    }
    for (i, level, opted_out) in covered {
        let w = &mut inv.workloads[i];
        if opted_out.is_some() {
            w.opted_out = opted_out;
        }
        if let Some(level) = level {
            if let Some(pod) = mutated(&w.written, policy, level) {
                w.pod = pod;
            }
        }
    }
}

/// The pod after the webhook's patch.
fn mutated(pod: &Pod, policy: &Policy, level: PodSecurityLevel) -> Option<Pod> {
    let evaluation = evaluate_in(pod, policy, level);
    let mut doc = serde_json::to_value(pod).ok()?;
    json_patch::patch(&mut doc, &evaluation.patch).ok()?;
    serde_json::from_value(doc).ok()
}

/// BB11: for opted-out pods, the traps the webhook would fix become one info finding: the
/// user chose to handle them.
fn fold_opted_out(inv: &Inventory, findings: Vec<Finding>) -> Vec<Finding> {
    let opted_out: std::collections::HashSet<(&str, String)> = inv
        .workloads
        .iter()
        .filter(|w| w.opted_out.is_some())
        .map(|w| (w.namespace.as_str(), w.id()))
        .collect();
    if opted_out.is_empty() {
        return findings;
    }
    let mut kept = Vec::new();
    let mut folded: BTreeMap<(String, String), Vec<Finding>> = BTreeMap::new();
    for f in findings {
        let workload = f.objects.iter().find(|o| {
            f.code.fixed_by_webhook() && opted_out.contains(&(f.namespace.as_str(), (*o).clone()))
        });
        match workload {
            Some(id) => folded
                .entry((f.namespace.clone(), id.clone()))
                .or_default()
                .push(f),
            None => kept.push(f),
        }
    }
    for ((ns, id), found) in folded {
        let w = inv
            .workloads
            .iter()
            .find(|w| w.namespace == ns && w.id() == id)
            .expect("folded by this workload");
        let traps: Vec<String> = found
            .iter()
            .map(|f| format!("{} {}", f.code, f.trap))
            .collect();
        let fixes: Vec<String> = found.iter().map(|f| f.fix.clone()).collect();
        kept.push(
            Finding::new(Code::OptedOut, Severity::Info, &ns, vec![id.clone()])
                .trap(format!(
                    "{id} opted out of the webhook and still has {} trap{} it would fix",
                    found.len(),
                    if found.len() == 1 { "" } else { "s" }
                ))
                .why(format!(
                    "{} excludes it from the admission webhook, so nothing fixes: {}",
                    w.opted_out.as_deref().unwrap_or("opt-out"),
                    traps.join("; ")
                ))
                .fix(fixes.join("; "))
                .automatic(format!(
                    "remove {INJECT_KEY}=false to let the webhook fix them at the next pod creation"
                )),
        );
    }
    kept
}

fn installations(inv: &Inventory) -> Vec<Installation> {
    let mut by_ns: BTreeMap<&str, Installation> = BTreeMap::new();
    for w in &inv.workloads {
        let i = by_ns.entry(&w.namespace).or_insert_with(|| Installation {
            namespace: w.namespace.clone(),
            ..Installation::default()
        });
        match w.role {
            Role::Master => i.masters.push(w.id()),
            Role::Worker => i.workers.push(w.id()),
            Role::Database => i.databases.push(w.id()),
        }
    }
    by_ns.into_values().collect()
}

#[cfg(test)]
mod tests;
