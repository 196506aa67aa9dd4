//! The objects doctor reads, sorted by what they are: Buildbot workloads (recognised with the
//! webhook's own rules), Services, autoscalers, config, storage, quotas, webhooks, events.
//! Files and a live cluster give the same inventory, so both modes find the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use buildbot_policy::{recognise, Policy, Recognised, Role, INJECT_KEY};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Event, LimitRange, PersistentVolume, PersistentVolumeClaim, Pod,
    ResourceQuota, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::preview::{as_created, object_id, template_path};

/// An object that is not what its kind says.
#[derive(Debug, thiserror::Error)]
#[error("{id} in namespace {namespace}: not a valid {kind}: {error}\n  hint: `kubectl apply --dry-run=server -f` shows what the API server would say")]
pub struct InvalidObject {
    pub id: String,
    pub namespace: String,
    pub kind: String,
    pub error: serde_json::Error,
}

/// A Buildbot pod or the pod template of a workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// The workload's replicas (`None` for a Pod, or when unset: 1).
    pub replicas: Option<i32>,
    /// The pod (or template) as it will run: with the webhook's mutations when the webhook
    /// covers it and it is not yet admitted.
    pub pod: Pod,
    /// As written, before any webhook.
    pub written: Pod,
    pub role: Role,
    /// `containers[i]` is the role of `spec.containers[i]` (`None`: a sidecar).
    pub containers: Vec<Option<Role>>,
    /// Why the webhook leaves it alone, if the user opted out.
    pub opted_out: Option<String>,
    /// A live pod: it runs as it is, admission is behind it.
    pub admitted: bool,
}

impl Workload {
    /// `Kind/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The pod's labels (the template's for a workload).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// The first container playing the pod's role.
    pub fn main_container(&self) -> Option<&Container> {
        let i = self.containers.iter().position(|r| *r == Some(self.role))?;
        self.pod.spec.as_ref()?.containers.get(i)
    }

    pub fn containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or(&[])
    }

    pub fn init_containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or(&[])
    }
}

/// Whether a Service's selector picks pods with these labels (an empty selector picks none).
pub fn selects(s: &Service, labels: &BTreeMap<String, String>) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|m| !m.is_empty())
        .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// A literal environment value of a container (`None` when unset or from a reference).
pub fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .as_deref()?
        .iter()
        .rev()
        .find(|e| e.name == name)?
        .value
        .as_deref()
}

/// Whether a container sets the variable at all (literal or reference).
pub fn has_env(c: &Container, name: &str) -> bool {
    c.env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|e| e.name == name)
}

/// An autoscaler of any kind, reduced to what doctor checks.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    /// `HorizontalPodAutoscaler/name` or `ScaledObject/name`.
    pub id: String,
    pub namespace: String,
    pub target_kind: String,
    pub target_name: String,
    /// Resource metrics on utilisation (`cpu`, `memory`): they need requests.
    pub utilisation: Vec<String>,
    /// External, Pods or Object metrics: they need a metrics adapter (or KEDA).
    pub external: bool,
    pub keda: bool,
}

/// Everything doctor reads, by namespace where it matters.
#[derive(Debug, Default)]
pub struct Inventory {
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    pub autoscalers: Vec<Autoscaler>,
    pub config_maps: Vec<ConfigMap>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub volumes: Vec<PersistentVolume>,
    pub quotas: Vec<ResourceQuota>,
    pub limit_ranges: Vec<LimitRange>,
    /// Namespace labels, for the namespaces whose Namespace object was read.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub webhooks: Vec<MutatingWebhookConfiguration>,
    pub events: Vec<Event>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// `v1beta1.metrics.k8s.io` etc. and whether each is Available (live mode only).
    pub api_services: Option<BTreeMap<String, bool>>,
    /// Whether the objects come from a cluster (so an absent object is really absent).
    pub live: bool,
    /// Whether the MutatingWebhookConfigurations are known: some are among the files, or the
    /// cluster's list was read.
    pub webhooks_known: bool,
    /// The namespaces any namespaced object was read from: only there is an absent Service
    /// really absent.
    pub namespaces_read: BTreeSet<String>,
    /// Every workload and pod read, Buildbot or not: `(namespace, kind, name)`.
    pub all_workloads: BTreeSet<(String, String, String)>,
    /// Kinds read but not checked, with counts.
    pub ignored: BTreeMap<String, usize>,
    /// `(namespace, label key, value)` to the workloads whose pods carry it (see [`Inventory::index`]).
    label_index: HashMap<(String, String, String), Vec<usize>>,
    /// For each Service (same order), the roles of the workloads it selects.
    service_roles: Vec<BTreeSet<Role>>,
    /// Services by namespace, and by namespace and name.
    services_by_namespace: HashMap<String, Vec<usize>>,
    services_by_name: HashMap<(String, String), usize>,
    /// Workloads by namespace.
    workloads_by_namespace: HashMap<String, Vec<usize>>,
    /// Workloads by `(namespace, kind, name)`.
    workloads_by_id: HashMap<(String, String, String), usize>,
    /// Autoscalers by their target `(namespace, kind, name)`.
    autoscalers_by_target: HashMap<(String, String, String), Vec<usize>>,
}

