//! The diagnosis rules of `status`: from what was observed, what is wrong and what to do,
//! one line each. Pure.

use std::fmt::Write as _;

use buildbot_policy::Role;

use super::{Buildbot, Claim, PodState};
use crate::deploy::spec::DeploySpec;
use crate::readiness::Readiness;

/// What the rules look at.
pub struct Facts<'a> {
    pub spec: &'a DeploySpec,
    pub components: &'a [Readiness],
    pub pods: &'a [PodState],
    pub claims: &'a [Claim],
    pub buildbot: Option<&'a Buildbot>,
    /// Why Buildbot's REST API could not be read, when it could not.
    pub rest_error: Option<&'a str>,
    /// Last log lines of crash-looping containers, by pod name.
    pub logs: &'a [(String, String)],
    /// Pods a controller could not create: (`kind/name`, why).
    pub failed_creates: &'a [(String, String)],
}

/// Every hint, in a stable order: nothing deployed, claims, pods, Buildbot.
pub fn diagnose(f: &Facts<'_>) -> Vec<String> {
    let spec = f.spec;
    let ns = &spec.namespace;
    let mut hints = Vec::new();
    if !f.components.iter().any(|c| c.exists) {
        hints.push(format!("nothing named {:?} is deployed in namespace {ns}: `kubectl buildbot deploy {} -n {ns}`", spec.name, spec.name));
    }
    for c in f.claims.iter().filter(|c| c.phase == "Pending") {
        hints.push(format!(
            "PersistentVolumeClaim {} is Pending: no volume was provisioned; see `kubectl describe pvc {} -n {ns}`, or deploy with --storage-class",
            c.name, c.name
        ));
    }
    hints.extend(f.pods.iter().filter_map(|p| pod_hint(p, f.logs)));
    for (workload, message) in f.failed_creates {
        let hint = if message.contains("violates PodSecurity") {
            format!(
                "{workload} cannot create its pods: the namespace's Pod Security level rejects them: {message}\n  \
                 hint: `kubectl buildbot deploy {name} -n {ns}` renders for the namespace's level; pods from \
                 elsewhere get it from the buildbot-webhook chart; or lower the level with \
                 `kubectl label namespace {ns} pod-security.kubernetes.io/enforce=baseline --overwrite`",
                name = spec.name
            )
        } else {
            format!("{workload} cannot create its pods: {message}")
        };
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    match (f.buildbot, f.rest_error) {
        (Some(b), _) => {
            for p in f
                .pods
                .iter()
                .filter(|p| p.component == Some(Role::Worker) && p.ready)
            {
                let worker = p.worker.as_ref().unwrap_or(&p.name);
                if !b.workers_connected.contains(worker) {
                    hints.push(format!(
                        "worker pod {} runs but is not connected to the master: `kubectl logs {} -n {ns}`",
                        p.name, p.name
                    ));
                }
            }
        }
        (None, Some(e)) => {
            if f.components
                .iter()
                .any(|c| c.component == Role::Master && c.ready > 0)
            {
                hints.push(format!(
                    "Buildbot's REST API did not answer through the service proxy: {e}"
                ));
            }
        }
        (None, None) => {}
    }
    hints
}

/// Why a pod does not run, when the reason is one we can explain.
fn pod_hint(p: &PodState, logs: &[(String, String)]) -> Option<String> {
    let reason = p.reason.as_ref()?;
    let container = p.container.as_deref().unwrap_or("?");
    let message = p.message.as_deref().unwrap_or(reason);
    Some(match reason.as_str() {
        "CrashLoopBackOff" => {
            let mut h = format!(
                "pod {} container {container} is crash-looping ({} restarts)",
                p.name, p.restarts
            );
            if let Some((_, log)) = logs.iter().find(|(pod, _)| pod == &p.name) {
                let _ = write!(h, "; its last log lines:\n{}", indent(log));
            }
            h
        }
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
            format!(
                "pod {} cannot pull the image of {container}: {message}",
                p.name
            )
        }
        "Unschedulable" => format!("pod {} cannot be scheduled: {message}", p.name),
        "CreateContainerConfigError" => {
            format!(
                "pod {} container {container} cannot start: {message}",
                p.name
            )
        }
        _ => return None,
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
