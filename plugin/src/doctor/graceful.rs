//! BB06 and BB07: a worker must never be killed in the middle of a build. It needs a grace
//! period long enough for a build and a preStop hook that asks the master to stop giving it
//! builds and waits for the running one; the hook must reach the master.

use buildbot_policy::{Role, GRACEFUL_STOP_SCRIPT};
use k8s_openapi::api::core::v1::Container;

use super::inventory::{env, Inventory, Workload};
use super::master_config::{master_cfg, restricts_control, web_port};
use super::network::{masters_behind, service_id, service_of_host, target_port};
use super::webhook::coverage_note;
use super::{Code, Finding, Severity};

/// The API server's default when the pod sets none.
const DEFAULT_GRACE: i64 = 30;

fn pre_stop(c: &Container) -> Option<Vec<&str>> {
    let exec = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    if let Some(e) = &exec.exec {
        return Some(e.command.iter().flatten().map(String::as_str).collect());
    }
    // An httpGet or sleep hook: something, though not a drain doctor can follow.
    Some(Vec::new())
}

/// Where the policy's graceful-stop script is in a preStop command, if it is there.
fn graceful_stop_script(cmd: &[&str]) -> Option<usize> {
    let marker = GRACEFUL_STOP_SCRIPT.lines().next().unwrap_or_default();
    cmd.iter().position(|a| a.contains(marker))
}

/// Worker workloads whose pods outlive a build. A per-build pod (`restartPolicy: Never`, as
/// Buildbot's `KubeLatentWorker` makes them) ends with its build: nothing to drain, and the
/// policy gives it no hook on purpose (see `buildbot_policy::per_build`).
fn long_running_workers(inv: &Inventory) -> impl Iterator<Item = &Workload> {
    inv.workloads
        .iter()
        .filter(|w| w.role == Role::Worker && !buildbot_policy::per_build(&w.pod))
}

pub fn check_grace(inv: &Inventory, out: &mut Vec<Finding>) {
    for w in long_running_workers(inv) {
        let Some(c) = w.main_container() else {
            continue;
        };
        let grace = w
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE);
        let hook = pre_stop(c);
        if hook.is_some() && grace > DEFAULT_GRACE {
            continue;
        }
        let scalers: Vec<String> = inv.autoscalers_of(w).map(|a| a.id.clone()).collect();
        let severity = if scalers.is_empty() {
            Severity::Warning
        } else {
            Severity::Error
        };
        let mut objects = vec![w.id()];
        objects.extend(scalers.iter().cloned());
        let (what, kill) = match hook {
            None => (
                format!("no preStop hook and {grace} s of grace"),
                "the kubelet sends SIGTERM at once and the worker exits, whatever the grace"
                    .to_string(),
            ),
            Some(_) => (
                format!("a preStop hook but only {grace} s of grace"),
                format!("the kubelet kills the worker {grace} s after the hook starts"),
            ),
        };
        let when = if scalers.is_empty() {
            "a node drain, a rollout or a scale-down".to_string()
        } else {
            format!(
                "{} scaling down (and any drain or rollout)",
                scalers.join(", ")
            )
        };
        out.push(
            Finding::new(Code::WorkerGrace, severity, &w.namespace, objects)
                .trap(format!("{} workers have {what}", w.id()))
                .why(format!(
                    "on {when} {kill}: a running build fails with \"process killed by signal \
                     15\". {}",
                    coverage_note(inv, w)
                ))
                .fix(format!(
                    "set terminationGracePeriodSeconds to your longest build (e.g. 3600) and a \
                     preStop hook on container {} that asks the master for a graceful stop and \
                     waits (`kubectl buildbot preview -f FILE` prints the webhook's)",
                    c.name
                ))
                .automatic(
                    "the admission webhook injects both; `kubectl buildbot scale \
                            --workers N` drains the leaving workers first",
                ),
        );
    }
}

/// The URLs the graceful-stop hook tries, in its order (see graceful_stop.py).
fn hook_urls(c: &Container, cmd: &[&str], script: usize) -> Vec<String> {
    let mut urls = Vec::new();
    // The policy's masterUrl is the argument after the script.
    urls.extend(cmd.get(script + 1).map(|s| (*s).to_string()));
    urls.extend(env(c, "BUILDBOT_MASTER_URL").map(str::to_string));
    if let Some(host) = env(c, "BUILDMASTER") {
        if let Some(port) = env(c, "BUILDBOT_WEB_PORT") {
            urls.push(format!("http://{host}:{port}/"));
        }
        urls.push(format!("http://{host}:8080/"));
        urls.push(format!("http://{host}:8010/"));
    }
    urls
}

/// `http://host:port/path` into host and port.
fn host_port(url: &str) -> Option<(&str, i32)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((authority, if scheme == "https" { 443 } else { 80 })),
    }
}

