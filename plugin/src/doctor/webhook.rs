//! BB09: the admission webhook fixes most traps at pod creation, when it is installed, covers
//! the namespace, has a valid certificate and a ready endpoint.

use std::collections::BTreeMap;

use buildbot_policy::INJECT_KEY;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cert::pem_not_after;
use super::inventory::{Inventory, Workload};
use super::{Code, Context, Finding, Severity};

/// The chart names each of its webhooks `[level.]pods.<release>.kubectl-buildbot.dev`.
const NAME_SUFFIX: &str = ".kubectl-buildbot.dev";
const INSTALL: &str =
    "helm install buildbot-webhook charts/buildbot-webhook -n buildbot-system --create-namespace";
/// Days before expiry that doctor starts warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whether a label selector matches (an empty or absent selector matches everything).
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else {
        return true;
    };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Our webhooks (by the chart's naming), with the configuration they are in.
fn ours(inv: &Inventory) -> Vec<(&str, &MutatingWebhook)> {
    inv.webhooks
        .iter()
        .flat_map(|c| {
            let name = c.metadata.name.as_deref().unwrap_or("?");
            c.webhooks.iter().flatten().map(move |w| (name, w))
        })
        .filter(|(_, w)| w.name.ends_with(NAME_SUFFIX))
        .collect()
}

/// The Services our webhooks call, `(namespace, name)`: their endpoints say whether the
/// webhook can answer.
pub fn services(inv: &Inventory) -> std::collections::BTreeSet<(String, String)> {
    ours(inv)
        .into_iter()
        .filter_map(|(_, w)| {
            let s = w.client_config.service.as_ref()?;
            Some((s.namespace.clone(), s.name.clone()))
        })
        .collect()
}

/// Whether the webhook would see this pod at admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Covered by this webhook configuration.
    Covered(String),
    /// Installed, but the namespace or pod is outside its selectors.
    Excluded(String),
    NotInstalled,
    /// Not known: files without the webhook's configuration, or not allowed to read it.
    Unknown,
}

pub fn coverage(
    inv: &Inventory,
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
) -> Coverage {
    if !inv.webhooks_known {
        return Coverage::Unknown;
    }
    let hooks = ours(inv);
    if hooks.is_empty() {
        return Coverage::NotInstalled;
    }
    let ns_labels = inv.labels_of_namespace(namespace);
    if let Some((config, _)) = hooks.iter().find(|(_, w)| {
        selector_matches(w.namespace_selector.as_ref(), &ns_labels)
            && selector_matches(w.object_selector.as_ref(), pod_labels)
    }) {
        return Coverage::Covered((*config).to_string());
    }
    let config = hooks[0].0;
    Coverage::Excluded(
        if hooks
            .iter()
            .all(|(_, w)| !selector_matches(w.namespace_selector.as_ref(), &ns_labels))
        {
            format!("the namespaceSelector of MutatingWebhookConfiguration/{config} excludes namespace {namespace}")
        } else {
            format!("the objectSelector of MutatingWebhookConfiguration/{config} excludes the pod's labels")
        },
    )
}

/// A sentence on what the webhook does for this workload, for the findings it would fix.
pub fn coverage_note(inv: &Inventory, w: &Workload) -> String {
    match coverage(inv, &w.namespace, w.labels()) {
        Coverage::Covered(c) if w.admitted => format!(
            "The webhook ({c}) covers the namespace now, but this pod was admitted before it: \
             recreate it"
        ),
        Coverage::Covered(c) => format!("The webhook ({c}) covers it, yet the trap remains."),
        Coverage::Excluded(why) => format!("The webhook is installed, but {why}."),
        Coverage::NotInstalled => "The admission webhook is not installed.".to_string(),
        Coverage::Unknown => "Whether the admission webhook covers it is unknown from files; \
                              `kubectl buildbot doctor -n NS` checks the cluster."
            .to_string(),
    }
}

