//! Buildbot's REST API (`/api/v2`), reached through the API server's service proxy: no
//! port-forward and no network path from this machine to the master needed. Used by `status`
//! (workers, builds, queue) and `scale` (pause, unpause, running builds).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterError};
use crate::deploy::spec::DeploySpec;

/// The service-proxy path to one endpoint of the master's REST API.
pub fn rest_path(spec: &DeploySpec, namespace: &str, endpoint: &str) -> String {
    format!(
        "/api/v1/namespaces/{namespace}/services/{}:http/proxy/api/v2/{endpoint}",
        spec.master_name()
    )
}

/// The REST API's answers that `status` and `scale` read.
#[derive(Debug)]
pub struct Snapshot {
    pub workers: Value,
    pub builds: Value,
    pub buildrequests: Value,
    pub builders: Value,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            workers: Value::Null,
            builds: Value::Null,
            buildrequests: Value::Null,
            builders: Value::Null,
        }
    }
}

/// A running build, with names instead of ids.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct RunningBuild {
    pub builder: String,
    pub number: i64,
    pub worker: String,
}

impl Snapshot {
    fn list<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
        answer[key].as_array().map_or(&[], Vec::as_slice)
    }

    /// The `name` of the entry of `list` whose `key` is `id`, `?` when there is none.
    fn name_of(list: &[Value], key: &str, id: &Value) -> String {
        list.iter()
            .find(|x| &x[key] == id)
            .and_then(|x| x["name"].as_str())
            .unwrap_or("?")
            .to_string()
    }

    /// Every worker the master's configuration declares.
    pub fn workers_configured(&self) -> Vec<String> {
        Self::list(&self.workers, "workers")
            .iter()
            .filter_map(|w| w["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The workers connected to a master now.
    pub fn workers_connected(&self) -> Vec<String> {
        Self::list(&self.workers, "workers")
            .iter()
            .filter(|w| w["connected_to"].as_array().is_some_and(|c| !c.is_empty()))
            .filter_map(|w| w["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The unfinished builds (the snapshot asks for `complete=false`).
    pub fn running_builds(&self) -> Vec<RunningBuild> {
        let (workers, builders) = (
            Self::list(&self.workers, "workers"),
            Self::list(&self.builders, "builders"),
        );
        Self::list(&self.builds, "builds")
            .iter()
            .map(|b| RunningBuild {
                builder: Self::name_of(builders, "builderid", &b["builderid"]),
                number: b["number"].as_i64().unwrap_or(0),
                worker: Self::name_of(workers, "workerid", &b["workerid"]),
            })
            .collect()
    }

    /// Unclaimed build requests (the snapshot asks for `claimed=false`).
    pub fn build_requests_queued(&self) -> usize {
        Self::list(&self.buildrequests, "buildrequests").len()
    }
}

/// The master's REST API of one installation.
pub struct BuildbotApi<'a> {
    cluster: &'a Cluster,
    spec: &'a DeploySpec,
}

impl<'a> BuildbotApi<'a> {
    pub fn new(cluster: &'a Cluster, spec: &'a DeploySpec) -> Self {
        Self { cluster, spec }
    }

    fn path(&self, endpoint: &str) -> String {
        rest_path(self.spec, &self.cluster.namespace, endpoint)
    }

    /// One endpoint's answer; an answer that is not JSON is an error that names the path.
    pub async fn get(&self, endpoint: &str) -> Result<Value, String> {
        let path = self.path(endpoint);
        let text = self
            .cluster
            .get_text(&path, "Buildbot REST API")
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))
    }

    /// Workers, running builds, queued requests and builders, in that order.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        Ok(Snapshot {
            workers: self.get("workers").await?,
            builds: self.get("builds?complete=false").await?,
            buildrequests: self.get("buildrequests?claimed=false").await?,
            builders: self.get("builders").await?,
        })
    }

    /// The builds running on each of `workers` now: worker name → `["hello #12", ...]`.
    pub async fn running_builds_on(
        &self,
        workers: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
        let get = |endpoint: &'static str| async move {
            let text = self
                .cluster
                .get_text(&self.path(endpoint), "Buildbot REST API")
                .await?;
            Ok::<Value, ClusterError>(serde_json::from_str(&text).unwrap_or(Value::Null))
        };
        let snapshot = Snapshot {
            workers: get("workers").await?,
            builds: get("builds?complete=false").await?,
            builders: get("builders").await?,
            ..Snapshot::default()
        };
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for b in snapshot.running_builds() {
            if workers.contains(&b.worker) {
                out.entry(b.worker)
                    .or_default()
                    .push(format!("{} #{}", b.builder, b.number));
            }
        }
        Ok(out)
    }

    /// A worker control action (`pause`, `unpause`, `stop`), as Buildbot's JSON-RPC.
    pub async fn control(&self, worker: &str, method: &str) -> Result<(), ClusterError> {
        // Buildbot's pattern /workers/i:name: the name is the path segment itself.
        let body = json!({"jsonrpc": "2.0", "method": method, "id": 1, "params": {"reason": "kubectl buildbot scale"}});
        self.cluster
            .post_json(
                &self.path(&format!("workers/{worker}")),
                &body,
                "Buildbot worker control",
            )
            .await
            .map(|_| ())
    }
}