/// Why a URL does not reach a master's web port, or `None` when it does (or doctor cannot
/// tell: a host outside the cluster). The flag says whether the reason is only an object
/// missing from the given files.
fn unreachable(inv: &Inventory, ns: &str, url: &str) -> Option<(String, bool)> {
    let Some((host, port)) = host_port(url) else {
        return Some((format!("{url} is not an http URL"), false));
    };
    let (svc_name, svc_ns) = service_of_host(host, ns)?;
    if !inv.namespaces_read.contains(svc_ns) {
        return None;
    }
    let Some(svc) = inv.service(svc_ns, svc_name) else {
        return Some((
            format!("{url}: no Service {svc_name} in namespace {svc_ns}"),
            true,
        ));
    };
    let masters = masters_behind(inv, svc);
    let Some(master) = masters.first() else {
        let absent = inv.workloads_in(svc_ns, Role::Master).next().is_none();
        return Some((
            format!("{url}: {} selects no master", service_id(svc)),
            absent,
        ));
    };
    let web = web_port(inv, master);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let ok = if super::network::headless(svc) {
        port == web
    } else {
        ports
            .iter()
            .any(|p| p.port == port && target_port(p, master) == Some(web))
    };
    (!ok).then(|| {
        let reason = format!(
            "{url}: {} does not forward port {port} to the master's web port {web}",
            service_id(svc)
        );
        (reason, false)
    })
}

pub fn check_hook_reach(inv: &Inventory, out: &mut Vec<Finding>) {
    for w in long_running_workers(inv) {
        let Some(c) = w.main_container() else {
            continue;
        };
        let Some(cmd) = pre_stop(c) else {
            continue;
        };
        let Some(script) = graceful_stop_script(&cmd) else {
            continue;
        };
        let ns = &w.namespace;
        let urls = hook_urls(c, &cmd, script);
        let reasons: Vec<(String, bool)> = urls
            .iter()
            .filter_map(|u| unreachable(inv, ns, u))
            .collect();
        if urls.is_empty() || reasons.len() == urls.len() {
            let tried = if urls.is_empty() {
                "it has no master URL: no argument, BUILDBOT_MASTER_URL or BUILDMASTER".to_string()
            } else {
                let r: Vec<&str> = reasons.iter().map(|(r, _)| r.as_str()).collect();
                r.join("; ")
            };
            let severity = if !urls.is_empty() && reasons.iter().all(|(_, absent)| *absent) {
                inv.absent_severity()
            } else {
                Severity::Error
            };
            out.push(
                Finding::new(Code::GracefulStopReach, severity, ns, vec![w.id()])
                    .trap(format!(
                        "the graceful-stop hook of {} cannot reach the master",
                        w.id()
                    ))
                    .why(format!(
                        "{tried}. The hook gives up after 30 s with \"NOT drained\" and the build \
                         is killed at the grace deadline"
                    ))
                    .fix(
                        "set BUILDBOT_MASTER_URL=http://<master Service>:<web port>/ on the \
                          worker, or gracefulStop.masterUrl in the webhook's policy, and expose \
                          the master's web port on its Service",
                    )
                    .automatic("`kubectl buildbot deploy` exposes the web port and sets the URL"),
            );
        }
        // The master refuses anonymous control calls when authz guards every control endpoint.
        let masters: Vec<&Workload> = inv.workloads_in(ns, Role::Master).collect();
        if let Some(m) = masters
            .iter()
            .find(|m| master_cfg(inv, m).is_some_and(restricts_control))
        {
            out.push(
                Finding::new(Code::GracefulStopReach, Severity::Warning, ns, vec![w.id(), m.id()])
                    .trap("master.cfg's authz may refuse the graceful-stop hook's stop control")
                    .why("the hook calls the REST API's worker `stop` control without credentials; \
                          an Any(Control)EndpointMatcher limited to a role answers 403 and the \
                          worker is not drained")
                    .fix("allow the workers' stop control in master.cfg: \
                          util.EndpointMatcher(...)/WorkerEndpointMatcher(role=...) plus a role for \
                          the hook, or place `util.AnyControlEndpointMatcher` after a rule that lets \
                          the stop through"),
            );
        }
        // Live: the kubelet's own record of hooks that failed.
        let failed: Vec<String> = inv
            .events
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("FailedPreStopHook")
                    && e.involved_object.namespace.as_deref() == Some(ns)
                    && e.involved_object
                        .name
                        .as_deref()
                        .is_some_and(|n| n == w.name || n.starts_with(&format!("{}-", w.name)))
            })
            .filter_map(|e| {
                Some(format!(
                    "Pod/{}: {}",
                    e.involved_object.name.as_deref()?,
                    e.message.as_deref().unwrap_or("").trim()
                ))
            })
            .collect();
        if !failed.is_empty() {
            out.push(
                Finding::new(Code::GracefulStopReach, Severity::Error, ns, vec![w.id()])
                    .trap(format!(
                        "the graceful-stop hook of {} failed recently",
                        w.id()
                    ))
                    .why(format!("FailedPreStopHook events: {}", failed.join(" | ")))
                    .fix(
                        "read the hook's message above; `kubectl buildbot status` shows the \
                          master's view of the workers",
                    ),
            );
        }
    }
}
