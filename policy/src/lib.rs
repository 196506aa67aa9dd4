//! The Buildbot pod policy: what a correct Buildbot pod looks like, as pure functions.
//!
//! [`evaluate`] is pure: given a pod and a [`Policy`], it returns the RFC 6902 patch that makes
//! the pod correct, what it changed and why, and warnings for what it could not fix. It only
//! ever adds what is absent (never changes a value the user set), and applying it to its own
//! output yields an empty patch. The webhook, `kubectl-buildbot preview` and `deploy` all call
//! this one function; this crate does no I/O and has no server or client in its dependencies.
//!
//! - [`Policy`] and its parts (module `config`): every default, and the policy file.
//! - One module per rule: `labels`, `permissions` (fsGroup, init chown), `resources`,
//!   `graceful` (termination grace, the preStop drain); `role` recognises a pod's role.
//! - [`quantity`] and [`duration`]: Kubernetes quantities and kubectl-style durations.

mod config;
pub mod duration;
mod graceful;
mod labels;
mod patch;
mod permissions;
mod pod_security;
pub mod quantity;
mod resources;
mod role;
pub mod yaml_depth;

use std::fmt;

use k8s_openapi::api::core::v1::Pod;

pub use config::{
    GracefulStop, Identity, Mutations, Permissions, Policy, PolicyError, Recognition, Resources,
    RoleResources, UserGroup, INJECT_KEY, ROLE_KEY, SKIP_KEY,
};
pub use graceful::{
    per_build, pre_stop_command, GRACEFUL_STOP_SCRIPT, INJECTED_SCRIPT, SAFE_TO_EVICT,
};
pub use permissions::INIT_CONTAINER_NAME;
pub use pod_security::{PodSecurityLevel, ENFORCE_LABEL};
pub use role::{env_role, glob_match, image_repository, recognise, Evidence, Recognised, Role};

/// One kind of mutation; the names are those of the policy's `mutations` switches and of the
/// `kubectl-buildbot.dev/skip` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    Labels,
    FsGroup,
    VolumeOwnership,
    Resources,
    GracefulStop,
    PodSecurity,
}

impl Mutation {
    pub const ALL: [Mutation; 6] = [
        Mutation::Labels,
        Mutation::FsGroup,
        Mutation::VolumeOwnership,
        Mutation::Resources,
        Mutation::GracefulStop,
        Mutation::PodSecurity,
    ];

    /// [`Self::ALL`] in the order of their names.
    pub const BY_NAME: [Mutation; 6] = [
        Mutation::FsGroup,
        Mutation::GracefulStop,
        Mutation::Labels,
        Mutation::PodSecurity,
        Mutation::Resources,
        Mutation::VolumeOwnership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::Labels => "labels",
            Mutation::FsGroup => "fsGroup",
            Mutation::VolumeOwnership => "volumeOwnership",
            Mutation::Resources => "resources",
            Mutation::GracefulStop => "gracefulStop",
            Mutation::PodSecurity => "podSecurity",
        }
    }

    fn enabled(self, m: &Mutations) -> bool {
        match self {
            Mutation::Labels => m.labels,
            Mutation::FsGroup => m.fs_group,
            Mutation::VolumeOwnership => m.volume_ownership,
            Mutation::Resources => m.resources,
            Mutation::GracefulStop => m.graceful_stop,
            Mutation::PodSecurity => m.pod_security,
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing the policy injected, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub mutation: Mutation,
    pub detail: String,
}

/// Why a pod was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Not a Buildbot pod.
    NotBuildbot,
    /// Labelled as Buildbot, role unknown.
    UnknownRole,
    /// The pod carries `kubectl-buildbot.dev/inject: "false"`.
    OptedOut,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The pod's role, `None` when it was left alone (see `skipped`).
    pub role: Option<Role>,
    pub skipped: Option<Skipped>,
    /// RFC 6902 operations, all `add`, relative to the pod's root.
    pub patch: json_patch::Patch,
    /// What the patch does, one entry per injected item.
    pub changes: Vec<Change>,
    /// Problems the user should know about (at most a few, each one line).
    pub warnings: Vec<String>,
}

impl Evaluation {
    fn skipped(skipped: Skipped, warnings: Vec<String>) -> Self {
        Self {
            role: None,
            skipped: Some(skipped),
            patch: json_patch::Patch(Vec::new()),
            changes: Vec::new(),
            warnings,
        }
    }

    /// The names of the mutations that changed something, in the order of their names.
    pub fn injected(&self) -> Vec<&'static str> {
        let mut changed = [false; Mutation::ALL.len()];
        for c in &self.changes {
            changed[c.mutation as usize] = true;
        }
        Mutation::BY_NAME
            .iter()
            .filter(|m| changed[**m as usize])
            .map(|m| m.name())
            .collect()
    }
}

