//! The plugin's only door to the API server: connecting with kubectl's flags, server-side
//! apply with our field manager, get and delete of the kinds we build, and errors that name
//! the object and say what to do.

use std::path::Path;
use std::time::Duration;

use buildbot_policy::PodSecurityLevel;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind, NamespaceResourceScope};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::deploy::spec::FIELD_MANAGER;

/// A failure talking to the cluster, said so that the user knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot load the kubeconfig: {0}\n  hint: pass --kubeconfig FILE or --context NAME, or set KUBECONFIG; without a cluster use --dry-run=client -o yaml")]
    Config(String),
    #[error("{action} {object} in namespace {namespace}: forbidden: {message}\n  hint: check with `kubectl auth can-i {verb} {resource} -n {namespace}` and ask your cluster administrator for that permission")]
    Forbidden {
        action: &'static str,
        verb: &'static str,
        object: String,
        resource: String,
        namespace: String,
        message: String,
    },
    #[error("{action} {object}: not authenticated: {message}\n  hint: your kubeconfig's credentials were refused; log in again")]
    Unauthorized {
        action: &'static str,
        object: String,
        message: String,
    },
    #[error("{action} {object}: namespace {namespace} does not exist\n  hint: create it with `kubectl create namespace {namespace}` or pick another with -n")]
    NoNamespace {
        action: &'static str,
        object: String,
        namespace: String,
    },
    #[error("{action} {object}: conflict: {message}\n  hint: another field manager owns these fields; rerun, or remove the other manager's fields")]
    Conflict {
        action: &'static str,
        object: String,
        message: String,
    },
    #[error("{action} {object}: rejected as invalid: {message}")]
    Invalid {
        action: &'static str,
        object: String,
        message: String,
    },
    #[error("{action} {object}: the API server answered {code}: {message}")]
    Api {
        action: &'static str,
        object: String,
        code: u16,
        message: String,
    },
    #[error("{kind} ({api_version}) is not a kind kubectl-buildbot manages\n  hint: this is a bug in kubectl-buildbot; please report it")]
    UnknownKind { api_version: String, kind: String },
    #[error("{action} {object}: no answer from the API server: {message}\n  hint: check that the cluster of context {context:?} is reachable (kubectl cluster-info)")]
    Unreachable {
        action: &'static str,
        object: String,
        context: String,
        message: String,
    },
}

/// The API resource of a kind we build or read (deploy's objects, doctor's inputs), from the
/// types' own metadata: no plural is guessed. `None` for a kind this plugin does not know.
pub fn api_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    use k8s_openapi::api::{
        admissionregistration, apps, autoscaling, batch, core, discovery, networking, rbac,
    };
    fn of<K: kube::Resource<DynamicType = ()>>() -> ApiResource {
        ApiResource::erase::<K>(&())
    }
    // Kinds without a k8s-openapi type (a CRD, an aggregated API).
    let named = |group: &str, version: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    };
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => of::<core::v1::ConfigMap>(),
        ("v1", "Event") => of::<core::v1::Event>(),
        ("v1", "LimitRange") => of::<core::v1::LimitRange>(),
        ("v1", "Namespace") => of::<core::v1::Namespace>(),
        ("v1", "PersistentVolume") => of::<core::v1::PersistentVolume>(),
        ("v1", "PersistentVolumeClaim") => of::<core::v1::PersistentVolumeClaim>(),
        ("v1", "Pod") => of::<core::v1::Pod>(),
        ("v1", "ResourceQuota") => of::<core::v1::ResourceQuota>(),
        ("v1", "Secret") => of::<core::v1::Secret>(),
        ("v1", "Service") => of::<core::v1::Service>(),
        ("v1", "ServiceAccount") => of::<core::v1::ServiceAccount>(),
        ("apps/v1", "DaemonSet") => of::<apps::v1::DaemonSet>(),
        ("apps/v1", "Deployment") => of::<apps::v1::Deployment>(),
        ("apps/v1", "ReplicaSet") => of::<apps::v1::ReplicaSet>(),
        ("apps/v1", "StatefulSet") => of::<apps::v1::StatefulSet>(),
        ("batch/v1", "CronJob") => of::<batch::v1::CronJob>(),
        ("batch/v1", "Job") => of::<batch::v1::Job>(),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            of::<autoscaling::v2::HorizontalPodAutoscaler>()
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => of::<discovery::v1::EndpointSlice>(),
        ("networking.k8s.io/v1", "NetworkPolicy") => of::<networking::v1::NetworkPolicy>(),
        ("rbac.authorization.k8s.io/v1", "Role") => of::<rbac::v1::Role>(),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => of::<rbac::v1::RoleBinding>(),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            of::<admissionregistration::v1::MutatingWebhookConfiguration>()
        }
        ("keda.sh/v1alpha1", "ScaledObject") => named("keda.sh", "v1alpha1", "scaledobjects"),
        ("apiregistration.k8s.io/v1", "APIService") => {
            named("apiregistration.k8s.io", "v1", "apiservices")
        }
        _ => return None,
    })
}

