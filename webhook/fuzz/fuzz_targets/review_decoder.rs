//! Any request body: an answer or a client error, never a panic; the same answer or error
//! whether environment variables are cut first or not; an answer allows the pod and its patch
//! applies to the pod that was sent.
#![no_main]

use base64::Engine as _;
use buildbot_policy::Policy;
use buildbot_policy::PodSecurityLevel;
use buildbot_webhook::review::{review, review_as_sent, Reviewed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // As JSON: the audit annotations are a HashMap, in no set order.
    let json = |r: Reviewed| -> serde_json::Value { serde_json::from_slice(&r.into_json()).expect("the answer is JSON") };
    let sent = review_as_sent(body, &Policy::default(), PodSecurityLevel::Privileged)
        .map(json)
        .map_err(|e| e.to_string());
    let cut = review(body, &Policy::default()).map(json).map_err(|e| e.to_string());
    assert_eq!(cut, sent, "cutting environment variables changed the answer");
    let Ok(answer) = cut else { return };
    assert_eq!(answer["response"]["allowed"], true, "never blocks a pod");
    let Some(patch) = answer["response"]["patch"].as_str() else { return };
    let patch = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
    // serde_json skips fields the typed decoder ignores without checking their escapes
    // (a lone \ud800 surrogate, say): such a body is answered, but it is not JSON the API
    // server could send, so there is no pod to apply the patch to.
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let mut pod = request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod sent");
});