/// State shared by the mutation rules while evaluating one pod.
pub(crate) struct Ctx<'a> {
    pub pod: &'a Pod,
    pub policy: &'a Policy,
    /// The Pod Security level the pod is admitted under.
    pub level: PodSecurityLevel,
    pub role: Role,
    /// Role of each `spec.containers[i]`, `None` for sidecars.
    pub containers: &'a [Option<Role>],
    pub patch: patch::PatchBuilder,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

impl Ctx<'_> {
    pub fn change(&mut self, mutation: Mutation, detail: String) {
        self.changes.push(Change { mutation, detail });
    }
}

/// Evaluates the policy for one pod in a namespace without a Pod Security level (privileged).
/// See the module documentation.
pub fn evaluate(pod: &Pod, policy: &Policy) -> Evaluation {
    evaluate_in(pod, policy, PodSecurityLevel::Privileged)
}

/// Evaluates the policy for one pod admitted under `level`: nothing that level forbids is
/// injected.
pub fn evaluate_in(pod: &Pod, policy: &Policy, level: PodSecurityLevel) -> Evaluation {
    evaluate_decoded(pod, pod.metadata != Default::default(), policy, level)
}

/// [`evaluate_in`] for a pod decoded from a document with only the fields the policy reads
/// (the webhook's review view): the typed pod cannot tell whether the document has
/// `metadata` when none of the fields read is there, so `metadata_present` says it. Gives
/// the patch [`evaluate_in`] gives for the whole document.
pub fn evaluate_decoded(
    pod: &Pod,
    metadata_present: bool,
    policy: &Policy,
    level: PodSecurityLevel,
) -> Evaluation {
    evaluate_with_doc(
        pod,
        || patch::skeleton(pod, metadata_present),
        policy,
        level,
    )
}

/// Evaluates the policy for a pod given as JSON exactly as written (a pod template from a
/// manifest, say), so that the patch applies to that document even where it omits fields a
/// typed Pod always has. Fails only when the document is not a Pod.
pub fn evaluate_json(
    doc: &serde_json::Value,
    policy: &Policy,
) -> Result<Evaluation, serde_json::Error> {
    evaluate_json_in(doc, policy, PodSecurityLevel::Privileged)
}

/// [`evaluate_json`] for a pod admitted under `level`.
pub fn evaluate_json_in(
    doc: &serde_json::Value,
    policy: &Policy,
    level: PodSecurityLevel,
) -> Result<Evaluation, serde_json::Error> {
    let pod: Pod = serde_json::from_value(doc.clone())?;
    Ok(evaluate_with_doc(&pod, || doc.clone(), policy, level))
}

fn evaluate_with_doc(
    pod: &Pod,
    doc: impl FnOnce() -> serde_json::Value,
    policy: &Policy,
    level: PodSecurityLevel,
) -> Evaluation {
    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);

    let (role, containers) = match recognise(pod, &policy.recognition) {
        Recognised::NotBuildbot => return Evaluation::skipped(Skipped::NotBuildbot, Vec::new()),
        Recognised::UnknownRole => {
            return Evaluation::skipped(
                Skipped::UnknownRole,
                vec!["pod is labelled as Buildbot but its role is unknown; \
                      set app.kubernetes.io/component to master, worker or database"
                    .into()],
            )
        }
        Recognised::Buildbot {
            role, containers, ..
        } => (role, containers),
    };
    if annotation(INJECT_KEY).is_some_and(|v| v.trim().eq_ignore_ascii_case("false")) {
        return Evaluation::skipped(Skipped::OptedOut, Vec::new());
    }
    let skip = annotation(SKIP_KEY).unwrap_or("");
    let skipped = |m: Mutation| skip.split(',').any(|s| s.trim() == m.name());

    let mut ctx = Ctx {
        pod,
        policy,
        level,
        role,
        containers: &containers,
        patch: patch::PatchBuilder::new(doc()),
        changes: Vec::new(),
        warnings: Vec::new(),
    };
    for mutation in Mutation::ALL {
        if !mutation.enabled(&policy.mutations) || skipped(mutation) {
            continue;
        }
        match mutation {
            Mutation::Labels => labels::apply(&mut ctx),
            Mutation::FsGroup => permissions::apply_fs_group(&mut ctx),
            Mutation::VolumeOwnership => permissions::apply_volume_ownership(&mut ctx),
            Mutation::Resources => resources::apply(&mut ctx),
            Mutation::GracefulStop => graceful::apply(&mut ctx),
            Mutation::PodSecurity => pod_security::apply(&mut ctx),
        }
    }
    Evaluation {
        role: Some(role),
        skipped: None,
        patch: ctx.patch.finish(),
        changes: ctx.changes,
        warnings: ctx.warnings,
    }
}

/// The pod's containers, or none when it has no spec.
pub(crate) fn containers(pod: &Pod) -> &[k8s_openapi::api::core::v1::Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
