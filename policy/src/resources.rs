//! Default CPU and memory requests for containers that state none, so that the scheduler can
//! place Buildbot, a ResourceQuota on requests admits the pod, and the HorizontalPodAutoscaler
//! can compute CPU utilisation. Init containers included.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Map, Value};

use super::{containers, quantity, Ctx, Mutation, Role};

const NAMES: [&str; 2] = ["cpu", "memory"];

pub(super) fn apply(ctx: &mut Ctx) {
    let (policy, pod) = (ctx.policy, ctx.pod);
    // What each app container requests once this rule has run, for the init containers' cap.
    let mut requested = Vec::with_capacity(containers(pod).len());
    for (i, container) in containers(pod).iter().enumerate() {
        let role = ctx.containers.get(i).copied().flatten();
        let defaults = policy.resources.for_role(role);
        let who = Who::App(role);
        let values = [defaults.cpu.as_str(), defaults.memory.as_str()];
        requested.push(request(ctx, container, "containers", i, values, who));
    }
    if policy.resources.init_containers {
        apply_init(ctx, &requested);
    }
}

/// Whose requests a container got, for the change's words: its role, `sidecar` for none.
#[derive(Clone, Copy)]
enum Who {
    App(Option<Role>),
    SidecarInit,
    Init(Role),
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::App(Some(role)) => role.component(),
            Who::App(None) => "sidecar",
            Who::SidecarInit => "sidecar init",
            Who::Init(Role::Master) => "master init",
            Who::Init(Role::Worker) => "worker init",
            Who::Init(Role::Database) => "database init",
        }
    }
}

/// Init containers: the pod role's requests, each capped at the app containers' total (they
/// run one at a time before those, so they cost no scheduling room); sidecar init containers
/// run beside the app containers and get the sidecar requests.
fn apply_init<'a>(ctx: &mut Ctx<'a>, requested: &[Requested<'a>]) {
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
    let totals: [Option<(f64, &str)>; NAMES.len()] =
        std::array::from_fn(|n| app_total(requested, n));
    let role_defaults = ctx.policy.resources.for_role(Some(ctx.role));
    let sidecar = &ctx.policy.resources.sidecar;
    for (i, container) in init.iter().enumerate() {
        if container.restart_policy.as_deref() == Some("Always") {
            let values = [sidecar.cpu.as_str(), sidecar.memory.as_str()];
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
        let defaults = [role_defaults.cpu.as_str(), role_defaults.memory.as_str()];
        let capped: [&str; NAMES.len()] = std::array::from_fn(|n| match totals[n] {
            Some((sum, largest)) if quantity::parse(defaults[n]).is_some_and(|d| d > sum) => {
                largest
            }
            _ => defaults[n],
        });
        let who = Who::Init(ctx.role);
        request(ctx, container, "initContainers", i + offset, capped, who);
    }
}

/// What one container requests of cpu and memory once this rule has run: its own requests
/// when it states them, else what the rule added (`None` where nothing was).
type Requested<'a> = [Option<&'a str>; NAMES.len()];

/// What the app containers request of `NAMES[n]` once this rule has run: the sum, and the
/// largest single request (a value no larger than the sum, as written). `None` when none
/// requests it.
fn app_total<'a>(requested: &[Requested<'a>], n: usize) -> Option<(f64, &'a str)> {
    let mut sum = 0.0;
    let mut largest: Option<(f64, &str)> = None;
    for text in requested.iter().filter_map(|r| r[n]) {
        let Some(value) = quantity::parse(text) else {
            continue;
        };
        sum += value;
        if largest.is_none_or(|(l, _)| value > l) {
            largest = Some((value, text));
        }
    }
    largest.map(|(_, text)| (sum, text))
}

/// Requests `values` (cpu, memory) for `spec.<list>[index]`, unless the container states
/// requests of its own; never above its limits. Returns what the container requests once
/// done (its own requests, or those added).
fn request<'a>(
    ctx: &mut Ctx<'a>,
    container: &'a Container,
    list: &str,
    index: usize,
    values: [&'a str; NAMES.len()],
    who: Who,
) -> Requested<'a> {
    let resources = container.resources.as_ref();
    if let Some(own) = resources
        .and_then(|r| r.requests.as_ref())
        .filter(|r| !r.is_empty())
    {
        // The user stated requests: never touch them.
        return NAMES.map(|name| own.get(name).map(|q| q.0.as_str()));
    }
    let limits = resources.and_then(|r| r.limits.as_ref());
    let index = index.to_string();
    let wanted: [&'a str; NAMES.len()] =
        std::array::from_fn(|i| capped(values[i], limits, NAMES[i]));
    for ((name, default), value) in NAMES.iter().zip(values).zip(wanted) {
        if value != default {
            ctx.warnings.push(format!(
                "container {:?} {name} limit {value} is below the default request {default}; requested {value}",
                container.name
            ));
        }
    }
    let requests = ["spec", list, &index, "resources", "requests"];
    let mut set = [false; NAMES.len()];
    // Usually no `requests` at all: one operation adds them all. No later rule reads inside
    // them (the init containers' cap comes from what this returns).
    let all: Map<String, Value> = NAMES
        .iter()
        .zip(wanted)
        .map(|(name, value)| ((*name).to_string(), Value::String(value.to_owned())))
        .collect();
    if ctx
        .patch
        .add_opaque_if_absent(&requests, Value::Object(all))
    {
        set = [true; NAMES.len()];
    } else {
        // `requests: {}` (or a parent that is not an object): key by key.
        for (i, (name, value)) in NAMES.iter().zip(wanted).enumerate() {
            let path = [&requests[..], &[*name]].concat();
            set[i] = ctx
                .patch
                .add_opaque_if_absent(&path, Value::String(value.to_owned()));
        }
    }
    if set.contains(&true) {
        // One string, written in place: a pod with many sidecars has one such change each.
        let mut detail = String::with_capacity(64 + container.name.len());
        detail.push_str("requested ");
        for (n, (name, value)) in NAMES
            .iter()
            .zip(wanted)
            .zip(set)
            .filter(|(_, set)| *set)
            .map(|(nv, _)| nv)
            .enumerate()
        {
            if n > 0 {
                detail.push_str(", ");
            }
            detail.push_str(name);
            detail.push('=');
            detail.push_str(value);
        }
        detail.push_str(" for ");
        detail.push_str(who.name());
        detail.push_str(" container ");
        quoted(&mut detail, &container.name);
        ctx.change(Mutation::Resources, detail);
    }
    std::array::from_fn(|i| set[i].then_some(wanted[i]))
}

/// Appends `name` as `{:?}` writes it: as is between quotes when it is a valid container
/// name (lowercase letters, digits and `-`), which needs no escapes.
fn quoted(out: &mut String, name: &str) {
    if name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        out.push('"');
        out.push_str(name);
        out.push('"');
    } else {
        let _ = write!(out, "{name:?}");
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
