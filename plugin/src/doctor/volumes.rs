//! BB04: hostPath and local volumes come up owned by root, Buildbot runs as uid 1000:
//! "permission denied". fsGroup does not reach hostPath; only a chown as root does.

use buildbot_policy::{Policy, Role};
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, PersistentVolume, PersistentVolumeClaim, Volume};

use super::inventory::{Inventory, Workload};
use super::webhook::coverage_note;
use super::{Code, Finding, Severity};

/// The node-local storage behind a pod volume: `hostPath /data/pv-3`, `local /mnt/disk`.
struct NodeLocal {
    /// `hostPath` or `local`.
    kind: &'static str,
    /// One path, or the candidates an unbound claim may bind.
    paths: Vec<String>,
    /// The PersistentVolume (and claim) it comes through, if any.
    through: Vec<String>,
}

fn pv_storage_kind(pv: &PersistentVolume) -> Option<&'static str> {
    let spec = pv.spec.as_ref()?;
    if spec.host_path.is_some() {
        Some("hostPath")
    } else {
        spec.local.as_ref().map(|_| "local")
    }
}

fn pv_storage(pv: &PersistentVolume) -> Option<(&'static str, String)> {
    let spec = pv.spec.as_ref()?;
    if let Some(h) = &spec.host_path {
        return Some(("hostPath", h.path.clone()));
    }
    spec.local.as_ref().map(|l| ("local", l.path.clone()))
}

/// Claims and volumes indexed once, so that each pod volume is looked up in constant time.
struct Storage<'a> {
    claims: HashMap<(&'a str, &'a str), &'a PersistentVolumeClaim>,
    by_name: HashMap<&'a str, &'a PersistentVolume>,
    by_claim: HashMap<(&'a str, &'a str), &'a PersistentVolume>,
    /// Unclaimed volumes by storage class: what an unbound claim among files binds to.
    unclaimed: HashMap<Option<&'a str>, Vec<&'a PersistentVolume>>,
    /// The classes whose unclaimed volumes are all node-local.
    all_node_local: HashMap<Option<&'a str>, bool>,
    live: bool,
}

impl<'a> Storage<'a> {
    fn new(inv: &'a Inventory) -> Self {
        let mut s = Storage {
            claims: HashMap::new(),
            by_name: HashMap::new(),
            by_claim: HashMap::new(),
            unclaimed: HashMap::new(),
            all_node_local: HashMap::new(),
            live: inv.live,
        };
        for c in &inv.claims {
            if let (Some(ns), Some(name)) =
                (c.metadata.namespace.as_deref(), c.metadata.name.as_deref())
            {
                s.claims.insert((ns, name), c);
            }
        }
        for pv in &inv.volumes {
            if let Some(name) = pv.metadata.name.as_deref() {
                s.by_name.insert(name, pv);
            }
            let spec = pv.spec.as_ref();
            match spec.and_then(|s| s.claim_ref.as_ref()) {
                Some(r) => {
                    if let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref()) {
                        s.by_claim.insert((ns, name), pv);
                    }
                }
                None => s
                    .unclaimed
                    .entry(spec.and_then(|s| s.storage_class_name.as_deref()))
                    .or_default()
                    .push(pv),
            }
        }
        s.all_node_local = s
            .unclaimed
            .iter()
            .map(|(class, pvs)| (*class, pvs.iter().all(|pv| pv_storage_kind(pv).is_some())))
            .collect();
        s
    }

    fn node_local(&self, ns: &str, v: &Volume) -> Option<NodeLocal> {
        if let Some(h) = &v.host_path {
            return Some(NodeLocal {
                kind: "hostPath",
                paths: vec![h.path.clone()],
                through: Vec::new(),
            });
        }
        let claim_name = v.persistent_volume_claim.as_ref()?.claim_name.as_str();
        let claim = self.claims.get(&(ns, claim_name));
        let claim_id = format!("PersistentVolumeClaim/{claim_name}");
        let bound = claim
            .and_then(|c| c.spec.as_ref()?.volume_name.as_deref())
            .filter(|n| !n.is_empty());
        // The volume the claim is bound to, else the one that names the claim.
        let pv = match bound {
            Some(name) => self.by_name.get(name),
            None => self.by_claim.get(&(ns, claim_name)),
        };
        if let Some(pv) = pv {
            let (kind, path) = pv_storage(pv)?;
            return Some(NodeLocal {
                kind,
                paths: vec![path],
                through: vec![claim_id, pv_id(pv)],
            });
        }
        // Files only (the seed's volumes.yaml): an unbound claim binds one of the unclaimed
        // volumes of its class. If they are all node-local, so is its volume.
        if self.live || bound.is_some() {
            return None;
        }
        let class = claim.and_then(|c| c.spec.as_ref()?.storage_class_name.as_deref());
        let candidates = self.unclaimed.get(&class)?;
        // All of them node-local, or the claim may get another kind of volume.
        let kind = pv_storage(candidates.first()?)?.0;
        if self.all_node_local.get(&class) != Some(&true) {
            return None;
        }
        let named = &candidates[..candidates.len().min(MAX_NAMED)];
        let mut paths: Vec<String> = named
            .iter()
            .filter_map(|pv| pv_storage(pv))
            .map(|(_, p)| p)
            .collect();
        let mut through = vec![claim_id];
        through.extend(named.iter().map(|pv| pv_id(pv)));
        if candidates.len() > MAX_NAMED {
            let more = format!("{} more", candidates.len() - MAX_NAMED);
            paths.push(more.clone());
            through.push(more);
        }
        Some(NodeLocal {
            kind,
            paths,
            through,
        })
    }
}