/// BB09, for every namespace with Buildbot workloads.
pub fn check(inv: &Inventory, ctx: &Context, out: &mut Vec<Finding>) {
    for ns in inv.buildbot_namespaces() {
        let ns_labels = inv.labels_of_namespace(ns);
        if ns_labels.get(INJECT_KEY).map(String::as_str) == Some("false") {
            continue; // the user's choice; BB11 reports what it leaves unfixed
        }
        let mine: Vec<&Workload> = inv
            .workloads
            .iter()
            .filter(|w| w.namespace == ns && w.opted_out.is_none())
            .collect();
        let Some(first) = mine.first() else {
            continue;
        };
        let workloads: Vec<String> = mine.iter().map(|w| w.id()).collect();
        let coverage = mine
            .iter()
            .map(|w| coverage(inv, ns, w.labels()))
            .find(|c| !matches!(c, Coverage::Covered(_)))
            .unwrap_or_else(|| coverage(inv, ns, first.labels()));
        match coverage {
            Coverage::NotInstalled => out.push(
                Finding::new(Code::Webhook, Severity::Warning, ns, workloads.clone())
                    .trap("the kubectl-buildbot admission webhook is not installed")
                    .why(
                        "without it, pods applied from plain YAML or other charts keep the \
                          seed's traps: no requests, root-owned volumes, 30 s grace",
                    )
                    .fix(format!("install it: {INSTALL}"))
                    .automatic(INSTALL),
            ),
            Coverage::Excluded(why) => out.push(
                Finding::new(Code::Webhook, Severity::Warning, ns, workloads.clone())
                    .trap(format!(
                        "the admission webhook does not cover namespace {ns}"
                    ))
                    .why(format!("{why}; pods here are created without its fixes"))
                    .fix(
                        "remove the namespace from the chart's webhook.excludeNamespaces (or \
                          its objectSelector) and `helm upgrade`",
                    )
                    .automatic(
                        "helm upgrade buildbot-webhook charts/buildbot-webhook --reuse-values",
                    ),
            ),
            Coverage::Covered(_) | Coverage::Unknown => {}
        }
    }
    check_configurations(inv, ctx, out);
}

/// Certificate expiry and endpoint readiness of each webhook configuration of ours.
fn check_configurations(inv: &Inventory, ctx: &Context, out: &mut Vec<Finding>) {
    let mut seen = std::collections::BTreeSet::new();
    for (config, hook) in ours(inv) {
        let id = format!("MutatingWebhookConfiguration/{config}");
        let cc = &hook.client_config;
        if let Some(bundle) = &cc.ca_bundle {
            if seen.insert((config, "cert")) {
                if let Some(expiry) = pem_not_after(&bundle.0).into_iter().min() {
                    let days = (expiry - ctx.now).div_euclid(86_400);
                    if days < EXPIRY_WARNING_DAYS {
                        let severity = if days < 0 {
                            Severity::Error
                        } else {
                            Severity::Warning
                        };
                        out.push(
                            Finding::new(Code::Webhook, severity, "", vec![id.clone()])
                                .trap(if days < 0 {
                                    format!(
                                        "the webhook's CA certificate expired {} days ago",
                                        -days
                                    )
                                } else {
                                    format!("the webhook's CA certificate expires in {days} days")
                                })
                                .why(
                                    "once it expires the API server refuses the webhook's TLS; \
                                      with failurePolicy Ignore pods are created without fixes, \
                                      with Fail no Buildbot pod can be created",
                                )
                                .fix(
                                    "renew it: delete the chart's TLS Secret and `helm upgrade` \
                                      (the chart generates a new CA), or use cert-manager \
                                      (tls.certManager.enabled=true), which rotates it",
                                )
                                .automatic(
                                    "helm upgrade buildbot-webhook charts/buildbot-webhook \
                                            --set tls.certManager.enabled=true",
                                ),
                        );
                    }
                }
            }
        }
        let Some(svc) = cc.service.as_ref() else {
            continue;
        };
        if !inv.live || !seen.insert((config, "endpoints")) {
            continue;
        }
        let ready = inv.endpoint_slices.iter().any(|s| {
            s.metadata.namespace.as_deref() == Some(svc.namespace.as_str())
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    == Some(&svc.name)
                && s.endpoints
                    .iter()
                    .any(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        });
        if !ready {
            let fail = hook.failure_policy.as_deref() == Some("Fail");
            out.push(
                Finding::new(
                    Code::Webhook,
                    if fail {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    &svc.namespace,
                    vec![id.clone(), format!("Service/{}", svc.name)],
                )
                .trap("the admission webhook has no ready endpoint")
                .why(if fail {
                    "failurePolicy is Fail: the API server refuses every pod the webhook \
                     matches, Buildbot or not, until a webhook pod is ready"
                } else {
                    "failurePolicy is Ignore: pods are created without the webhook's fixes \
                     while it is down"
                })
                .fix(format!(
                    "check the webhook's pods: `kubectl -n {} get pods,events` and `kubectl -n {} \
                     logs deploy/{}`",
                    svc.namespace, svc.namespace, svc.name
                )),
            );
        }
    }
}