/// Loads the kubeconfig like kubectl: `--kubeconfig` (else `$KUBECONFIG`, else
/// `~/.kube/config`, else in-cluster) and `--context`.
pub async fn load_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Config, ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| ClusterError::Config(e.to_string()))
        }
        None => match kube::Config::from_kubeconfig(&options).await {
            Ok(c) => Ok(c),
            Err(e) if context.is_none() => {
                kube::Config::incluster().map_err(|_| ClusterError::Config(e.to_string()))
            }
            Err(e) => Err(ClusterError::Config(e.to_string())),
        },
    }
}

/// A namespaced kind that can be read typed (every k8s-openapi namespaced type).
pub trait Namespaced:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// A connected client and the namespace to work in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The same connection without kube's retries, for raw paths (the service proxy to
    /// Buildbot, logs): there a 503 means "the master has no ready endpoint", and retrying it
    /// with kube's default backoff (15 retries, up to 1000 s apart) hung `status` for minutes.
    raw: Client,
    pub namespace: String,
    /// The context name, for messages.
    pub context: String,
}

impl Cluster {
    /// Connects like kubectl ([`load_config`]), in `-n` (else the context's namespace, else
    /// `default`).
    pub async fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Self, ClusterError> {
        let mut config = load_config(kubeconfig, context).await?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| config.default_namespace.clone());
        let mut raw_config = config.clone();
        raw_config.default_retry = false;
        let raw = Client::try_from(raw_config).map_err(|e| ClusterError::Config(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Self {
            client,
            raw,
            namespace,
            context: context.unwrap_or("(current)").to_string(),
        })
    }

