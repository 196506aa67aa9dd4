//! The policy: every default the engine applies, in one place.
//!
//! The same structure is read from the YAML file given to `buildbot-webhook --config`,
//! `kubectl-buildbot preview --config` and rendered by the Helm chart. Field names are
//! camelCase, unknown fields are rejected so that a typo never silently disables a rule.

use serde::{Deserialize, Serialize};

use super::role::Role;

/// Annotation or namespace label that switches injection off when set to `"false"`.
pub const INJECT_KEY: &str = "kubectl-buildbot.dev/inject";
/// Pod annotation listing mutations to skip for that pod, comma separated
/// (`labels,fsGroup,volumeOwnership,resources,gracefulStop,podSecurity`).
pub const SKIP_KEY: &str = "kubectl-buildbot.dev/skip";
/// Pod annotation that states the Buildbot role (`master`, `worker`, `database`) explicitly.
pub const ROLE_KEY: &str = "kubectl-buildbot.dev/role";

/// The whole policy. `Policy::default()` is what the webhook applies without a config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// How Buildbot pods and containers are recognised.
    pub recognition: Recognition,
    /// Which mutations are switched on.
    pub mutations: Mutations,
    /// The users Buildbot and its database run as.
    pub identity: Identity,
    /// Volume permissions (fsGroup and the init chown).
    pub permissions: Permissions,
    /// Default resource requests per role.
    pub resources: RoleResources,
    /// Worker termination grace and the graceful-stop hook.
    pub graceful_stop: GracefulStop,
}

/// Errors reading a policy file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The YAML did not parse or did not match the schema.
    #[error("invalid policy: {0} (see `buildbot-webhook default-config` for every field and its default)")]
    Parse(#[from] serde_norway::Error),
    /// The YAML parsed but a value is out of range.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// A policy file that could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A policy file that was read but is not a valid policy.
    #[error("policy file {}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: Box<PolicyError>,
    },
}

impl Policy {
    /// Parses a policy from YAML (or JSON, which is YAML). Missing fields take their defaults.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        if let Some(line) = crate::yaml_depth::too_deep(text) {
            return Err(PolicyError::Invalid(format!(
                "line {line}: collections nested more than {} deep",
                crate::yaml_depth::MAX_FLOW_DEPTH
            )));
        }
        let policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_norway::from_str(text)?
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Reads a policy file (the webhook's `--config`, the plugin's `--policy`/`--config`).
    pub fn from_file(path: &std::path::Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| PolicyError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The policy as YAML, every field spelled out.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a policy always serialises")
    }

    fn validate(&self) -> Result<(), PolicyError> {
        for (role, res) in [
            ("master", &self.resources.master),
            ("worker", &self.resources.worker),
            ("database", &self.resources.database),
            ("sidecar", &self.resources.sidecar),
            (
                "permissions.initResources",
                &self.permissions.init_resources,
            ),
        ] {
            for (name, q) in [("cpu", &res.cpu), ("memory", &res.memory)] {
                if super::quantity::parse(q).is_none() {
                    return Err(PolicyError::Invalid(format!(
                        "resources {role}.{name}: {q:?} is not a Kubernetes quantity (e.g. 500m, 1Gi)"
                    )));
                }
            }
        }
        if self.graceful_stop.termination_grace_period_seconds < 1 {
            return Err(PolicyError::Invalid(
                "gracefulStop.terminationGracePeriodSeconds must be at least 1".into(),
            ));
        }
        if self
            .graceful_stop
            .pre_stop_command
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            return Err(PolicyError::Invalid(
                "gracefulStop.preStopCommand must not be empty; leave it out for the built-in hook"
                    .into(),
            ));
        }
        if !matches!(
            self.permissions.fs_group_change_policy.as_str(),
            "OnRootMismatch" | "Always"
        ) {
            return Err(PolicyError::Invalid(format!(
                "permissions.fsGroupChangePolicy: {:?} is neither OnRootMismatch nor Always",
                self.permissions.fs_group_change_policy
            )));
        }
        if let Some(t) = self
            .permissions
            .chown_volume_types
            .iter()
            .find(|t| !CHOWN_VOLUME_TYPES.contains(&t.as_str()))
        {
            return Err(PolicyError::Invalid(format!(
                "permissions.chownVolumeTypes: unknown volume type {t:?} (one of {})",
                CHOWN_VOLUME_TYPES.join(", ")
            )));
        }
        if self.permissions.init_image.trim().is_empty() {
            return Err(PolicyError::Invalid(
                "permissions.initImage must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// Image patterns per role. A pattern is matched against the image's repository path without
/// registry, tag or digest (`buildbot/buildbot-worker` for `docker.io/buildbot/buildbot-worker:v4`);
/// `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Recognition {
    pub master_images: Vec<String>,
    pub worker_images: Vec<String>,
    /// Database images only make a container a database container inside a pod that is
    /// already a Buildbot pod (by labels or another container): a lone postgres is not ours.
    pub database_images: Vec<String>,
}

impl Default for Recognition {
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        Self {
            master_images: v(&["buildbot/buildbot-master", "*buildbot-master*"]),
            worker_images: v(&["buildbot/buildbot-worker", "*buildbot-worker*"]),
            database_images: v(&["postgres", "*/postgres", "*postgresql*"]),
        }
    }
}

/// Each mutation can be switched off for the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Mutations {
    pub labels: bool,
    pub fs_group: bool,
    pub volume_ownership: bool,
    pub resources: bool,
    pub graceful_stop: bool,
    /// In `restricted` namespaces, what the profile requires and the pod leaves unset.
    pub pod_security: bool,
}

