//! The Pod Security Standards level a pod is admitted under: the namespace's
//! `pod-security.kubernetes.io/enforce` label. The policy never injects what that level
//! forbids, so that it never turns an admissible pod into a rejected one.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Container, SecurityContext};
use serde_json::json;

use super::{Ctx, Mutation};

/// The namespace label the API server's PodSecurity admission enforces.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum PodSecurityLevel {
    /// Anything goes (the API server's default for an unlabelled namespace).
    #[default]
    Privileged,
    /// No hostPath, no privileged containers, only the default capabilities (CHOWN and
    /// FOWNER among them), root allowed.
    Baseline,
    /// Baseline, and non-root, no privilege escalation, every capability dropped, a
    /// RuntimeDefault or Localhost seccomp profile.
    Restricted,
}

impl PodSecurityLevel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }

    /// The level of a namespace with these labels (`None`: unlabelled, privileged).
    pub fn of_namespace<'a>(
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, String> {
        labels
            .into_iter()
            .find(|(k, _)| k.as_str() == ENFORCE_LABEL)
            .map_or(Ok(Self::Privileged), |(_, v)| v.parse())
    }
}

impl FromStr for PodSecurityLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "privileged" => Ok(Self::Privileged),
            "baseline" => Ok(Self::Baseline),
            "restricted" => Ok(Self::Restricted),
            other => Err(format!(
                "{other:?} is not a Pod Security level (privileged, baseline or restricted)"
            )),
        }
    }
}

impl fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Under `restricted`, what the profile requires and the pod leaves unset: a RuntimeDefault
/// seccomp profile and runAsNonRoot on the pod; on every container (init containers too)
/// `allowPrivilegeEscalation: false` and `capabilities.drop: [ALL]`, and the role's user where
/// a Buildbot container names none (images that start as root would not start otherwise).
/// Under `baseline` and `restricted`, a warning for what no mutation can fix (hostPath
/// volumes, privileged containers, root, added capabilities): PodSecurity rejects the pod.
pub(super) fn apply(ctx: &mut Ctx) {
    if ctx.level == PodSecurityLevel::Privileged {
        return;
    }
    let Some(spec) = ctx.pod.spec.as_ref() else {
        return;
    };
    let level = ctx.level;
    let host_paths: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if !host_paths.is_empty() {
        ctx.warnings.push(format!(
            "Pod Security level {level} forbids hostPath volumes ({}): PodSecurity rejects this \
             pod; use a PersistentVolumeClaim",
            host_paths.join(", ")
        ));
    }
    let lists: [(&str, &[Container]); 2] = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for c in lists.iter().flat_map(|(_, containers)| containers.iter()) {
        if c.security_context.as_ref().and_then(|s| s.privileged) == Some(true) {
            ctx.warnings.push(format!(
                "container {:?} is privileged, which Pod Security level {level} forbids",
                c.name
            ));
        }
    }
    if level != PodSecurityLevel::Restricted {
        return;
    }
    let pod_sc = spec.security_context.as_ref();
    let mut set = Vec::new();
    if pod_sc.and_then(|s| s.seccomp_profile.as_ref()).is_none()
        && ctx.patch.add_if_absent(
            &["spec", "securityContext", "seccompProfile"],
            json!({"type": "RuntimeDefault"}),
        )
    {
        set.push("seccompProfile=RuntimeDefault".to_string());
    }
    let root_user = |sc: Option<i64>| sc == Some(0);
    if pod_sc.and_then(|s| s.run_as_non_root).is_none()
        && !root_user(pod_sc.and_then(|s| s.run_as_user))
        && ctx
            .patch
            .add_if_absent(&["spec", "securityContext", "runAsNonRoot"], json!(true))
    {
        set.push("runAsNonRoot".to_string());
    }
    // Rules before this one may have put their own init container first.
    let init_offset = init_offset(ctx, lists[0].1.len());
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let index = if list == "initContainers" {
                (i + init_offset).to_string()
            } else {
                i.to_string()
            };
            let sc = c.security_context.as_ref();
            let at = |field: &'static str| ["spec", list, index.as_str(), "securityContext", field];
            if ctx
                .patch
                .add_if_absent(&at("allowPrivilegeEscalation"), json!(false))
            {
                set.push(format!("{:?}: allowPrivilegeEscalation=false", c.name));
            }
            let caps = sc.and_then(|s| s.capabilities.as_ref());
            if caps.and_then(|c| c.drop.as_ref()).is_none()
                && ctx.patch.add_if_absent(
                    &[
                        "spec",
                        list,
                        index.as_str(),
                        "securityContext",
                        "capabilities",
                        "drop",
                    ],
                    json!(["ALL"]),
                )
            {
                set.push(format!("{:?}: capabilities.drop=[ALL]", c.name));
            }
            let role = (list == "containers")
                .then(|| ctx.containers.get(i).copied().flatten())
                .flatten();
            let pod_user = pod_sc.and_then(|s| s.run_as_user);
            if let Some(role) =
                role.filter(|_| sc.and_then(|s| s.run_as_user).is_none() && pod_user.is_none())
            {
                let who = ctx.policy.identity.for_role(role);
                if ctx.patch.add_if_absent(&at("runAsUser"), json!(who.uid)) {
                    ctx.patch.add_if_absent(&at("runAsGroup"), json!(who.gid));
                    set.push(format!("{:?}: runAsUser={}", c.name, who.uid));
                }
            }
            let problems = restricted_problems(sc, pod_user);
            if !problems.is_empty() {
                ctx.warnings.push(format!(
                    "container {:?}: {}, which Pod Security level restricted forbids: PodSecurity \
                     rejects this pod",
                    c.name,
                    problems.join(", ")
                ));
            }
        }
    }
    if !set.is_empty() {
        ctx.change(
            Mutation::PodSecurity,
            format!("restricted profile: {}", set.join(", ")),
        );
    }
}