/// How many candidate volumes a finding names.
const MAX_NAMED: usize = 3;

fn pv_id(pv: &PersistentVolume) -> String {
    format!(
        "PersistentVolume/{}",
        pv.metadata.name.as_deref().unwrap_or("?")
    )
}

/// The uid a container runs as, when doctor knows it: its securityContext, the pod's, else
/// the Buildbot images' 1000. PostgreSQL's entrypoint starts as root and fixes its own data
/// directory, so a database container that sets no user is left alone.
fn uid_of(w: &Workload, c: &Container, role: Option<Role>, policy: &Policy) -> Option<i64> {
    let explicit = c
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .or_else(|| w.pod.spec.as_ref()?.security_context.as_ref()?.run_as_user);
    match (explicit, role) {
        (Some(uid), _) => Some(uid),
        (None, Some(r @ (Role::Master | Role::Worker))) => Some(policy.identity.for_role(r).uid),
        _ => None,
    }
}

/// Whether an init container running as root chowns this volume before the app starts.
fn chowned(w: &Workload, volume: &str) -> bool {
    w.init_containers().iter().any(|ic| {
        let mounts = ic
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|m| m.name == volume);
        let root = ic
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .or_else(|| w.pod.spec.as_ref()?.security_context.as_ref()?.run_as_user)
            .unwrap_or(0)
            == 0;
        let chowns = ic
            .command
            .iter()
            .chain(ic.args.iter())
            .flatten()
            .any(|a| a.contains("chown"));
        mounts && root && chowns
    })
}

pub fn check(inv: &Inventory, policy: &Policy, out: &mut Vec<Finding>) {
    let storage = Storage::new(inv);
    for w in &inv.workloads {
        let Some(spec) = w.pod.spec.as_ref() else {
            continue;
        };
        let volumes = spec.volumes.as_deref().unwrap_or_default();
        let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
        for (c, role) in w.containers().iter().zip(&w.containers) {
            let Some(uid) = uid_of(w, c, *role, policy).filter(|u| *u != 0) else {
                continue;
            };
            for m in c.volume_mounts.as_deref().unwrap_or_default() {
                if m.read_only == Some(true) {
                    continue;
                }
                let Some(v) = volumes.iter().find(|v| v.name == m.name) else {
                    continue;
                };
                let Some(local) = storage.node_local(&w.namespace, v) else {
                    continue;
                };
                // The kubelet applies fsGroup to local volumes, never to hostPath ones.
                if chowned(w, &v.name) || (local.kind == "local" && fs_group.is_some()) {
                    continue;
                }
                let mut objects = vec![w.id()];
                objects.extend(local.through.iter().cloned());
                let path = match local.paths.as_slice() {
                    [one] => one.clone(),
                    [first @ .., last] => format!("{} or {last}", first.join(", ")),
                    [] => String::new(),
                };
                let on_nodes = local.paths.join(" ");
                out.push(
                    Finding::new(
                        Code::VolumePermissions,
                        Severity::Error,
                        &w.namespace,
                        objects,
                    )
                    .trap(format!(
                        "container {} (uid {uid}) writes to {} volume {} owned by root",
                        c.name, local.kind, path
                    ))
                    .why(format!(
                        "{} {} is created by the node as root (0755); {} runs as uid {uid} \
                             and gets \"permission denied\" writing {}. fsGroup does not change \
                             {} ownership. {}",
                        local.kind,
                        path,
                        c.name,
                        m.mount_path,
                        if local.kind == "hostPath" {
                            "hostPath"
                        } else {
                            "unmanaged"
                        },
                        coverage_note(inv, w)
                    ))
                    .fix(format!(
                        "add an init container running as root that mounts volume {} and \
                             runs `chown -R {uid}:{uid} <mountPath>`, or `chown -R {uid}:{uid} \
                             {}` on every node",
                        v.name, on_nodes
                    ))
                    .automatic(
                        "the admission webhook adds that init container \
                                    (helm install buildbot-webhook charts/buildbot-webhook); \
                                    `kubectl buildbot preview -f FILE` shows it",
                    ),
                );
            }
        }
    }
}
