//! BB03: the master must be able to wait for its database. Kubernetes has no `depends_on`:
//! the master starts with PostgreSQL, `buildbot upgrade-master` fails while the database is
//! not there yet, and a master command that does not retry it crash-loops (the seed's
//! `could not translate host name "db"` and `BuildMaster startup failed`).

use buildbot_policy::Role;

use super::inventory::{Inventory, Workload};
use super::master_config::db_url;
use super::network::service_of_host;
use super::{Code, Finding, Severity};

/// The host of an SQLAlchemy URL (`postgresql+psycopg2://user:pass@host:5432/db`).
pub fn db_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// Whether a shell command retries (`until`, `while`, `for ... in`, or a retry tool).
fn retries(script: &str) -> bool {
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .collect();
    words.iter().any(|w| {
        matches!(
            *w,
            "until" | "while" | "for" | "retry" | "wait-for-it" | "wait-for-it.sh" | "dockerize"
        )
    })
}

/// What the master's container runs, when it replaces the image's start script.
fn command_line(w: &Workload) -> Option<String> {
    let c = w.main_container()?;
    let parts: Vec<&str> = c
        .command
        .iter()
        .chain(c.args.iter())
        .flatten()
        .map(String::as_str)
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

pub fn check(inv: &Inventory, out: &mut Vec<Finding>) {
    for master in inv.workloads.iter().filter(|w| w.role == Role::Master) {
        let ns = &master.namespace;
        let Some(url) = db_url(inv, master) else {
            continue;
        };
        if url.starts_with("sqlite") {
            continue;
        }
        let Some(host) = db_host(&url) else {
            continue;
        };
        let Some((svc, svc_ns)) = service_of_host(host, ns) else {
            continue;
        };
        if inv.namespaces_read.contains(svc_ns) && inv.service(svc_ns, svc).is_none() {
            let candidates: Vec<String> = inv
                .services_for(ns, Role::Database)
                .filter_map(|s| s.metadata.name.clone())
                .collect();
            out.push(
                Finding::new(
                    Code::DatabaseWait,
                    inv.absent_severity(),
                    ns,
                    vec![master.id()],
                )
                .trap(format!(
                    "the master's database host {host} names no Service"
                ))
                .why(format!(
                    "BUILDBOT_DB_URL points at {host}, and there is no Service {svc} in \
                         namespace {svc_ns}{}: upgrade-master fails with `could not translate \
                         host name \"{host}\"` and the master never starts",
                    if inv.live {
                        ""
                    } else {
                        " among the given objects"
                    }
                ))
                .fix(match candidates.first() {
                    Some(c) => format!("use the database's Service in the URL: @{c}/"),
                    None => format!(
                        "create a Service {svc} that selects the database pods (port 5432), \
                             or fix the host in BUILDBOT_DB_URL"
                    ),
                })
                .automatic(
                    "`kubectl buildbot deploy` bundles PostgreSQL behind its own \
                                Service, or takes --database-url/--database-secret",
                ),
            );
        }
        if !master.init_containers().is_empty() {
            continue;
        }
        let command = command_line(master);
        let problem = match &command {
            // The official image's start script retries upgrade-master until it works; another
            // image's entrypoint is its own business.
            None => continue,
            Some(cmd) if retries(cmd) => continue,
            Some(cmd) if cmd.contains("upgrade-master") => format!(
                "its command `{cmd}` runs upgrade-master once: while PostgreSQL is starting it \
                 fails, the container exits, and the pod goes into CrashLoopBackOff"
            ),
            Some(cmd) => format!(
                "its command `{cmd}` starts the master without upgrade-master: on a fresh \
                 database it stops with \"The Buildmaster database needs to be upgraded\", and \
                 the pod goes into CrashLoopBackOff"
            ),
        };
        out.push(
            Finding::new(Code::DatabaseWait, Severity::Error, ns, vec![master.id()])
                .trap(format!(
                    "{} cannot wait for its database at {host}",
                    master.id()
                ))
                .why(format!(
                    "Kubernetes starts the master and the database together and has no \
                     depends_on; the master has no init container, and {problem}"
                ))
                .fix(
                    "retry the upgrade before starting: `until buildbot upgrade-master .; do \
                     sleep 2; done; exec twistd -ny buildbot.tac` (or keep the official \
                     image's start script), or an init container that runs that loop",
                )
                .automatic(
                    "`kubectl buildbot deploy` runs upgrade-master in an init \
                            container that waits for PostgreSQL",
                ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_hosts_and_retry_loops() {
        assert_eq!(
            db_host("postgresql+psycopg2://buildbot:change_me@db/buildbot"),
            Some("db")
        );
        assert_eq!(
            db_host("postgresql://u@pg.ns.svc:5432/x?sslmode=require"),
            Some("pg.ns.svc")
        );
        assert_eq!(db_host("sqlite:///state.sqlite"), None);
        assert!(retries("until buildbot upgrade-master .; do sleep 1; done"));
        assert!(!retries(
            "buildbot upgrade-master . && twistd -ny buildbot.tac"
        ));
        assert!(!retries("buildbot upgrade-master /forwhile"));
    }
}
