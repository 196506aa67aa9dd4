//! BB10: a ResourceQuota on requests refuses pods that set none (FailedCreate), and Buildbot
//! containers that run as root although the images run as uid 1000.

use buildbot_policy::Role;
use k8s_openapi::api::core::v1::Container;

use super::inventory::{Inventory, Workload};
use super::webhook::coverage_note;
use super::{Code, Finding, Severity};

/// The quota keys that need every container to say a request or limit, and the field.
const QUOTA_KEYS: [(&str, &str, &str); 6] = [
    ("requests.cpu", "requests", "cpu"),
    ("cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("memory", "requests", "memory"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
];

fn sets(c: &Container, field: &str, resource: &str) -> bool {
    let r = c.resources.as_ref();
    let map = match field {
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => r.and_then(|r| r.limits.as_ref()),
    };
    map.is_some_and(|m| m.contains_key(resource))
}

/// Whether a LimitRange in the namespace fills the field in for containers.
fn defaulted(inv: &Inventory, ns: &str, field: &str, resource: &str) -> bool {
    inv.limit_ranges
        .iter()
        .filter(|l| l.metadata.namespace.as_deref() == Some(ns))
        .flat_map(|l| l.spec.iter().flat_map(|s| &s.limits))
        .filter(|item| item.type_ == "Container")
        .any(|item| {
            let d = match field {
                // A default limit also becomes the request when no request default is set.
                "requests" => item.default_request.as_ref().or(item.default.as_ref()),
                _ => item.default.as_ref(),
            };
            d.is_some_and(|d| d.contains_key(resource))
        })
}

fn check_quota(inv: &Inventory, w: &Workload, out: &mut Vec<Finding>) {
    for q in inv
        .quotas
        .iter()
        .filter(|q| q.metadata.namespace.as_deref() == Some(w.namespace.as_str()))
    {
        let Some(hard) = q.spec.as_ref().and_then(|s| s.hard.as_ref()) else {
            continue;
        };
        let qid = format!(
            "ResourceQuota/{}",
            q.metadata.name.as_deref().unwrap_or("?")
        );
        for (key, field, resource) in QUOTA_KEYS {
            if !hard.contains_key(key) || defaulted(inv, &w.namespace, field, resource) {
                continue;
            }
            let missing: Vec<&str> = w
                .pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .filter(|c| !sets(c, field, resource))
                .map(|c| c.name.as_str())
                .collect();
            if missing.is_empty() {
                continue;
            }
            let automatic = if field == "requests" {
                "the admission webhook sets requests on every container of Buildbot pods"
            } else {
                "nothing sets limits for you: the webhook sets requests only, so add a LimitRange"
            };
            out.push(
                Finding::new(
                    Code::PodHygiene,
                    Severity::Error,
                    &w.namespace,
                    vec![w.id(), qid.clone()],
                )
                .trap(format!(
                    "{qid} requires {field}.{resource}, and {} of {} set none",
                    missing.join(", "),
                    w.id()
                ))
                .why(format!(
                    "the API server refuses the pods (FailedCreate: \"must specify \
                     {field}.{resource}\"), so the workload never gets a pod. {}",
                    coverage_note(inv, w)
                ))
                .fix(format!(
                    "set resources.{field}.{resource} on {}, or add a LimitRange with a \
                     default{} for containers",
                    missing.join(", "),
                    if field == "requests" { "Request" } else { "" }
                ))
                .automatic(automatic),
            );
        }
    }
}

fn check_root(w: &Workload, out: &mut Vec<Finding>) {
    let pod_uid = w
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref()?.run_as_user);
    for (c, role) in w.containers().iter().zip(&w.containers) {
        if !matches!(role, Some(Role::Master | Role::Worker)) {
            continue;
        }
        let sc = c.security_context.as_ref();
        let uid = sc.and_then(|s| s.run_as_user).or(pod_uid);
        let privileged = sc.and_then(|s| s.privileged) == Some(true);
        if uid != Some(0) && !privileged {
            continue;
        }
        let what = if privileged {
            "privileged"
        } else {
            "as root (runAsUser: 0)"
        };
        out.push(
            Finding::new(
                Code::PodHygiene,
                Severity::Warning,
                &w.namespace,
                vec![w.id()],
            )
            .trap(format!("Buildbot container {} runs {what}", c.name))
            .why(
                "the Buildbot images run as uid 1000 and need no root; a build running as \
                      root can take over the node through any hostPath or privileged mount",
            )
            .fix(format!(
                "remove runAsUser: 0{} from {}, and fix volume ownership with fsGroup or an \
                     init chown instead",
                if privileged {
                    " and privileged: true"
                } else {
                    ""
                },
                c.name
            ))
            .automatic(
                "the admission webhook fixes volume ownership without root in the \
                            app container",
            ),
        );
    }
}

pub fn check(inv: &Inventory, out: &mut Vec<Finding>) {
    for w in &inv.workloads {
        check_quota(inv, w, out);
        check_root(w, out);
    }
}
