//! Volume permissions: Buildbot runs as uid 1000, PostgreSQL as 999, volumes often come up
//! owned by root ("permission denied"). fsGroup fixes the volume types the kubelet manages;
//! an init container chowns the ones it does not reach (hostPath, and claims backed by
//! hostPath as on minikube and kind).

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, PodSecurityContext, SecurityContext, Volume};
use serde_json::{json, Map, Value};

use super::patch::object;

use super::config::UserGroup;
use super::{containers, Ctx, Mutation, PodSecurityLevel, Role};

/// Name of the injected init container; its presence means the pod was already handled.
pub const INIT_CONTAINER_NAME: &str = "buildbot-volume-permissions";
/// Where the init container mounts the volumes it fixes.
const MOUNT_ROOT: &str = "/kubectl-buildbot/volumes";

fn pod_sc<'a>(ctx: &Ctx<'a>) -> Option<&'a PodSecurityContext> {
    ctx.pod.spec.as_ref()?.security_context.as_ref()
}

/// The user and group a container's processes run as: its own securityContext, else the
/// pod's, else the policy's identity for its role.
fn runs_as(ctx: &Ctx, c: &Container, role: Role) -> UserGroup {
    let csc: Option<&SecurityContext> = c.security_context.as_ref();
    let psc = pod_sc(ctx);
    let default = ctx.policy.identity.for_role(role);
    UserGroup {
        uid: csc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|s| s.run_as_user))
            .unwrap_or(default.uid),
        gid: csc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|s| s.run_as_group))
            .or(psc.and_then(|s| s.fs_group))
            .unwrap_or(default.gid),
    }
}

/// The container that defines the pod's role: the first one playing it.
fn main_container<'a>(ctx: &Ctx<'a>) -> Option<&'a Container> {
    let i = ctx.containers.iter().position(|r| *r == Some(ctx.role))?;
    containers(ctx.pod).get(i)
}

pub(super) fn apply_fs_group(ctx: &mut Ctx) {
    if pod_sc(ctx).is_some_and(|s| s.fs_group.is_some()) {
        return;
    }
    let gid = match main_container(ctx) {
        Some(c) => runs_as(ctx, c, ctx.role).gid,
        None => ctx.policy.identity.for_role(ctx.role).gid,
    };
    let change_policy = ctx.policy.permissions.fs_group_change_policy.clone();
    if ctx
        .patch
        .add_if_absent(&["spec", "securityContext", "fsGroup"], json!(gid))
    {
        ctx.patch.add_if_absent(
            &["spec", "securityContext", "fsGroupChangePolicy"],
            json!(change_policy),
        );
        ctx.change(
            Mutation::FsGroup,
            format!("fsGroup={gid}, fsGroupChangePolicy={change_policy}"),
        );
    }
    if ctx.role != Role::Database && ctx.containers.contains(&Some(Role::Database)) {
        ctx.warnings.push(format!(
            "the database shares this pod, its volumes get group {gid} too; run PostgreSQL in its own pod"
        ));
    }
}

/// The volume type name as in the pod spec (`hostPath`, `persistentVolumeClaim`, ...).
fn volume_type(v: &Volume) -> &'static str {
    match v {
        v if v.host_path.is_some() => "hostPath",
        v if v.persistent_volume_claim.is_some() => "persistentVolumeClaim",
        v if v.ephemeral.is_some() => "ephemeral",
        v if v.empty_dir.is_some() => "emptyDir",
        v if v.nfs.is_some() => "nfs",
        v if v.csi.is_some() => "csi",
        v if v.config_map.is_some()
            || v.secret.is_some()
            || v.projected.is_some()
            || v.downward_api.is_some() =>
        {
            "readOnly"
        }
        _ => "other",
    }
}

/// One volume (or sub-path of it) to hand to its owner.
struct Target {
    volume: String,
    sub_path: Option<(&'static str, String)>,
    owner: UserGroup,
    role: Role,
    seen_in: String,
}

pub(super) fn apply_volume_ownership(ctx: &mut Ctx) {
    let Some(spec) = ctx.pod.spec.as_ref() else {
        return;
    };
    if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == INIT_CONTAINER_NAME)
    {
        return;
    }
    // A pod has a few volumes: looked up where mounted (the last of a name, as a map would).
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let type_of = |name: &str| {
        volumes
            .iter()
            .rev()
            .find(|v| v.name == name)
            .map_or("other", volume_type)
    };
    let wanted = &ctx.policy.permissions.chown_volume_types;

