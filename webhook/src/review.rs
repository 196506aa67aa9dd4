//! AdmissionReview v1 in, AdmissionReview v1 out: the webhook's decision, with no I/O.
//!
//! Bad input never blocks a pod: a review that is not JSON or not an AdmissionReview is a
//! client error (the HTTP layer answers 400); a well-formed review of anything the policy does
//! not handle (a non-Pod, an undecodable Pod, an UPDATE) is allowed unchanged with a warning
//! where the user should know.

use kube::core::admission::AdmissionResponse;

use buildbot_policy::{evaluate_decoded, Evaluation, PodSecurityLevel, Policy, Role, Skipped};

use crate::json_bytes::write_str;
use crate::view::{PodView, RawReviewView, ReviewView};

/// What happened to one review, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A Buildbot pod that got a patch.
    Patched,
    /// A Buildbot pod that needed nothing.
    Unchanged,
    /// Not for us: not Buildbot, opted out, not a CREATE, not a Pod.
    Skipped,
    /// A review whose object could not be read as a Pod: allowed unchanged, with a warning.
    Undecodable,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Patched,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Undecodable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Undecodable => "undecodable",
        }
    }
}

/// The answer to one review.
#[derive(Debug)]
pub struct Reviewed {
    /// The response, but for its patch.
    pub response: AdmissionResponse,
    /// The patch [`Reviewed::into_json`] puts in the response; empty for none.
    pub patch: json_patch::Patch,
    pub outcome: Outcome,
    /// The pod's role, when the policy found one.
    pub role: Option<Role>,
    /// What was injected, comma separated, as in the `injected` audit annotation.
    pub injected: String,
}

/// The AdmissionReview around a response, up to the response object.
const REVIEW_HEAD: &[u8] =
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":"#;

impl Reviewed {
    /// The number of patch operations sent.
    pub fn operations(&self) -> usize {
        self.patch.0.len()
    }

    /// The response body, written into one buffer. kube-core keeps `patch` as bytes and would
    /// serialise them as an array of numbers; the wire format, Go's `[]byte`, is a base64
    /// string. So the response is serialised without a patch, and the patch is written as
    /// base64 straight into the buffer before the response object closes
    /// ([`crate::patch_base64`]). The audit annotations and warnings are written there too:
    /// serde_json escapes a string a byte at a time, and the `changes` annotation of a pod
    /// with many containers runs to kilobytes ([`crate::json_bytes::write_str`] copies the
    /// text between escapes whole).
    pub fn into_json(mut self) -> Vec<u8> {
        let annotations = std::mem::take(&mut self.response.audit_annotations);
        let warnings = self.response.warnings.take().unwrap_or_default();
        // Room for the response, its warnings and audit annotations, and the patch, without
        // walking the patch to size it (that cost 2% of a worker's review): a worker's ten
        // operations, the 4 KB preStop hook among them, are 8 KB base64'd; a larger patch
        // grows the buffer once or twice.
        let room = 1024 + 1024 * self.patch.0.len();
        let mut out = Vec::with_capacity(REVIEW_HEAD.len() + room);
        out.extend_from_slice(REVIEW_HEAD);
        serde_json::to_writer(&mut out, &self.response)
            .expect("an AdmissionResponse always serialises");
        out.pop(); // the response object's `}`
        if !annotations.is_empty() {
            out.extend_from_slice(br#","auditAnnotations":{"#);
            for (i, (key, value)) in annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&mut out, key);
                out.push(b':');
                write_str(&mut out, value);
            }
            out.push(b'}');
        }
        if !warnings.is_empty() {
            out.extend_from_slice(br#","warnings":["#);
            for (i, warning) in warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&mut out, warning);
            }
            out.push(b']');
        }
        if !self.patch.0.is_empty() {
            out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
            crate::patch_base64::write(&self.patch, &mut out);
            out.push(b'"');
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// A request that is not an AdmissionReview v1 at all (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("request body is not an AdmissionReview: {0}")]
    NotAReview(serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("unsupported {kind} {api_version}: this webhook speaks admission.k8s.io/v1 AdmissionReview (set admissionReviewVersions: [v1])")]
    WrongVersion { kind: String, api_version: String },
}

const API_VERSION: &str = "admission.k8s.io/v1";

/// Answers one AdmissionReview given as the raw request body.
pub fn review(body: &[u8], policy: &Policy) -> Result<Reviewed, ReviewError> {
    review_in(body, policy, PodSecurityLevel::Privileged)
}