    /// The same connection, working in another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            ..self.clone()
        }
    }

    /// For tests: a cluster over any client (a tower-test mock).
    pub fn from_client(client: Client, namespace: &str) -> Self {
        Self {
            raw: client.clone(),
            client,
            namespace: namespace.to_string(),
            context: "test".into(),
        }
    }

    /// The dynamic API of a kind we build (see [`api_resource`]).
    #[allow(
        clippy::result_large_err,
        reason = "ClusterError is the one error every call here returns; it is built once per failure"
    )]
    fn api(&self, api_version: &str, kind: &str) -> Result<Api<DynamicObject>, ClusterError> {
        let resource =
            api_resource(api_version, kind).ok_or_else(|| ClusterError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &resource,
        ))
    }

    /// The typed API of a namespaced kind.
    fn typed<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Turns a client error into one that names the object and the fix.
    pub fn explain(
        &self,
        e: kube::Error,
        action: &'static str,
        verb: &'static str,
        kind: &str,
        name: &str,
    ) -> ClusterError {
        self.explain_as(e, action, verb, kind, name, &plural(kind))
    }

    /// [`Cluster::explain`], with the RBAC resource to name in the hint (`services/proxy`).
    fn explain_as(
        &self,
        e: kube::Error,
        action: &'static str,
        verb: &'static str,
        kind: &str,
        name: &str,
        resource: &str,
    ) -> ClusterError {
        let object = if name.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}/{name}")
        };
        let namespace = self.namespace.clone();
        match e {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                match status.code {
                    401 => ClusterError::Unauthorized {
                        action,
                        object,
                        message,
                    },
                    // RBAC says "User ... cannot VERB resource ..."; any other 403 (the
                    // service proxy refusing a destination, say) is reported as it is.
                    403 if !message.contains("cannot ") => ClusterError::Api {
                        action,
                        object,
                        code: 403,
                        message,
                    },
                    403 => ClusterError::Forbidden {
                        action,
                        verb,
                        object,
                        resource: resource.to_string(),
                        namespace,
                        message,
                    },
                    404 if namespace_missing(&status) => ClusterError::NoNamespace {
                        action,
                        object,
                        namespace,
                    },
                    409 => ClusterError::Conflict {
                        action,
                        object,
                        message,
                    },
                    422 => ClusterError::Invalid {
                        action,
                        object,
                        message,
                    },
                    code => ClusterError::Api {
                        action,
                        object,
                        code,
                        message,
                    },
                }
            }
            other => ClusterError::Unreachable {
                action,
                object,
                context: self.context.clone(),
                message: other.to_string(),
            },
        }
    }

    /// Server-side apply of one object with our field manager, taking ownership of its
    /// fields (`force`). `dry_run` asks the server to validate without persisting.
    pub async fn apply(&self, obj: &Value, dry_run: bool) -> Result<Value, ClusterError> {
        let (api_version, kind, name) = identity(obj);
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let action = if dry_run { "checking" } else { "applying" };
        let applied = self
            .api(api_version, kind)?
            .patch(name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| self.explain(e, action, "patch", kind, name))?;
        Ok(serde_json::to_value(applied).unwrap_or_default())
    }

    /// The object, or `None` when it does not exist.
    pub async fn get<K>(&self, name: &str) -> Result<Option<K>, ClusterError>
    where
        K: Namespaced,
    {
        self.typed::<K>()
            .get_opt(name)
            .await
            .map_err(|e| self.explain(e, "reading", "get", &K::kind(&()), name))
    }

    /// The Pod Security level of the namespace (its `pod-security.kubernetes.io/enforce`
    /// label). `Err` with the reason when it cannot be read (no permission to get
    /// namespaces, a namespace that does not exist yet, an unknown level).
    pub async fn pod_security_level(&self) -> Result<PodSecurityLevel, String> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.get_opt(&self.namespace).await {
            Ok(Some(ns)) => PodSecurityLevel::of_namespace(ns.metadata.labels.iter().flatten()),
            Ok(None) => Err(format!("namespace {} does not exist", self.namespace)),
            Err(e) => Err(self
                .explain(e, "reading", "get", "Namespace", &self.namespace)
                .to_string()),
        }
    }

    /// Whether an object of a kind without a k8s-openapi type (KEDA's) exists.
    pub async fn exists(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<bool, ClusterError> {
        match self.api(api_version, kind)?.get_opt(name).await {
            Ok(found) => Ok(found.is_some()),
            Err(e) => Err(self.explain(e, "reading", "get", kind, name)),
        }
    }

    /// Deletes one object; `Ok(false)` when it was already gone.
    pub async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<bool, ClusterError> {
        let params = DeleteParams {
            dry_run,
            ..DeleteParams::background()
        };
        match self.api(api_version, kind)?.delete(name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 && !namespace_missing(&s) => Ok(false),
            Err(e) => Err(self.explain(
                e,
                if dry_run {
                    "checking deletion of"
                } else {
                    "deleting"
                },
                "delete",
                kind,
                name,
            )),
        }
    }

    /// Objects of a kind matching a label selector.
    pub async fn list<K>(&self, selector: &str) -> Result<Vec<K>, ClusterError>
    where
        K: Namespaced,
    {
        self.list_with(kube::api::ListParams::default().labels(selector), selector)
            .await
    }

    /// Objects of a kind matching a field selector (`reason=FailedCreate`).
    pub async fn list_by_fields<K>(&self, fields: &str) -> Result<Vec<K>, ClusterError>
    where
        K: Namespaced,
    {
        self.list_with(kube::api::ListParams::default().fields(fields), fields)
            .await
    }

    async fn list_with<K>(
        &self,
        params: kube::api::ListParams,
        selector: &str,
    ) -> Result<Vec<K>, ClusterError>
    where
        K: Namespaced,
    {
        self.typed::<K>()
            .list(&params)
            .await
            .map(|list| list.items)
            .map_err(|e| self.explain(e, "listing", "list", &K::kind(&()), selector))
    }

    /// Every object of a kind, as JSON with its `apiVersion` and `kind`: in the namespace,
    /// or in all namespaces (`all`), with optional label and field selectors. `Ok(None)`
    /// when the cluster does not serve the kind (a CRD that is not installed).
    pub async fn list_values(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        all: bool,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Option<Vec<Value>>, ClusterError> {
        let api: Api<DynamicObject> = if namespaced && !all {
            Api::namespaced_with(self.client.clone(), &self.namespace, resource)
        } else {
            Api::all_with(self.client.clone(), resource)
        };
        let mut params = kube::api::ListParams::default();
        if let Some(l) = labels {
            params = params.labels(l);
        }
        if let Some(f) = fields {
            params = params.fields(f);
        }
        match api.list(&params).await {
            Ok(list) => Ok(Some(
                list.items
                    .into_iter()
                    .map(|o| {
                        let mut v = serde_json::to_value(o).unwrap_or_default();
                        v["apiVersion"] = Value::String(resource.api_version.clone());
                        v["kind"] = Value::String(resource.kind.clone());
                        v
                    })
                    .collect(),
            )),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => {
                Err(self.explain_as(e, "listing", "list", &resource.kind, "", &resource.plural))
            }
        }
    }

    /// Sets a workload's replicas through its `scale` subresource (a merge patch, as
    /// `kubectl scale` does).
    pub async fn scale(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        replicas: u32,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let mut params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        params.dry_run = dry_run;
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        self.api(api_version, kind)?
            .patch_scale(name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| self.explain(e, "scaling", "patch", kind, name))
    }

    /// A POST of JSON through the API server (the service proxy): the answer as JSON.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<Value, ClusterError> {
        let request = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
            .expect("a valid request");
        let text =
            self.raw.request_text(request).await.map_err(|e| {
                self.explain_as(e, "calling", "create", what, "", path_resource(path))
            })?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET through the API server (logs, service proxy): the body as text.
    pub async fn get_text(&self, path: &str, what: &str) -> Result<String, ClusterError> {
        let request = http::Request::get(path)
            .body(Vec::new())
            .expect("a valid request");
        self.raw
            .request_text(request)
            .await
            .map_err(|e| self.explain_as(e, "reading", "get", what, "", path_resource(path)))
    }
}

/// The RBAC resource a raw API path needs, for `kubectl auth can-i` hints.
fn path_resource(path: &str) -> &'static str {
    if path.contains("/proxy/") {
        "services/proxy"
    } else if path.contains("/log") {
        "pods/log"
    } else {
        "apigroups"
    }
}

/// The resource name of a kind, for `kubectl auth can-i` hints.
fn plural(kind: &str) -> String {
    [
        "v1",
        "apps/v1",
        "autoscaling/v2",
        "networking.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "keda.sh/v1alpha1",
    ]
    .iter()
    .find_map(|v| api_resource(v, kind))
    .map_or_else(|| kind.to_ascii_lowercase(), |r| r.plural)
}

/// A 404 about the namespace rather than the object.
fn namespace_missing(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|d| d.kind == "namespaces")
}

/// `(apiVersion, kind, name)` of an object built by deploy.
pub fn identity(obj: &Value) -> (&str, &str, &str) {
    (
        obj["apiVersion"].as_str().unwrap_or("v1"),
        obj["kind"].as_str().unwrap_or_default(),
        obj["metadata"]["name"].as_str().unwrap_or_default(),
    )
}
