//! BB01 and BB02: workers reach the master through a Service. It must select the master's
//! pods and forward the workers' port to the port the master listens on.

use std::collections::BTreeMap;

use buildbot_policy::Role;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::inventory::{env, has_env, selects, Inventory, Workload};
use super::master_config::{worker_port, DEFAULT_WORKER_PORT};
use super::{Code, Finding, Severity};

const DEPLOY: &str = "`kubectl buildbot deploy` creates the master's Service with the \
                      workers' port (9989) and the web port (8080) from the same labels as the pods";

pub fn service_id(s: &Service) -> String {
    format!("Service/{}", s.metadata.name.as_deref().unwrap_or("?"))
}

fn selector(s: &Service) -> Option<&BTreeMap<String, String>> {
    s.spec.as_ref()?.selector.as_ref().filter(|m| !m.is_empty())
}

pub fn headless(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn ports(s: &Service) -> &[ServicePort] {
    s.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// `{k: v, ...}` for messages.
pub fn show_labels(m: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// The pod port a Service port forwards to: a number, or a named container port of `target`.
pub fn target_port(p: &ServicePort, target: &Workload) -> Option<i32> {
    match &p.target_port {
        None => Some(p.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => target
            .containers()
            .iter()
            .flat_map(|c| c.ports.as_deref().unwrap_or_default())
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .map(|cp| cp.container_port),
    }
}

/// The Service a host name in `namespace` resolves to, as cluster DNS does it: `svc`,
/// `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster domain>`. `None` for an IP address or a
/// name outside the cluster, which doctor cannot check.
pub fn service_of_host<'a>(host: &'a str, namespace: &'a str) -> Option<(&'a str, &'a str)> {
    let host = host.trim().trim_end_matches('.');
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [svc] => Some((svc, namespace)),
        [svc, ns] | [svc, ns, "svc", ..] => Some((svc, ns)),
        _ => None,
    }
}

/// The master pods a Service selects.
pub fn masters_behind<'a>(inv: &'a Inventory, s: &'a Service) -> Vec<&'a Workload> {
    inv.selected_by(s)
        .filter(|w| w.role == Role::Master)
        .collect()
}

/// Why a Service does not select a workload's pods: the keys whose values differ.
fn mismatch(s: &Service, labels: &BTreeMap<String, String>) -> String {
    let Some(sel) = selector(s) else {
        return format!("{} has no selector", service_id(s));
    };
    let wrong: Vec<String> = sel
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(v))
        .map(|(k, v)| match labels.get(k) {
            Some(actual) => format!("`{k}: {v}` (the pods say `{actual}`)"),
            None => format!("`{k}: {v}` (the pods have no `{k}` label)"),
        })
        .collect();
    format!("{} selects {}", service_id(s), wrong.join(" and "))
}

/// BB01: a Service selects every master, and one of them forwards the workers' port.
pub fn check_master_services(inv: &Inventory, out: &mut Vec<Finding>) {
    for master in inv.workloads.iter().filter(|w| w.role == Role::Master) {
        let ns = &master.namespace;
        let port = worker_port(inv, master);
        let selecting: Vec<&Service> = inv
            .services_in(ns)
            .filter(|s| selects(s, master.labels()))
            .collect();
        if selecting.is_empty() {
            // The Services that look meant for the master: named like it, or selecting a
            // master by one of its spellings (`app: buildbot-master`, `tier: master`).
            let near: Vec<&Service> = inv
                .services_in(ns)
                .filter(|s| {
                    s.metadata.name.as_deref() == Some(master.name.as_str())
                        || selector(s).is_some_and(|sel| {
                            sel.values().any(|v| Role::parse(v) == Some(Role::Master))
                        })
                })
                .collect();
            let mut objects = vec![master.id()];
            objects.extend(near.iter().map(|s| service_id(s)));
            let why = if near.is_empty() {
                format!(
                    "workers find the master through a Service; none in namespace {ns} selects \
                     the master's pods (labels {}), so BUILDMASTER resolves to nothing",
                    show_labels(master.labels())
                )
            } else {
                let reasons: Vec<String> =
                    near.iter().map(|s| mismatch(s, master.labels())).collect();
                format!(
                    "{}, so it has no endpoints: workers time out connecting. The master's pods \
                     are labelled {}",
                    reasons.join("; "),
                    show_labels(master.labels())
                )
            };
            let severity = if near.is_empty() {
                inv.absent_severity()
            } else {
                Severity::Error
            };
            out.push(
                Finding::new(Code::MasterService, severity, ns, objects)
                    .trap(format!("no Service selects the master {}", master.id()))
                    .why(why)
                    .fix(format!(
                        "give the master's Service the selector {} and a port {port} \
                         (targetPort {port}) for the workers",
                        show_labels(master.labels())
                    ))
                    .automatic(DEPLOY),
            );
            continue;
        }
        let exposes = |s: &Service| {
            headless(s)
                || ports(s)
                    .iter()
                    .any(|p| target_port(p, master) == Some(port))
        };
        if !selecting.iter().any(|s| exposes(s)) {
            let listed: Vec<String> = selecting
                .iter()
                .map(|s| {
                    let ps: Vec<String> = ports(s).iter().map(|p| p.port.to_string()).collect();
                    format!("{} has ports [{}]", service_id(s), ps.join(", "))
                })
                .collect();
            let mut objects: Vec<String> = selecting.iter().map(|s| service_id(s)).collect();
            objects.push(master.id());
            out.push(
                Finding::new(Code::MasterService, Severity::Error, ns, objects)
                    .trap(format!(
                        "the master's Service does not expose the workers' port {port}"
                    ))
                    .why(format!(
                        "{}: workers connect to port {port} and are refused or time out \
                         (the seed's \"Connection to master:{port} failed\")",
                        listed.join("; ")
                    ))
                    .fix(format!(
                        "add `- {{name: worker, port: {port}, targetPort: {port}}}` to the ports of {}",
                        service_id(selecting[0])
                    ))
                    .automatic(DEPLOY),
            );
        }
    }
}

/// BB02: each worker's `BUILDMASTER:BUILDMASTER_PORT` leads to a master's workers' port.
pub fn check_worker_addresses(inv: &Inventory, out: &mut Vec<Finding>) {
    for worker in inv.workloads.iter().filter(|w| w.role == Role::Worker) {
        let Some(c) = worker.main_container() else {
            continue;
        };
        let ns = &worker.namespace;
        if !has_env(c, "BUILDMASTER") {
            // A worker with its own buildbot.tac needs no BUILDMASTER; the official image does.
            if c.image
                .as_deref()
                .unwrap_or_default()
                .contains("buildbot-worker")
                && c.command.is_none()
                && c.args.is_none()
            {
                out.push(
                    Finding::new(
                        Code::WorkerMasterAddress,
                        Severity::Error,
                        ns,
                        vec![worker.id()],
                    )
                    .trap(format!("{} does not say where the master is", worker.id()))
                    .why(
                        "the official worker image builds buildbot.tac from BUILDMASTER, \
                              BUILDMASTER_PORT, WORKERNAME and WORKERPASS; without BUILDMASTER \
                              the worker never connects",
                    )
                    .fix(
                        "set BUILDMASTER to the master's Service name (and BUILDMASTER_PORT \
                              if it is not 9989)",
                    )
                    .automatic("`kubectl buildbot deploy` sets both for its workers"),
                );
            }
            continue;
        }
        let Some(host) = env(c, "BUILDMASTER") else {
            continue;
        };
        let port =
            env(c, "BUILDMASTER_PORT").map_or(Some(DEFAULT_WORKER_PORT), |p| p.trim().parse().ok());
        let Some(port) = port else {
            continue;
        };
        let Some((svc_name, svc_ns)) = service_of_host(host, ns) else {
            continue;
        };
        if !inv.namespaces_read.contains(svc_ns) {
            continue; // a namespace doctor did not read
        }
        let address = format!("BUILDMASTER={host} BUILDMASTER_PORT={port}");
        let Some(svc) = inv.service(svc_ns, svc_name) else {
            let masters: Vec<String> = inv
                .services_for(ns, Role::Master)
                .filter_map(|s| s.metadata.name.clone())
                .collect();
            let fix = match masters.first() {
                Some(m) => format!("set BUILDMASTER={m}, the Service that selects the master"),
                None => format!(
                    "create a Service named {svc_name} in namespace {svc_ns} that selects the \
                     master's pods, with port {port}"
                ),
            };
            out.push(
                Finding::new(
                    Code::WorkerMasterAddress,
                    inv.absent_severity(),
                    ns,
                    vec![worker.id()],
                )
                .trap(format!("{address} names no Service"))
                .why(format!(
                    "there is no Service {svc_name} in namespace {svc_ns}{}: the worker cannot \
                     resolve {host} and retries forever",
                    if inv.live {
                        ""
                    } else {
                        " among the given objects"
                    }
                ))
                .fix(fix)
                .automatic(DEPLOY),
            );
            continue;
        };
        let masters = masters_behind(inv, svc);
        let objects = vec![worker.id(), service_id(svc)];
        let Some(master) = masters.first() else {
            let masters_in_ns: Vec<&Workload> = inv.workloads_in(svc_ns, Role::Master).collect();
            let why = match masters_in_ns.first() {
                Some(m) => format!("{}: no endpoints", mismatch(svc, m.labels())),
                None => format!(
                    "{} selects no Buildbot master{}",
                    service_id(svc),
                    if inv.live {
                        ""
                    } else {
                        " among the given objects"
                    }
                ),
            };
            let severity = if masters_in_ns.is_empty() {
                inv.absent_severity()
            } else {
                Severity::Error
            };
            out.push(
                Finding::new(Code::WorkerMasterAddress, severity, ns, objects)
                    .trap(format!(
                        "{address}: the Service does not lead to the master"
                    ))
                    .why(why)
                    .fix(match masters_in_ns.first() {
                        Some(m) => format!(
                            "make the selector of {} match the master's pod labels {}",
                            service_id(svc),
                            show_labels(m.labels())
                        ),
                        None => "point BUILDMASTER at the Service of the master".to_string(),
                    })
                    .automatic(DEPLOY),
            );
            continue;
        };
        let wanted = worker_port(inv, master);
        let reaches = if headless(svc) {
            port == wanted
        } else {
            ports(svc)
                .iter()
                .any(|p| p.port == port && target_port(p, master) == Some(wanted))
        };
        if !reaches {
            let ps: Vec<String> = ports(svc)
                .iter()
                .map(|p| match target_port(p, master) {
                    Some(t) if t != p.port => format!("{}->{t}", p.port),
                    _ => p.port.to_string(),
                })
                .collect();
            out.push(
                Finding::new(Code::WorkerMasterAddress, Severity::Error, ns, objects)
                    .trap(format!(
                        "{address} does not reach the master's workers' port {wanted}"
                    ))
                    .why(format!(
                        "{} forwards [{}] and the master {} listens for workers on {wanted}: \
                         the worker's connection is refused",
                        service_id(svc),
                        ps.join(", "),
                        master.id()
                    ))
                    .fix(format!(
                        "expose port {port} with targetPort {wanted} on {}, or set \
                         BUILDMASTER_PORT to the Service port that forwards to {wanted}",
                        service_id(svc)
                    ))
                    .automatic(DEPLOY),
            );
        }
    }
}
