//! Any JSON pod the typed decoder reads: the webhook's view reads it too, and the policy
//! gives it the very evaluation (role, patch, changes, warnings) it gives the whole document.
#![no_main]

use buildbot_policy::{evaluate_decoded, evaluate_json, Policy, PodSecurityLevel};
use buildbot_webhook::view::PodView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let policy = Policy::default();
    let Ok(whole) = evaluate_json(&doc, &policy) else { return };
    // Read from bytes, as the webhook reads: written back, without the duplicate keys a
    // document may have (the typed decoder saw the last of each).
    let bytes = serde_json::to_vec(&doc).expect("JSON writes");
    let view: PodView = serde_json::from_slice(&bytes).expect("what the typed decoder reads, the view reads");
    let present = view.metadata_present();
    let viewed = evaluate_decoded(&view.into_pod(), present, &policy, PodSecurityLevel::Privileged);
    assert_eq!(whole, viewed);
});