impl Default for Mutations {
    fn default() -> Self {
        Self {
            labels: true,
            fs_group: true,
            volume_ownership: true,
            resources: true,
            graceful_stop: true,
            pod_security: true,
        }
    }
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserGroup {
    pub uid: i64,
    pub gid: i64,
}

/// Who owns what: Buildbot's images run as uid 1000, the official postgres image as 999.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Identity {
    pub buildbot: UserGroup,
    pub database: UserGroup,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            buildbot: UserGroup {
                uid: 1000,
                gid: 1000,
            },
            database: UserGroup { uid: 999, gid: 999 },
        }
    }
}

impl Identity {
    /// The user a role's files belong to when the container does not say.
    pub fn for_role(&self, role: Role) -> UserGroup {
        match role {
            Role::Database => self.database,
            Role::Master | Role::Worker => self.buildbot,
        }
    }
}

/// The volume types `permissions.chownVolumeTypes` may name.
pub const CHOWN_VOLUME_TYPES: [&str; 6] = [
    "hostPath",
    "persistentVolumeClaim",
    "ephemeral",
    "emptyDir",
    "nfs",
    "csi",
];

/// Volume permissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Permissions {
    /// `securityContext.fsGroupChangePolicy` set together with fsGroup.
    pub fs_group_change_policy: String,
    /// Pod volume types that get an init chown because fsGroup does not reach them.
    /// `persistentVolumeClaim` is in by default: the claims of minikube, kind and the seed
    /// write-up are hostPath volumes underneath, which fsGroup ignores.
    pub chown_volume_types: Vec<String>,
    /// Image of the init container (needs `sh`, `stat`, `chown`, `chmod`).
    pub init_image: String,
    /// Requests of the init container (its memory is also its limit).
    pub init_resources: Resources,
}

impl Default for Permissions {
    fn default() -> Self {
        Self {
            fs_group_change_policy: "OnRootMismatch".into(),
            chown_volume_types: vec![
                "hostPath".into(),
                "persistentVolumeClaim".into(),
                "ephemeral".into(),
            ],
            init_image: "busybox:1.36".into(),
            init_resources: Resources {
                cpu: "10m".into(),
                memory: "32Mi".into(),
            },
        }
    }
}

