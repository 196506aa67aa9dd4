//! The Kubernetes recommended labels, added where absent, never changed.

use serde_json::json;

use super::{Ctx, Mutation, Role};

pub(super) fn apply(ctx: &mut Ctx) {
    let component = ctx
        .pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/component"));
    if let Some(other) = component
        .and_then(|c| Role::parse(c))
        .filter(|r| *r != ctx.role)
    {
        // Marking the pod as Buildbot's would make that label decide its role next time.
        ctx.warnings.push(format!(
            "app.kubernetes.io/component={other} disagrees with the {} role found; labels left alone",
            ctx.role
        ));
        return;
    }
    let mut added = String::new();
    for (key, value) in [
        ("app.kubernetes.io/name", "buildbot"),
        ("app.kubernetes.io/component", ctx.role.component()),
        ("app.kubernetes.io/part-of", "buildbot"),
    ] {
        if ctx
            .patch
            .add_if_absent(&["metadata", "labels", key], json!(value))
        {
            added.push_str(if added.is_empty() {
                "added labels "
            } else {
                ", "
            });
            added.push_str(key);
            added.push('=');
            added.push_str(value);
        }
    }
    if !added.is_empty() {
        ctx.change(Mutation::Labels, added);
    }
}
