//! Workers must never be killed in the middle of a build: enough termination grace for a
//! build to finish, and a preStop hook that drains the worker through the master first.
//!
//! A per-build worker pod (`restartPolicy: Never`: Buildbot's `KubeLatentWorker` creates one
//! for each build and deletes it when the build ends) gets the grace but never the hook: its
//! pod ends with its build, so there is nothing to drain, and the hook's `stop` control would
//! harm it. Buildbot keeps a latent worker's "graceful shutdown" flag until the worker next
//! connects, and a latent worker with the flag set is never started again: the first pod
//! deletion would retire the worker for good. What does protect its build is the cluster
//! autoscaler's `safe-to-evict: "false"` annotation: no node is scaled away under a running
//! build (the seed's "signal 15").

use serde_json::{json, Value};

use super::config::GracefulStop;
use super::patch::object;
use super::{containers, Ctx, Mutation, Role};

/// The built-in preStop hook (Python 3, which every Buildbot worker has; no curl needed).
pub const GRACEFUL_STOP_SCRIPT: &str = include_str!("graceful_stop.py");

/// The hook as injected: [`GRACEFUL_STOP_SCRIPT`] without its comment lines but the first,
/// which names it (doctor looks for it). Every worker pod carries the script, and every
/// admission response for one carries it escaped and base64'd: the comments explain the
/// source file and would cost 0.7 KB of each. The code stays as written, readable in the pod.
pub static INJECTED_SCRIPT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut lines = GRACEFUL_STOP_SCRIPT.lines();
    let first = lines.next().unwrap_or_default();
    std::iter::once(first)
        .chain(lines.filter(|l| !l.trim_start().starts_with('#')))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
});

/// The API server's default grace, which it fills in before admission: treated as unset.
const API_DEFAULT_GRACE: i64 = 30;

/// The cluster autoscaler's annotation that keeps a pod's node (and the pod) in place.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";

/// Whether the pod lives for one build only: it is never restarted, so it ends with its
/// process (Buildbot's `KubeLatentWorker` pods, a Job's pod).
pub fn per_build(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never")
}

/// The exact preStop command the policy injects into worker containers.
pub fn pre_stop_command(cfg: &GracefulStop) -> Vec<String> {
    if let Some(cmd) = &cfg.pre_stop_command {
        return cmd.clone();
    }
    let mut cmd = vec![
        "python3".to_string(),
        "-c".to_string(),
        INJECTED_SCRIPT.clone(),
    ];
    cmd.extend(cfg.master_url.clone());
    cmd
}

pub(super) fn apply(ctx: &mut Ctx) {
    if ctx.role != Role::Worker {
        return;
    }
    let cfg = &ctx.policy.graceful_stop;
    let wanted = cfg.termination_grace_period_seconds;
    let current = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds);
    if matches!(current, None | Some(API_DEFAULT_GRACE)) {
        // Only ever raise: a minimum below the API default leaves an explicit 30 alone.
        if (current.is_none() || wanted > API_DEFAULT_GRACE)
            && ctx
                .patch
                .set(&["spec", "terminationGracePeriodSeconds"], json!(wanted))
        {
            ctx.change(
                Mutation::GracefulStop,
                format!("terminationGracePeriodSeconds={wanted}"),
            );
        }
    } else if let Some(current) = current.filter(|&c| c < wanted) {
        ctx.warnings.push(format!(
            "terminationGracePeriodSeconds={current} kept; a build running longer is killed on scale-down"
        ));
    }

    if per_build(ctx.pod) {
        if ctx
            .patch
            .add_if_absent(&["metadata", "annotations", SAFE_TO_EVICT], json!("false"))
        {
            ctx.change(
                Mutation::GracefulStop,
                format!("{SAFE_TO_EVICT}=false (a per-build pod: no preStop hook)"),
            );
        }
        return;
    }
    let mut drained = Vec::new();
    for (i, container) in containers(ctx.pod).iter().enumerate() {
        if ctx.containers.get(i).copied().flatten() != Some(Role::Worker) {
            continue;
        }
        let has_pre_stop = container
            .lifecycle
            .as_ref()
            .is_some_and(|l| l.pre_stop.is_some());
        if has_pre_stop {
            ctx.warnings.push(format!(
                "container {:?} keeps its own preStop hook; it must drain the worker or builds are lost",
                container.name
            ));
            continue;
        }
        drained.push((i, container));
    }
    if drained.is_empty() {
        return;
    }
    let command = pre_stop_command(cfg)
        .into_iter()
        .map(Value::String)
        .collect();
    let hook = object([("exec", object([("command", Value::Array(command))]))]);
    // A copy of the 4 KB hook for each container but the last, which gets it.
    let hooks = std::iter::repeat_n(hook, drained.len());
    for ((i, container), hook) in drained.into_iter().zip(hooks) {
        let index = i.to_string();
        if ctx.patch.add_opaque_if_absent(
            &["spec", "containers", &index, "lifecycle", "preStop"],
            hook,
        ) {
            ctx.change(
                Mutation::GracefulStop,
                format!(
                    "preStop graceful worker stop on container {:?}",
                    container.name
                ),
            );
        }
    }
}