/// A CPU and memory pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpu: String,
    pub memory: String,
}

/// Default requests for containers that state none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RoleResources {
    pub master: Resources,
    pub worker: Resources,
    pub database: Resources,
    /// Other containers in a Buildbot pod: the HorizontalPodAutoscaler needs a CPU request on
    /// every container of the pod, not only the main one.
    pub sidecar: Resources,
    /// Init containers of a Buildbot pod get the pod role's requests too: a ResourceQuota on
    /// requests rejects a pod in which any container has none. Init containers run one at a
    /// time before the others, so each is capped at what the pod's containers request
    /// together and costs no scheduling room. Sidecar init containers (`restartPolicy:
    /// Always`) run beside the others and get the sidecar requests.
    pub init_containers: bool,
}

impl Default for RoleResources {
    fn default() -> Self {
        let r = |cpu: &str, memory: &str| Resources {
            cpu: cpu.into(),
            memory: memory.into(),
        };
        Self {
            master: r("250m", "512Mi"),
            worker: r("500m", "1Gi"),
            database: r("100m", "256Mi"),
            sidecar: r("50m", "64Mi"),
            init_containers: true,
        }
    }
}

impl RoleResources {
    /// The defaults for a container of this role (`None`: a sidecar).
    pub fn for_role(&self, role: Option<Role>) -> &Resources {
        match role {
            Some(Role::Master) => &self.master,
            Some(Role::Worker) => &self.worker,
            Some(Role::Database) => &self.database,
            None => &self.sidecar,
        }
    }
}

/// Worker termination: enough grace for a build to finish, and a hook that drains the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GracefulStop {
    /// Raised to this when unset or at the API default of 30 seconds.
    pub termination_grace_period_seconds: i64,
    /// The master's web URL for the hook (e.g. `http://buildbot:8080/`). Unset, or when it
    /// does not answer, the hook tries in the pod `BUILDBOT_MASTER_URL`, then `BUILDMASTER`
    /// with `BUILDBOT_WEB_PORT`, 8080 (the official images) and 8010 (Buildbot's sample
    /// config): the first that answers as Buildbot's REST API is used.
    pub master_url: Option<String>,
    /// Replaces the built-in hook command entirely.
    pub pre_stop_command: Option<Vec<String>>,
}

impl Default for GracefulStop {
    fn default() -> Self {
        Self {
            termination_grace_period_seconds: 3600,
            master_url: None,
            pre_stop_command: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_policy() {
        assert_eq!(Policy::from_yaml("").unwrap(), Policy::default());
        assert_eq!(Policy::from_yaml("{}").unwrap(), Policy::default());
    }

    #[test]
    fn default_policy_round_trips_through_yaml() {
        let p = Policy::default();
        assert_eq!(Policy::from_yaml(&p.to_yaml()).unwrap(), p);
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let p = Policy::from_yaml("resources:\n  worker: {cpu: '2', memory: 4Gi}\n").unwrap();
        assert_eq!(p.resources.worker.cpu, "2");
        assert_eq!(p.resources.master, RoleResources::default().master);
    }

    #[test]
    fn typos_and_bad_values_are_rejected_with_the_field_name() {
        let e = Policy::from_yaml("mutations:\n  lables: false\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lables"), "{e}");
        let e = Policy::from_yaml("resources:\n  worker: {cpu: lots, memory: 1Gi}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("worker.cpu") && e.contains("lots"), "{e}");
        let e = Policy::from_yaml("gracefulStop:\n  preStopCommand: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("preStopCommand"), "{e}");
        assert!(Policy::from_yaml("gracefulStop: {terminationGracePeriodSeconds: 0}").is_err());
        let e = Policy::from_yaml("permissions: {fsGroupChangePolicy: Never}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fsGroupChangePolicy"), "{e}");
        let e = Policy::from_yaml("permissions: {chownVolumeTypes: [hostpath]}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"hostpath\"") && e.contains("hostPath"), "{e}");
    }
}
