//! The real binary against a loopback fake API server that refuses everything: the user sees
//! what was refused and what to do, and the exit code is non-zero.

use std::process::Command;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;

async fn forbidden(uri: axum::http::Uri) -> impl IntoResponse {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403, "reason": "Forbidden",
        "message": format!("forbidden: User \"dev\" cannot do {}", uri.path())});
    (StatusCode::FORBIDDEN, axum::Json(body))
}

fn kubeconfig(port: u16) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kbb-kubeconfig-{}-{port}", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n\
             users:\n- name: dev\n  user: {{token: t}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: dev, namespace: ci}}\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn refused_requests_exit_non_zero_with_the_object_and_a_hint() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        axum::serve(listener, Router::new().fallback(forbidden))
            .await
            .unwrap();
    });
    let config = kubeconfig(port);

    for (args, expected) in [
        (
            vec!["deploy", "bb"],
            "reading Secret/bb-postgres in namespace ci: forbidden",
        ),
        (vec!["status", "bb"], "forbidden"),
        (vec!["delete", "bb"], "forbidden"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-buildbot"))
            .args(&args)
            .arg("--kubeconfig")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("hint: check with `kubectl auth can-i"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_latent_deploy_with_a_worker_count_is_refused_before_anything_is_sent() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-buildbot"))
        .args([
            "deploy",
            "bb",
            "--worker-mode",
            "latent",
            "--workers",
            "2",
            "--dry-run=client",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--workers has no meaning with --worker-mode latent"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
