//! BB08: the master accepts a worker only under a name master.cfg declares, and only one
//! connection per name. Pod names and `WORKERNAME` must agree with it.

use buildbot_policy::Role;

use super::inventory::{Inventory, Workload};
use super::master_config::{declared_workers, master_cfg};
use super::{Code, Finding, Severity};

/// The names a worker workload's pods log in with.
enum Names {
    /// `WORKERNAME` is a literal: every replica uses it.
    Literal(String),
    /// `WORKERNAME` is the pod name of a StatefulSet: `<name>-0`, `<name>-1`, ...
    Ordinals(String),
    /// The pod name of a Deployment, ReplicaSet or Job: random, never declared.
    Random,
    Unknown,
}

fn names_of(w: &Workload) -> Names {
    let Some(c) = w.main_container() else {
        return Names::Unknown;
    };
    let Some(var) = c
        .env
        .iter()
        .flatten()
        .rev()
        .find(|e| e.name == "WORKERNAME")
    else {
        return Names::Unknown;
    };
    if let Some(v) = &var.value {
        return Names::Literal(v.clone());
    }
    let from_pod_name = var
        .value_from
        .as_ref()
        .and_then(|f| f.field_ref.as_ref())
        .is_some_and(|f| f.field_path == "metadata.name");
    match (from_pod_name, w.kind.as_str()) {
        (true, "StatefulSet") => Names::Ordinals(w.name.clone()),
        (true, "Pod") => Names::Literal(w.name.clone()),
        (true, _) => Names::Random,
        _ => Names::Unknown,
    }
}

/// The indexes of the declared names that match.
fn positions(declared: &[String], matches: impl Fn(&String) -> bool) -> Vec<usize> {
    declared
        .iter()
        .enumerate()
        .filter(|(_, d)| matches(d))
        .map(|(i, _)| i)
        .collect()
}

fn ordinal_of<'a>(sts: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(sts)?
        .strip_prefix('-')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn check(inv: &Inventory, out: &mut Vec<Finding>) {
    for ns in inv.buildbot_namespaces() {
        // Each worker workload with the names its pods log in with, worked out once.
        let workers: Vec<(&Workload, Names)> = inv
            .workloads_in(ns, Role::Worker)
            .map(|w| (w, names_of(w)))
            .collect();
        // Several replicas under one literal name: the master keeps one, refuses the rest.
        for (w, names) in &workers {
            let Names::Literal(name) = names else {
                if matches!(names, Names::Random) {
                    out.push(
                        Finding::new(Code::WorkerNames, Severity::Error, ns, vec![w.id()])
                            .trap(format!("{} workers log in with random pod names", w.id()))
                            .why(format!(
                                "WORKERNAME comes from the pod name, and a {}'s pods are named \
                                 at random: no master.cfg can declare them, so the master \
                                 refuses every one",
                                w.kind
                            ))
                            .fix(
                                "run the workers as a StatefulSet (pods <name>-0, <name>-1, ...) \
                                  and declare those names in master.cfg",
                            )
                            .automatic(
                                "`kubectl buildbot deploy` runs a StatefulSet and declares \
                                        a name per slot (--max-workers)",
                            ),
                    );
                }
                continue;
            };
            let most = inv
                .autoscalers_of(w)
                .map(|_| i32::MAX)
                .chain(w.replicas)
                .max()
                .unwrap_or(1);
            if w.kind != "Pod" && most > 1 {
                out.push(
                    Finding::new(Code::WorkerNames, Severity::Error, ns, vec![w.id()])
                        .trap(format!(
                            "every replica of {} logs in as worker {name}",
                            w.id()
                        ))
                        .why(format!(
                            "{} may run {} pods with WORKERNAME={name}; the master accepts one \
                             connection per name and refuses the others, so scaling up adds no \
                             capacity",
                            w.id(),
                            if most == i32::MAX {
                                "several".to_string()
                            } else {
                                most.to_string()
                            }
                        ))
                        .fix(
                            "give each replica its own name: a StatefulSet with WORKERNAME from \
                              metadata.name, and those names in master.cfg",
                        )
                        .automatic("`kubectl buildbot deploy` does exactly that"),
                );
            }
        }
        let masters: Vec<&Workload> = inv.workloads_in(ns, Role::Master).collect();
        for m in masters {
            // A config downloaded at start (BUILDBOT_CONFIG_URL) is not checked.
            let Some(cfg) = master_cfg(inv, m) else {
                continue;
            };
            let Some(declared) = declared_workers(cfg) else {
                continue;
            };
            let mut matched = vec![false; declared.len()];
            for (w, names) in &workers {
                let (found, logs_in_as, fix): (Vec<usize>, String, String) = match names {
                    Names::Literal(name) => (
                        positions(&declared, |d| d == name),
                        name.clone(),
                        format!(
                            "add worker.Worker(\"{name}\", password) to c['workers'], or set \
                             WORKERNAME on {} to a declared name",
                            w.id()
                        ),
                    ),
                    Names::Ordinals(sts) => (
                        positions(&declared, |d| ordinal_of(sts, d).is_some()),
                        format!("{sts}-0, {sts}-1, ..."),
                        format!("declare {sts}-0 .. {sts}-<max-1> in master.cfg"),
                    ),
                    Names::Random | Names::Unknown => {
                        matched.iter_mut().for_each(|m| *m = true);
                        continue;
                    }
                };
                for i in &found {
                    matched[*i] = true;
                }
                if found.is_empty() {
                    out.push(
                        Finding::new(Code::WorkerNames, Severity::Error, ns, vec![w.id(), m.id()])
                            .trap(format!("master.cfg does not declare {logs_in_as}"))
                            .why(format!(
                                "the pods of {} log in as {logs_in_as}, and the master refuses a \
                                 worker whose name master.cfg does not declare; it declares [{}]",
                                w.id(),
                                declared.join(", ")
                            ))
                            .fix(fix),
                    );
                }
            }
            let unused: Vec<&str> = declared
                .iter()
                .zip(&matched)
                .filter(|(_, m)| !**m)
                .map(|(d, _)| d.as_str())
                .collect();
            if !unused.is_empty() {
                out.push(
                    Finding::new(Code::WorkerNames, Severity::Warning, ns, vec![m.id()])
                        .trap(format!("no worker pod logs in as {}", unused.join(", ")))
                        .why(
                            "master.cfg declares these workers, and no pod name or WORKERNAME \
                              matches them: builders that only use them wait forever",
                        )
                        .fix("remove them from master.cfg, or run workers with those names"),
                );
            }
        }
    }
}
