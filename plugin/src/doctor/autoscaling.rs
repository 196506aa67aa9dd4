//! BB05: an autoscaler that can never work. Utilisation is usage over request, so a pod
//! without a CPU request has none (the seed's `<unknown> / 50%`); a metric nobody serves
//! scales nothing either.

use super::inventory::Inventory;
use super::webhook::coverage_note;
use super::{Code, Finding, Severity};

const SCALE: &str = "`kubectl buildbot scale --auto --min 1 --max N` (CPU, with requests from \
                     the webhook or deploy) or `--queue` (KEDA on Buildbot's build queue)";

pub fn check(inv: &Inventory, out: &mut Vec<Finding>) {
    for a in &inv.autoscalers {
        let target = inv.workload(&a.namespace, &a.target_kind, &a.target_name);
        let target_id = format!("{}/{}", a.target_kind, a.target_name);
        let Some(w) = target else {
            // Only Buildbot targets are doctor's business; a missing one may be Buildbot's.
            let known = inv.all_workloads.contains(&(
                a.namespace.clone(),
                a.target_kind.clone(),
                a.target_name.clone(),
            ));
            if inv.live && !known && looks_buildbot(&a.target_name) {
                out.push(
                    Finding::new(
                        Code::Autoscaler,
                        Severity::Error,
                        &a.namespace,
                        vec![a.id.clone()],
                    )
                    .trap(format!("{} scales {target_id}, which does not exist", a.id))
                    .why("an autoscaler whose target is missing does nothing")
                    .fix(format!(
                        "point scaleTargetRef at the worker workload, or delete {}",
                        a.id
                    ))
                    .automatic(SCALE),
                );
            }
            continue;
        };
        for resource in &a.utilisation {
            let missing: Vec<&str> = w
                .containers()
                .iter()
                .filter(|c| {
                    c.resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref())
                        .is_none_or(|r| !r.contains_key(resource))
                })
                .map(|c| c.name.as_str())
                .collect();
            if missing.is_empty() {
                continue;
            }
            out.push(
                Finding::new(
                    Code::Autoscaler,
                    Severity::Error,
                    &a.namespace,
                    vec![a.id.clone(), w.id()],
                )
                .trap(format!(
                    "{} scales on {resource} utilisation, but {} has no {resource} request",
                    a.id,
                    missing.join(", ")
                ))
                .why(format!(
                    "utilisation is usage divided by request, summed over every container of \
                     the pod; without a {resource} request on {} the autoscaler reports \
                     `<unknown>` and never scales. {}",
                    missing.join(", "),
                    coverage_note(inv, w)
                ))
                .fix(format!(
                    "set resources.requests.{resource} on every container of {}",
                    w.id()
                ))
                .automatic(format!(
                    "the admission webhook sets requests on every Buildbot container; {SCALE}"
                )),
            );
        }
        let Some(apis) = &inv.api_services else {
            continue;
        };
        let mut need = Vec::new();
        if !a.utilisation.is_empty() {
            need.push((
                "v1beta1.metrics.k8s.io",
                "resource metrics (metrics-server)",
            ));
        }
        if a.external {
            need.push((
                "v1beta1.external.metrics.k8s.io",
                if a.keda {
                    "KEDA's metrics server"
                } else {
                    "an external metrics adapter"
                },
            ));
        }
        for (api, what) in need {
            if apis.get(api) == Some(&true) {
                continue;
            }
            out.push(
                Finding::new(Code::Autoscaler, Severity::Error, &a.namespace, vec![a.id.clone(), format!("APIService/{api}")])
                    .trap(format!("{} needs {what}, and APIService {api} is {}", a.id, if apis.contains_key(api) { "not Available" } else { "missing" }))
                    .why("the autoscaler reads its metric from that API; without it, it never scales")
                    .fix(if api.contains("external") {
                        "install KEDA (helm install keda kedacore/keda -n keda --create-namespace) or the adapter that serves the metric".to_string()
                    } else {
                        "install metrics-server (kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/releases/latest/download/components.yaml)".to_string()
                    }),
            );
        }
    }
}

fn looks_buildbot(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("worker") || n.contains("buildbot")
}
