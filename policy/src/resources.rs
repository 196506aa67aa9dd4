//! Default CPU and memory requests for containers that state none, so that the scheduler can
//! place Buildbot and the HorizontalPodAutoscaler can compute CPU utilisation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::{containers, quantity, Ctx, Mutation};

pub(super) fn apply(ctx: &mut Ctx) {
    for (i, container) in containers(ctx.pod).iter().enumerate() {
        let resources = container.resources.as_ref();
        if resources
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| !r.is_empty())
        {
            continue; // the user stated requests: never touch them
        }
        let limits = resources.and_then(|r| r.limits.as_ref());
        let role = ctx.containers.get(i).copied().flatten();
        let defaults = ctx.policy.resources.for_role(role).clone();
        let index = i.to_string();
        let mut set = Vec::new();
        for (name, default) in [("cpu", &defaults.cpu), ("memory", &defaults.memory)] {
            let value = capped(default, limits, name);
            if value != *default {
                ctx.warnings.push(format!(
                    "container {:?} {name} limit {value} is below the default request {default}; requested {value}",
                    container.name
                ));
            }
            if ctx.patch.add_if_absent(
                &["spec", "containers", &index, "resources", "requests", name],
                json!(value),
            ) {
                set.push(format!("{name}={value}"));
            }
        }
        if !set.is_empty() {
            let who = role.map_or("sidecar".to_string(), |r| r.to_string());
            ctx.change(
                Mutation::Resources,
                format!(
                    "requested {} for {who} container {:?}",
                    set.join(", "),
                    container.name
                ),
            );
        }
    }
}

/// The default, or the container's limit when that is lower: a request above its limit is
/// rejected by the API server.
fn capped(default: &str, limits: Option<&BTreeMap<String, Quantity>>, name: &str) -> String {
    let Some(limit) = limits.and_then(|l| l.get(name)) else {
        return default.to_string();
    };
    match (quantity::parse(&limit.0), quantity::parse(default)) {
        (Some(l), Some(d)) if l < d => limit.0.clone(),
        _ => default.to_string(),
    }
}