    // Collect (volume, subPath) pairs in order of first use; Buildbot's owner wins over the
    // database's when both mount the same path.
    let mut targets: Vec<Target> = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let Some(role) = ctx.containers.get(i).copied().flatten() else {
            continue;
        };
        let owner = runs_as(ctx, c, role);
        for m in c.volume_mounts.iter().flatten() {
            let ty = type_of(&m.name);
            if m.read_only == Some(true) || !wanted.iter().any(|w| w == ty) {
                continue;
            }
            let sub_path = match (&m.sub_path, &m.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => Some(("subPath", p.clone())),
                (_, Some(p)) if !p.is_empty() => Some(("subPathExpr", p.clone())),
                _ => None,
            };
            match targets
                .iter_mut()
                .find(|t| t.volume == m.name && t.sub_path == sub_path)
            {
                Some(t) if t.owner != owner => {
                    let (first, first_owner) = (t.seen_in.clone(), t.owner);
                    if t.role == Role::Database && role != Role::Database {
                        (t.owner, t.role, t.seen_in) = (owner, role, c.name.clone());
                    }
                    ctx.warnings.push(format!(
                        "volume {:?} is mounted by {first:?} as {}:{} and by {:?} as {}:{}; it is given to {}:{}",
                        m.name, first_owner.uid, first_owner.gid, c.name, owner.uid, owner.gid, t.owner.uid, t.owner.gid
                    ));
                }
                Some(_) => {}
                None => targets.push(Target {
                    volume: m.name.clone(),
                    sub_path,
                    owner,
                    role,
                    seen_in: c.name.clone(),
                }),
            }
        }
    }
    targets.retain(|t| t.owner.uid != 0); // root-run containers can write anything
    if targets.is_empty() {
        return;
    }
    if ctx.level == PodSecurityLevel::Restricted {
        // Restricted forbids a root container and added capabilities: the volumes rely on
        // fsGroup, which the kubelet applies to claims of most CSI drivers.
        let mut volumes: Vec<&str> = targets.iter().map(|t| t.volume.as_str()).collect();
        volumes.sort_unstable();
        volumes.dedup();
        ctx.warnings.push(format!(
            "Pod Security level restricted forbids the root chown init container: volumes {} \
             rely on fsGroup; hostPath and local volumes may stay root-owned (use a namespace \
             with pod-security.kubernetes.io/enforce=baseline, or chown them at the storage level)",
            volumes.join(", ")
        ));
        return;
    }
    if pod_sc(ctx).is_some_and(|s| s.run_as_non_root == Some(true)) {
        ctx.warnings.push(
            "runAsNonRoot forbids the init chown; make sure hostPath volumes are owned by the Buildbot user"
                .into(),
        );
        return;
    }

    let init = init_container(ctx, &targets);
    if ctx
        .patch
        .insert_opaque(&["spec", "initContainers"], 0, init)
    {
        let what: Vec<String> = targets
            .iter()
            .map(|t| {
                let path = t
                    .sub_path
                    .as_ref()
                    .map(|(_, p)| format!("/{p}"))
                    .unwrap_or_default();
                format!("{}{path}→{}:{}", t.volume, t.owner.uid, t.owner.gid)
            })
            .collect();
        ctx.change(
            Mutation::VolumeOwnership,
            format!(
                "init container {INIT_CONTAINER_NAME} chowns {}",
                what.join(", ")
            ),
        );
    }
}

/// The init container: root with only CAP_CHOWN and CAP_FOWNER, read-only root filesystem,
/// which chowns each mount whose top directory is not already owned right. PostgreSQL's
/// volumes also lose group and other permissions, which PostgreSQL insists on.
fn init_container(ctx: &Ctx, targets: &[Target]) -> Value {
    let mut script = String::from(
        "set -eu\nfix() {\n  if [ \"$(stat -c %u:%g \"$1\")\" != \"$2:$3\" ]; then\n    \
         echo \"chown -R $2:$3 $1\"\n    chown -R \"$2:$3\" \"$1\"\n  fi\n  \
         if [ -n \"$4\" ]; then chmod \"$4\" \"$1\"; fi\n}\n",
    );
    let mut mounts = Vec::new();
    for (n, t) in targets.iter().enumerate() {
        let path = format!("{MOUNT_ROOT}/{n}");
        let mode = if t.role == Role::Database { "0700" } else { "" };
        let _ = writeln!(
            script,
            "fix {path} {} {} '{mode}'",
            t.owner.uid, t.owner.gid
        );
        let mut mount = Map::new();
        mount.insert("name".into(), Value::String(t.volume.clone()));
        mount.insert("mountPath".into(), Value::String(path));
        if let Some((key, sub)) = &t.sub_path {
            mount.insert((*key).into(), Value::String(sub.clone()));
        }
        mounts.push(Value::Object(mount));
    }
    let res = &ctx.policy.permissions.init_resources;
    let text = |s: &str| Value::String(s.to_owned());
    // No CPU limit: a throttled `chown -R` over a large tree would take ages.
    let requests = object([("cpu", text(&res.cpu)), ("memory", text(&res.memory))]);
    let limits = object([("memory", text(&res.memory))]);
    object([
        ("name", text(INIT_CONTAINER_NAME)),
        ("image", text(&ctx.policy.permissions.init_image)),
        (
            "command",
            Value::Array(vec![text("sh"), text("-c"), Value::String(script)]),
        ),
        (
            "resources",
            object([("requests", requests), ("limits", limits)]),
        ),
        ("securityContext", INIT_SECURITY_CONTEXT.clone()),
        ("volumeMounts", Value::Array(mounts)),
    ])
}

/// The init container's security context, the same for every pod: built once.
static INIT_SECURITY_CONTEXT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": false,
        "privileged": false,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
});