/// How many init containers the rules before this one inserted at the front.
fn init_offset(ctx: &Ctx, original: usize) -> usize {
    ctx.patch
        .get(&["spec", "initContainers"])
        .and_then(|v| v.as_array())
        .map_or(original, Vec::len)
        .saturating_sub(original)
}

/// What the user set that `restricted` rejects and no mutation may change.
fn restricted_problems(sc: Option<&SecurityContext>, pod_user: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(sc) = sc else {
        return if pod_user == Some(0) {
            vec!["runs as root (runAsUser 0)".into()]
        } else {
            out
        };
    };
    if sc.run_as_user.or(pod_user) == Some(0) {
        out.push("runs as root (runAsUser 0)".into());
    }
    if sc.run_as_non_root == Some(false) {
        out.push("runAsNonRoot false".into());
    }
    if sc.allow_privilege_escalation == Some(true) {
        out.push("allowPrivilegeEscalation true".into());
    }
    if let Some(caps) = &sc.capabilities {
        if caps
            .drop
            .as_ref()
            .is_some_and(|d| !d.iter().any(|c| c == "ALL"))
        {
            out.push("capabilities.drop without ALL".into());
        }
        let added: Vec<&String> = caps
            .add
            .iter()
            .flatten()
            .filter(|c| c.as_str() != "NET_BIND_SERVICE")
            .collect();
        if !added.is_empty() {
            out.push(format!("adds capabilities {added:?}"));
        }
    }
    if let Some(p) = &sc.seccomp_profile {
        if p.type_ != "RuntimeDefault" && p.type_ != "Localhost" {
            out.push(format!("seccompProfile {}", p.type_));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_namespace_level_comes_from_its_enforce_label() {
        let labels = |v: &str| BTreeMap::from([(ENFORCE_LABEL.to_string(), v.to_string())]);
        assert_eq!(
            PodSecurityLevel::of_namespace(&labels("restricted")),
            Ok(PodSecurityLevel::Restricted)
        );
        assert_eq!(
            PodSecurityLevel::of_namespace(&BTreeMap::new()),
            Ok(PodSecurityLevel::Privileged)
        );
        assert!(PodSecurityLevel::of_namespace(&labels("strict")).is_err());
    }
}
