//! What a finding is: a code from the catalogue, a severity, the objects involved, why it
//! breaks and the exact fix.

use std::fmt;

use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// The catalogue of traps `doctor` knows, in the order of the seed write-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The master's Service does not expose the workers' port, or selects no master pod.
    MasterService,
    /// `BUILDMASTER`/`BUILDMASTER_PORT` do not lead to the master's workers' port.
    WorkerMasterAddress,
    /// The master cannot wait for its database: the seed's crash loop.
    DatabaseWait,
    /// Root-owned hostPath or local volumes for non-root containers.
    VolumePermissions,
    /// An autoscaler that can never compute its metric.
    Autoscaler,
    /// Workers killed in the middle of a build on scale-down or drain.
    WorkerGrace,
    /// The graceful-stop hook cannot reach the master.
    GracefulStopReach,
    /// Worker names that master.cfg and the pods do not agree on.
    WorkerNames,
    /// The admission webhook: missing, excluding the namespace, expiring, unready.
    Webhook,
    /// Requests a ResourceQuota needs; root where the image does not need it.
    PodHygiene,
    /// An opted-out pod that still has traps the webhook would fix.
    OptedOut,
}

impl Code {
    pub const ALL: [Code; 11] = [
        Code::MasterService,
        Code::WorkerMasterAddress,
        Code::DatabaseWait,
        Code::VolumePermissions,
        Code::Autoscaler,
        Code::WorkerGrace,
        Code::GracefulStopReach,
        Code::WorkerNames,
        Code::Webhook,
        Code::PodHygiene,
        Code::OptedOut,
    ];

    /// `BB01` .. `BB11`.
    pub fn id(self) -> &'static str {
        match self {
            Code::MasterService => "BB01",
            Code::WorkerMasterAddress => "BB02",
            Code::DatabaseWait => "BB03",
            Code::VolumePermissions => "BB04",
            Code::Autoscaler => "BB05",
            Code::WorkerGrace => "BB06",
            Code::GracefulStopReach => "BB07",
            Code::WorkerNames => "BB08",
            Code::Webhook => "BB09",
            Code::PodHygiene => "BB10",
            Code::OptedOut => "BB11",
        }
    }

    /// A short name, accepted by `--explain` as well as the id.
    pub fn slug(self) -> &'static str {
        match self {
            Code::MasterService => "master-service",
            Code::WorkerMasterAddress => "worker-master-address",
            Code::DatabaseWait => "database-wait",
            Code::VolumePermissions => "volume-permissions",
            Code::Autoscaler => "autoscaler",
            Code::WorkerGrace => "worker-grace",
            Code::GracefulStopReach => "graceful-stop-reach",
            Code::WorkerNames => "worker-names",
            Code::Webhook => "webhook",
            Code::PodHygiene => "pod-hygiene",
            Code::OptedOut => "opted-out",
        }
    }

    /// Finds a code by id (`BB04`, `bb4`, `4`) or slug.
    pub fn parse(s: &str) -> Option<Code> {
        let s = s.trim().to_ascii_lowercase();
        let number = s.trim_start_matches("bb").parse::<usize>().ok();
        Code::ALL
            .into_iter()
            .find(|c| c.slug() == s || number.is_some_and(|n| c.id()[2..].parse() == Ok(n)))
    }

    /// Whether the admission webhook fixes this trap when it covers the pod.
    pub fn fixed_by_webhook(self) -> bool {
        matches!(
            self,
            Code::VolumePermissions | Code::Autoscaler | Code::WorkerGrace | Code::PodHygiene
        )
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One trap found in one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub code: Code,
    /// The code's slug, for readers of the JSON.
    pub name: &'static str,
    pub severity: Severity,
    pub namespace: String,
    /// `Kind/name` of every object involved, the one to change first.
    pub objects: Vec<String>,
    /// The trap, in one line.
    pub trap: String,
    /// Why it breaks.
    pub why: String,
    /// The exact change that fixes it by hand.
    pub fix: String,
    /// What fixes it automatically (the webhook, a `deploy` flag, a `scale` mode), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic: Option<String>,
}

impl Finding {
    pub fn new(code: Code, severity: Severity, namespace: &str, objects: Vec<String>) -> Self {
        Self {
            code,
            name: code.slug(),
            severity,
            namespace: namespace.to_string(),
            objects,
            trap: String::new(),
            why: String::new(),
            fix: String::new(),
            automatic: None,
        }
    }

    pub fn trap(mut self, s: impl Into<String>) -> Self {
        self.trap = s.into();
        self
    }

    pub fn why(mut self, s: impl Into<String>) -> Self {
        self.why = s.into();
        self
    }

    pub fn fix(mut self, s: impl Into<String>) -> Self {
        self.fix = s.into();
        self
    }

    pub fn automatic(mut self, s: impl Into<String>) -> Self {
        self.automatic = Some(s.into());
        self
    }
}