/// Kinds whose objects are owned by another kind doctor reads: reading both would report
/// every trap twice.
const CONTROLLERS: [&str; 6] = [
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
];

fn typed<T: DeserializeOwned>(obj: &Value, namespace: &str) -> Result<T, InvalidObject> {
    owned(obj.clone(), namespace)
}

fn owned<T: DeserializeOwned>(obj: Value, namespace: &str) -> Result<T, InvalidObject> {
    let id = object_id(&obj);
    let kind = obj["kind"].as_str().unwrap_or("?").to_string();
    serde_json::from_value(obj).map_err(|error| InvalidObject {
        id,
        namespace: namespace.to_string(),
        kind,
        error,
    })
}

fn owned_by_controller(obj: &Value) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| {
            o["controller"].as_bool() == Some(true)
                && o["kind"].as_str().is_some_and(|k| CONTROLLERS.contains(&k))
        })
}

impl Inventory {
    /// Sorts `objects` (files or a cluster's) into an inventory. Objects without a namespace
    /// are in `default_namespace`. `live` says the objects are a cluster's.
    pub fn build(
        objects: &[Value],
        default_namespace: &str,
        policy: &Policy,
        live: bool,
    ) -> Result<Self, InvalidObject> {
        let mut inv = Inventory {
            live,
            ..Inventory::default()
        };
        inv.extend(objects, default_namespace, policy)?;
        Ok(inv)
    }