/// [`review`] for a pod in a namespace whose Pod Security level is `level` (the webhook path
/// `/mutate/LEVEL`, which the API server calls for namespaces with that enforce label).
///
/// The review is read through [`crate::view`]: only what the policy reads is decoded, and
/// environment variables that say no role are cut before that ([`crate::env_compact`]). A
/// review that does not read once cut, or whose pod does not, is read again as sent, so the
/// answer and any error are those for the review as sent.
pub fn review_in(
    body: &[u8],
    policy: &Policy,
    level: PodSecurityLevel,
) -> Result<Reviewed, ReviewError> {
    if let Some(cut) = crate::env_compact::compact(body) {
        if let Ok(review) = serde_json::from_slice::<ReviewView>(&cut) {
            let reviewed = review_view(review, policy, level)?;
            if reviewed.outcome != Outcome::Undecodable {
                return Ok(reviewed);
            }
        }
    }
    review_as_sent(body, policy, level)
}

/// [`review_in`] without cutting environment variables: the reference its tests and fuzz
/// target compare it with.
#[doc(hidden)]
pub fn review_as_sent(
    body: &[u8],
    policy: &Policy,
    level: PodSecurityLevel,
) -> Result<Reviewed, ReviewError> {
    let review: ReviewView = match serde_json::from_slice(body) {
        Ok(review) => review,
        // Rare: the pod, read in the same pass, did not decode (or this is no review at
        // all). The second reading keeps the object raw, to tell which.
        Err(e) => serde_json::from_slice::<RawReviewView>(body)
            .map(RawReviewView::into_review)
            .map_err(
                |_| match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => ReviewError::NotAReview(e),
                    Err(e) => ReviewError::NotJson(e),
                },
            )?,
    };
    review_view(review, policy, level)
}

/// The answer to a review as read.
fn review_view(
    review: ReviewView,
    policy: &Policy,
    level: PodSecurityLevel,
) -> Result<Reviewed, ReviewError> {
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return Err(ReviewError::WrongVersion {
            kind: review.kind.into_owned(),
            api_version: review.api_version.into_owned(),
        });
    }
    let req = review.request.ok_or(ReviewError::NoRequest)?;
    let response = allowed(&req.uid);
    let left_alone = |response: AdmissionResponse, outcome: Outcome| Reviewed {
        response,
        outcome,
        patch: json_patch::Patch(Vec::new()),
        role: None,
        injected: String::new(),
    };
    let kind = req.kind.kind;
    if kind != "Pod" {
        let mut response = response;
        response.warnings = Some(vec![prefixed(&format!(
            "only Pods are mutated, {kind} left unchanged"
        ))]);
        return Ok(left_alone(response, Outcome::Skipped));
    }
    // Only new pods are mutated: a running pod's spec is immutable, and subresources
    // (ephemeral containers, bindings) are not ours.
    if req.operation != "CREATE" || req.sub_resource.is_some() {
        return Ok(left_alone(response, Outcome::Skipped));
    }
    let Some(object) = req.object else {
        return Ok(left_alone(response, Outcome::Skipped));
    };
    let view: PodView = match object.into_pod_view() {
        Ok(view) => view,
        Err(e) => {
            let mut response = response;
            response.warnings = Some(vec![prefixed(&format!(
                "pod left unchanged, it could not be decoded: {e}"
            ))]);
            return Ok(left_alone(response, Outcome::Undecodable));
        }
    };
    let metadata_present = view.metadata_present();
    let pod = view.into_pod();
    Ok(answer(
        response,
        evaluate_decoded(&pod, metadata_present, policy, level),
    ))
}

/// An allowed response to the request `uid`, nothing else yet.
fn allowed(uid: &str) -> AdmissionResponse {
    // kube-core builds a response from a typed AdmissionRequest, which the view replaces;
    // its `invalid` gives the same response type to start from.
    let mut response = AdmissionResponse::invalid("");
    response.allowed = true;
    response.result = Default::default();
    response.uid = uid.to_owned();
    response
}

/// An admission warning: kubectl prints it as `Warning: ...` among others, so it says whose it is.
fn prefixed(warning: &str) -> String {
    format!("kubectl-buildbot: {warning}")
}

