//! Default CPU and memory requests for containers that state none, so that the scheduler can
//! place Buildbot, a ResourceQuota on requests admits the pod, and the HorizontalPodAutoscaler
//! can compute CPU utilisation. Init containers included.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Map, Value};

use super::{containers, quantity, Ctx, Mutation, Role};

const NAMES: [&str; 2] = ["cpu", "memory"];

pub(super) fn apply(ctx: &mut Ctx) {
    let policy = ctx.policy;
    for (i, container) in containers(ctx.pod).iter().enumerate() {
        let role = ctx.containers.get(i).copied().flatten();
        let defaults = policy.resources.for_role(role);
        let who = Who::App(role);
        let values = [&defaults.cpu, &defaults.memory];
        request(ctx, container, "containers", i, values, who);
    }
    if policy.resources.init_containers {
        apply_init(ctx);
    }
}

/// Whose requests a container got, for the change's words: its role, `sidecar` for none.
#[derive(Clone, Copy)]
enum Who {
    App(Option<Role>),
    SidecarInit,
    Init(Role),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::App(Some(role)) => write!(f, "{role}"),
            Who::App(None) => f.write_str("sidecar"),
            Who::SidecarInit => f.write_str("sidecar init"),
            Who::Init(role) => write!(f, "{role} init"),
        }
    }
}

/// Init containers: the pod role's requests, each capped at the app containers' total (they
/// run one at a time before those, so they cost no scheduling room); sidecar init containers
/// run beside the app containers and get the sidecar requests.
fn apply_init(ctx: &mut Ctx) {
    let Some(init) = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
    else {
        return;
    };
    // Rules before this one may have put their own init container first.
    let now = ctx
        .patch
        .get(&["spec", "initContainers"])
        .and_then(|v| v.as_array())
        .map_or(init.len(), Vec::len);
    let offset = now.saturating_sub(init.len());
    let totals = NAMES.map(|name| app_total(ctx, name));
    let role_defaults = ctx.policy.resources.for_role(Some(ctx.role)).clone();
    let sidecar = ctx.policy.resources.sidecar.clone();
    for (i, container) in init.iter().enumerate() {
        if container.restart_policy.as_deref() == Some("Always") {
            let values = [&sidecar.cpu, &sidecar.memory];
            request(
                ctx,
                container,
                "initContainers",
                i + offset,
                values,
                Who::SidecarInit,
            );
            continue;
        }
        let capped: Vec<String> = [&role_defaults.cpu, &role_defaults.memory]
            .iter()
            .zip(&totals)
            .map(|(default, total)| match total {
                Some((sum, largest)) if quantity::parse(default).is_some_and(|d| d > *sum) => {
                    largest.clone()
                }
                _ => (*default).clone(),
            })
            .collect();
        let who = Who::Init(ctx.role);
        request(
            ctx,
            container,
            "initContainers",
            i + offset,
            [&capped[0], &capped[1]],
            who,
        );
    }
}

/// What the app containers request of `name` once this rule has run: the sum, and the
/// largest single request (a value no larger than the sum, as written). `None` when none
/// requests it.
fn app_total(ctx: &Ctx, name: &str) -> Option<(f64, String)> {
    let count = containers(ctx.pod).len();
    let mut sum = 0.0;
    let mut largest: Option<(f64, String)> = None;
    for i in 0..count {
        let index = i.to_string();
        let Some(text) = ctx
            .patch
            .get(&["spec", "containers", &index, "resources", "requests", name])
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        let Some(value) = quantity::parse(text) else {
            continue;
        };
        sum += value;
        if largest.as_ref().is_none_or(|(l, _)| value > *l) {
            largest = Some((value, text.to_string()));
        }
    }
    largest.map(|(_, text)| (sum, text))
}

/// Requests `values` (cpu, memory) for `spec.<list>[index]`, unless the container states
/// requests of its own; never above its limits.
fn request(
    ctx: &mut Ctx,
    container: &Container,
    list: &str,
    index: usize,
    values: [&String; 2],
    who: Who,
) {
    let resources = container.resources.as_ref();
    if resources
        .and_then(|r| r.requests.as_ref())
        .is_some_and(|r| !r.is_empty())
    {
        return; // the user stated requests: never touch them
    }
    let limits = resources.and_then(|r| r.limits.as_ref());
    let index = index.to_string();
    let wanted: [(&str, &String, &str); NAMES.len()] =
        std::array::from_fn(|i| (NAMES[i], values[i], capped(values[i], limits, NAMES[i])));
    for (name, default, value) in &wanted {
        if value != default {
            ctx.warnings.push(format!(
                "container {:?} {name} limit {value} is below the default request {default}; requested {value}",
                container.name
            ));
        }
    }
    let requests = ["spec", list, &index, "resources", "requests"];
    let mut set = [false; NAMES.len()];
    // Usually no `requests` at all: one operation adds them all.
    let all: Map<String, Value> = wanted
        .iter()
        .map(|(name, _, value)| ((*name).to_string(), Value::String((*value).to_owned())))
        .collect();
    if ctx.patch.add_if_absent(&requests, Value::Object(all)) {
        set = [true; NAMES.len()];
    } else {
        // `requests: {}` (or a parent that is not an object): key by key.
        for (i, (name, _, value)) in wanted.iter().enumerate() {
            let path = [&requests[..], &[*name]].concat();
            set[i] = ctx
                .patch
                .add_if_absent(&path, Value::String((*value).to_owned()));
        }
    }
    if set.contains(&true) {
        // One string, written in place: a pod with many sidecars has one such change each.
        let mut detail = String::with_capacity(64 + container.name.len());
        detail.push_str("requested ");
        for (n, ((name, _, value), _)) in wanted.iter().zip(set).filter(|(_, set)| *set).enumerate()
        {
            if n > 0 {
                detail.push_str(", ");
            }
            detail.push_str(name);
            detail.push('=');
            detail.push_str(value);
        }
        let _ = write!(detail, " for {who} container {:?}", container.name);
        ctx.change(Mutation::Resources, detail);
    }
}

/// The default, or the container's limit when that is lower: a request above its limit is
/// rejected by the API server.
fn capped<'a>(
    default: &'a str,
    limits: Option<&'a BTreeMap<String, Quantity>>,
    name: &str,
) -> &'a str {
    let Some(limit) = limits.and_then(|l| l.get(name)) else {
        return default;
    };
    match (quantity::parse(&limit.0), quantity::parse(default)) {
        (Some(l), Some(d)) if l < d => &limit.0,
        _ => default,
    }
}