    /// Adds more objects (a cluster's, read after the first ones).
    pub fn extend(
        &mut self,
        objects: &[Value],
        default_namespace: &str,
        policy: &Policy,
    ) -> Result<(), InvalidObject> {
        for obj in objects {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let namespace = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or(default_namespace)
                .to_string();
            if !matches!(
                kind,
                "Namespace" | "PersistentVolume" | "MutatingWebhookConfiguration"
            ) {
                self.namespaces_read.insert(namespace.clone());
            }
            let with_ns = || {
                let mut o = obj.clone();
                if o["metadata"].is_object() && kind != "Namespace" {
                    o["metadata"]["namespace"] = Value::String(namespace.clone());
                }
                o
            };
            match kind {
                _ if template_path(kind).is_some() => {
                    self.all_workloads.insert((
                        namespace.clone(),
                        kind.to_string(),
                        obj["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ));
                    if !(self.live && owned_by_controller(obj)) {
                        self.add_workload(obj, &namespace, policy)?;
                    }
                }
                "Service" => self.services.push(owned(with_ns(), &namespace)?),
                "ConfigMap" => self.config_maps.push(owned(with_ns(), &namespace)?),
                "PersistentVolumeClaim" => self.claims.push(owned(with_ns(), &namespace)?),
                "PersistentVolume" => self.volumes.push(typed(obj, &namespace)?),
                "ResourceQuota" => self.quotas.push(owned(with_ns(), &namespace)?),
                "LimitRange" => self.limit_ranges.push(owned(with_ns(), &namespace)?),
                "Event" => self.events.push(owned(with_ns(), &namespace)?),
                "EndpointSlice" => self.endpoint_slices.push(owned(with_ns(), &namespace)?),
                "MutatingWebhookConfiguration" => {
                    self.webhooks_known = true;
                    self.webhooks.push(typed(obj, &namespace)?);
                }
                "Namespace" => {
                    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                    let mut labels: BTreeMap<String, String> =
                        serde_json::from_value(obj["metadata"]["labels"].clone())
                            .unwrap_or_default();
                    labels.insert("kubernetes.io/metadata.name".into(), name.into());
                    self.namespace_labels.insert(name.into(), labels);
                }
                "HorizontalPodAutoscaler" => self.autoscalers.push(hpa(obj, &namespace)),
                "ScaledObject" => self.autoscalers.push(scaled_object(obj, &namespace)),
                _ => *self.ignored.entry(kind.to_string()).or_default() += 1,
            }
        }
        Ok(())
    }

    fn add_workload(
        &mut self,
        obj: &Value,
        namespace: &str,
        policy: &Policy,
    ) -> Result<(), InvalidObject> {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let path = template_path(kind).unwrap_or(&[]);
        let template = path.iter().fold(obj, |v, k| &v[*k]);
        if !template.is_object() {
            return Ok(());
        }
        // As the controller creates it: a StatefulSet's pods also mount their claim templates.
        let pod: Pod = owned(as_created(kind, obj, template), namespace)?;
        let Recognised::Buildbot {
            role, containers, ..
        } = recognise(&pod, &policy.recognition)
        else {
            return Ok(());
        };
        let annotations = pod.metadata.annotations.as_ref();
        let opted_out = annotations
            .and_then(|a| a.get(INJECT_KEY))
            .filter(|v| v.trim().eq_ignore_ascii_case("false"))
            .map(|_| format!("annotation {INJECT_KEY}=false"));
        self.workloads.push(Workload {
            kind: kind.to_string(),
            name: obj["metadata"]["name"]
                .as_str()
                .or_else(|| obj["metadata"]["generateName"].as_str())
                .unwrap_or("?")
                .to_string(),
            namespace: namespace.to_string(),
            replicas: obj["spec"]["replicas"]
                .as_i64()
                .and_then(|r| i32::try_from(r).ok()),
            written: pod.clone(),
            pod,
            role,
            containers,
            opted_out,
            admitted: self.live && kind == "Pod",
        });
        Ok(())
    }

    /// Indexes which workloads each Service selects, once the pods are final (after the
    /// webhook's mutations): selector checks are then proportional to what a selector
    /// matches, not to every workload of the namespace.
    pub fn index(&mut self) {
        self.label_index.clear();
        self.workloads_by_id = self
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| ((w.namespace.clone(), w.kind.clone(), w.name.clone()), i))
            .collect();
        self.workloads_by_namespace.clear();
        for (i, w) in self.workloads.iter().enumerate() {
            self.workloads_by_namespace
                .entry(w.namespace.clone())
                .or_default()
                .push(i);
            for (k, v) in w.labels() {
                self.label_index
                    .entry((w.namespace.clone(), k.clone(), v.clone()))
                    .or_default()
                    .push(i);
            }
        }
        self.services_by_namespace.clear();
        self.services_by_name.clear();
        for (i, svc) in self.services.iter().enumerate() {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let name = svc.metadata.name.clone().unwrap_or_default();
            self.services_by_namespace
                .entry(ns.clone())
                .or_default()
                .push(i);
            self.services_by_name.insert((ns, name), i);
        }
        self.autoscalers_by_target.clear();
        for (i, a) in self.autoscalers.iter().enumerate() {
            self.autoscalers_by_target
                .entry((
                    a.namespace.clone(),
                    a.target_kind.clone(),
                    a.target_name.clone(),
                ))
                .or_default()
                .push(i);
        }
        self.service_roles = self
            .services
            .iter()
            .map(|s| self.selected_by(s).map(|w| w.role).collect())
            .collect();
    }

    /// The workloads a Service selects (none without a selector).
    pub fn selected_by<'a>(&'a self, s: &'a Service) -> impl Iterator<Item = &'a Workload> + 'a {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        let selector = s
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|m| !m.is_empty());
        // The rarest of the selector's pairs gives the candidates.
        let candidates: &[usize] = selector
            .and_then(|sel| {
                sel.iter()
                    .map(|(k, v)| {
                        self.label_index
                            .get(&(ns.to_string(), k.clone(), v.clone()))
                            .map_or(&[][..], Vec::as_slice)
                    })
                    .min_by_key(|c| c.len())
            })
            .unwrap_or(&[]);
        candidates
            .iter()
            .map(|i| &self.workloads[*i])
            .filter(move |w| selects(s, w.labels()))
    }

