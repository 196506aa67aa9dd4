//! What `kubectl buildbot deploy` builds: the user's choices, validated, and every name
//! derived from the installation name in one place.

use buildbot_policy::{PodSecurityLevel, Policy, Role};

/// The Buildbot version the default images and the tests use.
pub const BUILDBOT_VERSION: &str = "v4.3.0";
/// Buildbot's web port in the pods and on the Service.
pub const WEB_PORT: u16 = 8080;
/// Buildbot's worker (Perspective Broker) port.
pub const WORKER_PORT: u16 = 9989;
/// PostgreSQL's port.
pub const POSTGRES_PORT: u16 = 5432;
/// The database name and user of the bundled PostgreSQL.
pub const DB_NAME: &str = "buildbot";
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "kubectl-buildbot";
/// Where workers' passwords are mounted, one file per worker name.
pub const WORKER_SECRETS_DIR: &str = "/etc/buildbot/workers";
/// Where a worker pod keeps its own password and buildbot.tac: an in-memory emptyDir that the
/// `worker-password` init container fills from the Secret.
pub const WORKER_RUN_DIR: &str = "/run/buildbot";

/// Annotation on the master Deployment recording the worker mode, so that a re-deploy keeps
/// it like it keeps the worker count.
pub const WORKER_MODE_ANNOTATION: &str = "kubectl-buildbot.dev/worker-mode";

/// How workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WorkerMode {
    /// Long-running worker pods in a StatefulSet, scaled by hand or by an autoscaler.
    #[default]
    Static,
    /// A pod per build: the master creates it with Buildbot's KubeLatentWorker when a build
    /// starts and deletes it when the build ends, up to --max-workers at once.
    Latent,
}

impl WorkerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerMode::Static => "static",
            WorkerMode::Latent => "latent",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "static" => Some(WorkerMode::Static),
            "latent" => Some(WorkerMode::Latent),
            _ => None,
        }
    }
}

impl std::fmt::Display for WorkerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A PostgreSQL StatefulSet deployed alongside.
    Bundled { image: String, storage: String },
    /// An external database by SQLAlchemy URL (stored in a Secret by deploy).
    ExternalUrl(String),
    /// An external database whose URL is in an existing Secret's key.
    ExternalSecret { name: String, key: String },
}

/// Where master.cfg comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterConfig {
    /// The generated default (see `master_cfg.rs`).
    Generated,
    /// The user's own master.cfg, stored in the ConfigMap.
    File(String),
    /// Downloaded by the official image's entrypoint (`BUILDBOT_CONFIG_URL`).
    Url(String),
}

/// Everything deploy needs to build the manifests.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    pub name: String,
    pub namespace: String,
    pub master_image: String,
    pub worker_image: String,
    pub workers: u32,
    pub max_workers: u32,
    pub worker_mode: WorkerMode,
    pub database: Database,
    pub config: MasterConfig,
    pub network_policy: bool,
    pub master_storage: String,
    pub storage_class: Option<String>,
    /// `buildbotURL`: where users reach the web UI.
    pub web_url: String,
    /// The same policy the webhook applies to pods.
    pub policy: Policy,
    /// The namespace's Pod Security level (its `pod-security.kubernetes.io/enforce` label):
    /// nothing it forbids is rendered.
    pub pod_security: PodSecurityLevel,
}

/// A deploy request that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("invalid name {0:?}: use at most 40 lowercase letters, digits and '-', starting with a letter (it prefixes every object's name)")]
    Name(String),
    #[error("--workers {workers} is more than --max-workers {max}: master.cfg declares only {max} worker slots; raise --max-workers")]
    TooManyWorkers { workers: u32, max: u32 },
    #[error("--max-workers must be at least 1")]
    NoWorkerSlots,
    #[error("{flag} {value:?} is not a Kubernetes quantity (e.g. 8Gi)")]
    Quantity { flag: &'static str, value: String },
    #[error("--config-file is empty")]
    EmptyConfig,
    #[error("--workers has no meaning with --worker-mode latent: the master starts a pod per build, up to --max-workers at once; leave --workers out")]
    WorkersWithLatent,
}