/// The response for an evaluated pod: warnings, audit annotations, the patch.
fn answer(mut response: AdmissionResponse, evaluation: Evaluation) -> Reviewed {
    let injected = evaluation.injected().join(",");
    let Evaluation {
        role,
        skipped,
        patch,
        changes,
        warnings,
    } = evaluation;
    if !warnings.is_empty() {
        response.warnings = Some(warnings.into_iter().map(|w| prefixed(&w)).collect());
    }
    let outcome = match (skipped, patch.0.is_empty()) {
        (Some(Skipped::NotBuildbot | Skipped::OptedOut | Skipped::UnknownRole), _) => {
            Outcome::Skipped
        }
        (None, true) => Outcome::Unchanged,
        (None, false) => Outcome::Patched,
    };
    if let Some(role) = role {
        response
            .audit_annotations
            .insert("role".into(), role.to_string());
    }
    if !patch.0.is_empty() {
        response
            .audit_annotations
            .insert("injected".into(), injected.clone());
        let details: Vec<&str> = changes.iter().map(|c| c.detail.as_str()).collect();
        response
            .audit_annotations
            .insert("changes".into(), details.join("; "));
    }
    Reviewed {
        response,
        patch,
        outcome,
        role,
        injected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::{json, Value};

    pub(crate) fn review_json(object: Value, operation: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": object.get("kind").and_then(Value::as_str).unwrap_or("Pod")},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "ci",
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": object,
                "dryRun": false
            }
        }))
        .unwrap()
    }

    fn worker() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "worker-", "labels": {"app": "buildbot", "tier": "worker"}},
               "spec": {"terminationGracePeriodSeconds": 30,
                        "containers": [{"name": "worker", "image": "buildbot/buildbot-worker:master"}]}})
    }

    /// A pod whose containers' variables are of every kind `env_compact` reads: role names and
    /// others, a value from a field, escapes, numbers, nesting, no name, a null name.
    fn env_pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": "w-", "labels": {"app": "buildbot"}},
               "spec": {"containers": [
                   {"name": "side", "image": "busybox", "env": [
                       {"name": "PATH", "value": "/bin"},
                       {"name": "BUILDMASTER", "value": "master"},
                       {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                       {"value": "a\"b\\é\u{1}", "x": [1, -0.5e3, true, null, {}, []]},
                       {"name": null}]},
                   {"name": "db", "image": "registry.local/app", "env": [{"name": "BUILDBOT_DB_URL"}]}]}})
    }

    fn response(r: Reviewed) -> Value {
        serde_json::from_slice(&r.into_json()).unwrap()
    }

    #[test]
    fn environment_variables_are_cut_to_those_that_say_a_role_for_the_same_answer() {
        let body = review_json(env_pod(), "CREATE");
        let cut = crate::env_compact::compact(&body).expect("the arrays are cut");
        let cut: Value = serde_json::from_slice(&cut).unwrap();
        let containers = &cut["request"]["object"]["spec"]["containers"];
        assert_eq!(containers[0]["env"], json!([{"name": "BUILDMASTER"}]));
        assert_eq!(containers[1]["env"], json!([{"name": "BUILDBOT_DB_URL"}]));
        let p = Policy::default();
        let r = review(&body, &p).unwrap();
        // The roles came through the cut: BUILDMASTER makes the pod a worker's.
        assert_eq!(r.role, Some(Role::Worker));
        let sent = review_as_sent(&body, &p, PodSecurityLevel::Privileged).unwrap();
        assert_eq!(response(r), response(sent));
    }

    #[test]
    fn buildbot_pod_gets_a_base64_json_patch_with_the_same_uid() {
        let r = review(&review_json(worker(), "CREATE"), &Policy::default()).unwrap();
        assert_eq!(r.outcome, Outcome::Patched);
        let operations = r.operations();
        let v = response(r);
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        let resp = &v["response"];
        assert_eq!(resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch.0.len(), operations);
        let mut pod = worker();
        json_patch::patch(&mut pod, &patch).unwrap();
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 3600);
        assert_eq!(resp["auditAnnotations"]["role"], "worker");
        assert_eq!(
            resp["auditAnnotations"]["injected"],
            "fsGroup,gracefulStop,labels,resources"
        );
    }

    #[test]
    fn the_response_is_kube_cores_own_with_the_patch_as_base64() {
        // A grace period kept below the policy's: a warning, besides the audit annotations.
        let mut pod = worker();
        pod["spec"]["terminationGracePeriodSeconds"] = json!(10);
        let r = review(&review_json(pod, "CREATE"), &Policy::default()).unwrap();
        assert!(r.response.warnings.is_some() && r.response.audit_annotations.len() == 3);
        let mut expected = serde_json::to_value(&r.response).unwrap();
        expected["patchType"] = json!("JSONPatch");
        let patch = serde_json::to_value(&r.patch).unwrap();
        let mut got = response(r)["response"].take();
        let sent = base64::engine::general_purpose::STANDARD
            .decode(got["patch"].take().as_str().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap(), patch);
        got.as_object_mut().unwrap().remove("patch");
        assert_eq!(got, expected);
    }

    #[test]
    fn other_pods_updates_and_non_pods_are_allowed_unchanged() {
        let nginx = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                           "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}});
        for (body, outcome) in [
            (review_json(nginx, "CREATE"), Outcome::Skipped),
            (review_json(worker(), "UPDATE"), Outcome::Skipped),
            (
                review_json(
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}),
                    "CREATE",
                ),
                Outcome::Skipped,
            ),
            (
                review_json(
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}}),
                    "CREATE",
                ),
                Outcome::Undecodable,
            ),
        ] {
            let r = review(&body, &Policy::default()).unwrap();
            assert_eq!(r.outcome, outcome);
            let v = response(r);
            assert_eq!(v["response"]["allowed"], true);
            assert!(v["response"].get("patch").is_none());
            assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        }
    }

    #[test]
    fn undecodable_pods_and_non_pods_say_why() {
        let body = review_json(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": 5}}),
            "CREATE",
        );
        let v = response(review(&body, &Policy::default()).unwrap());
        assert!(
            v["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("could not be decoded"),
            "{v}"
        );
    }

    #[test]
    fn a_pod_without_metadata_gets_a_patch_that_applies() {
        // Found by cargo fuzz: the typed Pod has an empty ObjectMeta either way.
        for object in [
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "w", "image": "buildbot/buildbot-worker"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": [{"name": "w", "image": "buildbot/buildbot-worker"}]}}),
        ] {
            let v = response(
                review(&review_json(object.clone(), "CREATE"), &Policy::default()).unwrap(),
            );
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["response"]["patch"].as_str().unwrap())
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            let mut pod = object;
            json_patch::patch(&mut pod, &patch).unwrap();
            assert_eq!(
                pod["metadata"]["labels"]["app.kubernetes.io/component"],
                "worker"
            );
        }
    }

    #[test]
    fn garbage_is_a_client_error_with_a_reason() {
        let p = Policy::default();
        assert!(matches!(
            review(b"{not json", &p),
            Err(ReviewError::NotJson(_))
        ));
        assert!(matches!(
            review(b"[1,2]", &p),
            Err(ReviewError::NotAReview(_))
        ));
        assert!(matches!(
            review(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                &p
            ),
            Err(ReviewError::NoRequest)
        ));
        let v1beta1 = String::from_utf8(review_json(worker(), "CREATE"))
            .unwrap()
            .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        let e = review(v1beta1.as_bytes(), &p).unwrap_err();
        assert!(e.to_string().contains("admissionReviewVersions"), "{e}");
    }

    mod properties {
        use super::*;
        use buildbot_policy::testing::pod_strategy;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any bytes: an answer or a client error, never a panic.
            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = review(&body, &Policy::default());
            }

            /// Any JSON-ish text mutated from a real review: never a panic.
            #[test]
            fn mangled_reviews_never_panic(cut in 0usize..2000, junk in "[\\[\\]{}\":,a-z0-9 ]{0,16}") {
                let mut text = String::from_utf8(review_json(worker(), "CREATE")).unwrap();
                let at = cut.min(text.len());
                text.insert_str(at, &junk);
                let _ = review(text.as_bytes(), &Policy::default());
            }

            /// Cutting environment variables changes no answer and no error: junk anywhere in a
            /// review with variables of every kind gets what the review as sent gets.
            #[test]
            fn cut_and_as_sent_answer_alike(at in 0usize..1200, junk in "[\\[\\]{}\":,\\\\a-z0-9 .+-]{0,12}", level in 0usize..3) {
                let mut text = String::from_utf8(review_json(env_pod(), "CREATE")).unwrap();
                let mut at = at.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, &junk);
                let level = [PodSecurityLevel::Privileged, PodSecurityLevel::Baseline, PodSecurityLevel::Restricted][level];
                // As JSON: the audit annotations are a HashMap, in no set order.
                let answer = |r: Result<Reviewed, ReviewError>| r.map(response).map_err(|e| e.to_string());
                let cut = answer(review_in(text.as_bytes(), &Policy::default(), level));
                let sent = answer(review_as_sent(text.as_bytes(), &Policy::default(), level));
                prop_assert_eq!(cut, sent, "{}", text);
            }

            /// Any pod in a well-formed review: allowed, same uid, and the base64 patch applies.
            #[test]
            fn every_answer_allows_and_its_patch_applies(pod in pod_strategy(), no_metadata in any::<bool>()) {
                let mut pod = pod;
                if no_metadata {
                    // As cargo fuzz found: a document without metadata must work too.
                    pod.as_object_mut().unwrap().remove("metadata");
                }
                pod["apiVersion"] = "v1".into();
                pod["kind"] = "Pod".into();
                let r = review(&review_json(pod.clone(), "CREATE"), &Policy::default()).unwrap();
                let v = response(r);
                prop_assert_eq!(&v["response"]["allowed"], &json!(true));
                prop_assert_eq!(&v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
                if let Some(p) = v["response"]["patch"].as_str() {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
                    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                    // The patch sent is the policy's, whatever the encoder copied.
                    let evaluated = buildbot_policy::evaluate_json(&pod, &Policy::default()).unwrap();
                    prop_assert_eq!(&patch, &evaluated.patch);
                    json_patch::patch(&mut pod, &patch).unwrap();
                    // And the patched pod needs nothing more.
                    let again = review(&review_json(pod, "CREATE"), &Policy::default()).unwrap();
                    prop_assert_eq!(again.operations(), 0);
                }
            }
        }
    }
}