    /// The Services of a namespace that select a workload of this role.
    pub fn services_for<'a>(
        &'a self,
        namespace: &'a str,
        role: Role,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services_by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(move |i| self.service_roles[**i].contains(&role))
            .map(|i| &self.services[*i])
    }

    /// The namespaces that hold Buildbot workloads.
    pub fn buildbot_namespaces(&self) -> BTreeSet<&str> {
        self.workloads
            .iter()
            .map(|w| w.namespace.as_str())
            .collect()
    }

    /// The labels of a namespace: its object's, else only the name label the API server sets.
    pub fn labels_of_namespace(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespace_labels
            .get(namespace)
            .cloned()
            .unwrap_or_else(|| {
                BTreeMap::from([("kubernetes.io/metadata.name".into(), namespace.into())])
            })
    }

    pub fn workloads_in<'a>(
        &'a self,
        namespace: &'a str,
        role: Role,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        self.workloads_by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|i| &self.workloads[*i])
            .filter(move |w| w.role == role)
    }

    pub fn services_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services_by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|i| &self.services[*i])
    }

    /// A Buildbot workload by namespace, kind and name.
    pub fn workload(&self, namespace: &str, kind: &str, name: &str) -> Option<&Workload> {
        self.workloads_by_id
            .get(&(namespace.to_string(), kind.to_string(), name.to_string()))
            .map(|i| &self.workloads[*i])
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services_by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.services[*i])
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.name.as_deref() == Some(name)
        })
    }

    /// The autoscalers that scale a workload.
    pub fn autoscalers_of<'a>(&'a self, w: &'a Workload) -> impl Iterator<Item = &'a Autoscaler> {
        self.autoscalers_by_target
            .get(&(w.namespace.clone(), w.kind.clone(), w.name.clone()))
            .into_iter()
            .flatten()
            .map(|i| &self.autoscalers[*i])
    }

    /// How sure doctor can be that an object is absent: in a cluster it is; among files it
    /// may be in a file not given.
    pub fn absent_severity(&self) -> super::Severity {
        if self.live {
            super::Severity::Error
        } else {
            super::Severity::Warning
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// An HPA of autoscaling/v1 or v2. Without metrics the API defaults to 80 % CPU.
fn hpa(obj: &Value, namespace: &str) -> Autoscaler {
    let spec = &obj["spec"];
    let mut utilisation = Vec::new();
    let mut external = false;
    if spec["targetCPUUtilizationPercentage"].is_number() {
        utilisation.push("cpu".to_string());
    }
    for m in spec["metrics"].as_array().into_iter().flatten() {
        let resource = match m["type"].as_str() {
            Some("Resource") => &m["resource"],
            Some("ContainerResource") => &m["containerResource"],
            Some(_) => {
                external = true;
                continue;
            }
            None => continue,
        };
        // v2 nests the target; v2beta1 had targetAverageUtilization. Average values need
        // no request.
        if resource["target"]["type"].as_str() == Some("Utilization")
            || resource["targetAverageUtilization"].is_number()
        {
            utilisation.push(str_of(&resource["name"]));
        }
    }
    if utilisation.is_empty() && !external {
        utilisation.push("cpu".into());
    }
    Autoscaler {
        id: object_id(obj),
        namespace: namespace.to_string(),
        target_kind: str_of(&spec["scaleTargetRef"]["kind"]),
        target_name: str_of(&spec["scaleTargetRef"]["name"]),
        utilisation,
        external,
        keda: false,
    }
}

/// A KEDA ScaledObject: cpu and memory triggers are utilisation unless `metricType` says
/// otherwise; every other trigger is an external metric served by KEDA.
fn scaled_object(obj: &Value, namespace: &str) -> Autoscaler {
    let spec = &obj["spec"];
    let mut utilisation = Vec::new();
    let mut external = false;
    for t in spec["triggers"].as_array().into_iter().flatten() {
        match t["type"].as_str() {
            Some(r @ ("cpu" | "memory"))
                if t["metricType"].as_str().unwrap_or("Utilization") == "Utilization" =>
            {
                utilisation.push(r.to_string());
            }
            Some("cpu" | "memory") => {}
            _ => external = true,
        }
    }
    Autoscaler {
        id: object_id(obj),
        namespace: namespace.to_string(),
        target_kind: spec["scaleTargetRef"]["kind"]
            .as_str()
            .unwrap_or("Deployment")
            .to_string(),
        target_name: str_of(&spec["scaleTargetRef"]["name"]),
        utilisation,
        external,
        keda: true,
    }
}
