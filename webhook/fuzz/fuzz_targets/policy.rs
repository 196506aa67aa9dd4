//! Any JSON pod: the policy never panics, its patch applies to the document, and applying it
//! to its own output gives an empty patch.
#![no_main]

use buildbot_policy::{evaluate_json, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let policy = Policy::default();
    let Ok(first) = evaluate_json(&doc, &policy) else { return };
    let mut patched = doc.clone();
    json_patch::patch(&mut patched, &first.patch).expect("the patch applies to its input");
    let second = evaluate_json(&patched, &policy).expect("the patched pod is still a pod");
    assert!(second.patch.0.is_empty(), "idempotent: {:?}", second.patch);
});