impl DeploySpec {
    /// The defaults for an installation name and namespace.
    pub fn new(name: &str, namespace: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            master_image: format!("buildbot/buildbot-master:{BUILDBOT_VERSION}"),
            worker_image: format!("buildbot/buildbot-worker:{BUILDBOT_VERSION}"),
            workers: 1,
            max_workers: 4,
            worker_mode: WorkerMode::Static,
            database: Database::Bundled {
                image: "postgres:16".into(),
                storage: "8Gi".into(),
            },
            config: MasterConfig::Generated,
            network_policy: true,
            master_storage: "1Gi".into(),
            storage_class: None,
            web_url: format!("http://localhost:{WEB_PORT}/"),
            policy: Policy::default(),
            pod_security: PodSecurityLevel::default(),
        }
    }

    /// Checks what the API server would only reject half-way through.
    pub fn validate(&self) -> Result<(), SpecError> {
        let n = &self.name;
        let valid = !n.is_empty()
            && n.len() <= 40
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && !n.ends_with('-')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(SpecError::Name(n.clone()));
        }
        if self.max_workers == 0 {
            return Err(SpecError::NoWorkerSlots);
        }
        if self.worker_mode == WorkerMode::Latent && self.workers > 0 {
            return Err(SpecError::WorkersWithLatent);
        }
        if self.workers > self.max_workers {
            return Err(SpecError::TooManyWorkers {
                workers: self.workers,
                max: self.max_workers,
            });
        }
        let mut sizes = vec![("--master-storage", &self.master_storage)];
        if let Database::Bundled { storage, .. } = &self.database {
            sizes.push(("--database-storage", storage));
        }
        for (flag, value) in sizes {
            if buildbot_policy::quantity::parse(value).is_none_or(|v| v <= 0.0) {
                return Err(SpecError::Quantity {
                    flag,
                    value: value.clone(),
                });
            }
        }
        if matches!(&self.config, MasterConfig::File(text) if text.trim().is_empty()) {
            return Err(SpecError::EmptyConfig);
        }
        Ok(())
    }

    /// The master's Service, Deployment and the host workers connect to.
    pub fn master_name(&self) -> String {
        self.name.clone()
    }
    pub fn worker_name(&self) -> String {
        format!("{}-worker", self.name)
    }
    pub fn postgres_name(&self) -> String {
        format!("{}-postgres", self.name)
    }
    pub fn config_name(&self) -> String {
        format!("{}-config", self.name)
    }
    pub fn worker_secret_name(&self) -> String {
        format!("{}-workers", self.name)
    }
    pub fn database_secret_name(&self) -> String {
        format!("{}-database", self.name)
    }
    pub fn master_claim_name(&self) -> String {
        format!("{}-master", self.name)
    }
    /// The master's ServiceAccount (latent mode: it creates the worker pods).
    pub fn service_account_name(&self) -> String {
        format!("{}-master", self.name)
    }
    /// The Role and RoleBinding that let the master manage its worker pods (latent mode).
    pub fn latent_role_name(&self) -> String {
        format!("{}-latent-workers", self.name)
    }

    /// The Buildbot worker names, one per slot: the worker StatefulSet's pod names, and the
    /// latent workers' names (their pods are `buildbot-<name>-<master hash>`), so that the
    /// passwords are the same in both modes.
    pub fn worker_names(&self) -> Vec<String> {
        (0..self.max_workers)
            .map(|i| format!("{}-{i}", self.worker_name()))
            .collect()
    }

    /// The master's web URL inside the cluster (for the workers' preStop hook).
    pub fn master_url(&self) -> String {
        format!("http://{}:{WEB_PORT}/", self.master_name())
    }

    /// Labels every object carries; `role` picks out the component.
    pub fn labels(&self, role: Role) -> serde_json::Value {
        serde_json::json!({
            "app.kubernetes.io/name": "buildbot",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": role.component(),
            "app.kubernetes.io/part-of": "buildbot",
            "app.kubernetes.io/managed-by": FIELD_MANAGER,
        })
    }

    /// The selector that picks a component's pods (a subset of `labels`).
    pub fn selector(&self, role: Role) -> serde_json::Value {
        serde_json::json!({
            "app.kubernetes.io/name": "buildbot",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": role.component(),
        })
    }

    /// A label selector string for a component's pods.
    pub fn selector_string(&self, role: Role) -> String {
        format!(
            "{},app.kubernetes.io/component={}",
            self.instance_selector(),
            role.component()
        )
    }

    /// A label selector string for listing everything of this installation.
    pub fn instance_selector(&self) -> String {
        format!(
            "app.kubernetes.io/name=buildbot,app.kubernetes.io/instance={}",
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_installation_name() {
        let s = DeploySpec::new("ci", "build");
        assert_eq!(
            s.worker_names(),
            vec!["ci-worker-0", "ci-worker-1", "ci-worker-2", "ci-worker-3"]
        );
        assert_eq!(s.postgres_name(), "ci-postgres");
        assert_eq!(s.master_url(), "http://ci:8080/");
        s.validate().unwrap();
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_sent() {
        let mut s = DeploySpec::new("Buildbot", "x");
        assert!(matches!(s.validate(), Err(SpecError::Name(_))));
        s.name = "a".repeat(41);
        assert!(matches!(s.validate(), Err(SpecError::Name(_))));
        s.name = "bb".into();
        s.workers = 5;
        assert_eq!(
            s.validate(),
            Err(SpecError::TooManyWorkers { workers: 5, max: 4 })
        );
        s.workers = 1;
        s.master_storage = "lots".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--master-storage"));
        s.master_storage = "1Gi".into();
        s.config = MasterConfig::File("  \n".into());
        assert_eq!(s.validate(), Err(SpecError::EmptyConfig));
        s.config = MasterConfig::Generated;
        s.worker_mode = WorkerMode::Latent;
        assert_eq!(s.validate(), Err(SpecError::WorkersWithLatent));
        s.workers = 0;
        s.validate().unwrap();
    }
}
