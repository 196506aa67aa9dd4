//! What the benches compare the webhook against, in one place: the way a review was encoded
//! before (through a `serde_json::Value`), and the view's decode step by step; and the
//! allocator the `buildbot-webhook` binary has, so that a bench measures what it runs.

use base64::Engine as _;
use buildbot_webhook::review::Reviewed;
use buildbot_webhook::view::{PodView, ReviewView};
use k8s_openapi::api::core::v1::Pod;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The review as the webhook reads it: environment variables cut (`env_compact`), then the
/// view; the typed Pod the policy gets, and whether the document has metadata.
pub fn view_decode(body: &[u8]) -> (Pod, bool) {
    let cut = buildbot_webhook::env_compact::compact(body);
    let review: ReviewView = serde_json::from_slice(cut.as_deref().unwrap_or(body)).unwrap();
    let view: PodView = review
        .request
        .unwrap()
        .object
        .unwrap()
        .into_pod_view()
        .unwrap();
    let present = view.metadata_present();
    (view.into_pod(), present)
}

/// How the response was encoded before: the whole review through a `serde_json::Value`, the
/// patch written back as base64 into the tree.
pub fn value_tree_encode(reviewed: Reviewed) -> Vec<u8> {
    let mut response = reviewed.response;
    if !reviewed.patch.0.is_empty() {
        response = response.with_patch(reviewed.patch).unwrap();
    }
    let patch = response.patch.take();
    let mut value = serde_json::to_value(response.into_review()).unwrap();
    if let Some(patch) = patch {
        value["response"]["patch"] = base64::engine::general_purpose::STANDARD
            .encode(patch)
            .into();
    }
    serde_json::to_vec(&value).unwrap()
}
