//! The real server on loopback, called over HTTPS as the API server calls it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use buildbot_webhook::server::{Server, ServerConfig};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    ca: Ca,
    dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    metrics: std::sync::Arc<buildbot_webhook::metrics::Metrics>,
}

async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let ca = Ca::new("webhook-test-ca");
    let (cert, key) = ca.leaf(&["localhost", "buildbot-webhook.buildbot-system.svc"]);
    let dir = temp_dir("server");
    write_atomic(&dir.join("tls.crt"), &cert);
    write_atomic(&dir.join("tls.key"), &key);
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("tls.crt"),
        dir.join("tls.key"),
    );
    config.cert_reload_interval = Duration::from_millis(100);
    tweak(&mut config);
    let server = Server::bind(config).await.expect("server binds");
    let (addr, metrics) = (server.local_addr(), server.metrics());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        ca,
        dir,
        stop: Some(stop),
        done,
        metrics,
    }
}

impl Running {
    async fn post(&self, body: &[u8]) -> Reply {
        https(
            self.addr,
            &self.ca.pem(),
            "localhost",
            "POST",
            "/mutate",
            body,
        )
        .await
        .expect("request")
    }
    async fn get(&self, path: &str) -> Reply {
        https(self.addr, &self.ca.pem(), "localhost", "GET", path, b"")
            .await
            .expect("request")
    }
}

#[tokio::test]
async fn seed_worker_review_gets_the_right_patch_uid_and_audit_trail() {
    let srv = start(|_| {}).await;
    let reply = srv
        .post(&admission_review(
            "e911857d-c318-11e8-bbad-025000000001",
            seed_worker_pod(),
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let resp = &v["response"];
    assert_eq!(resp["uid"], "e911857d-c318-11e8-bbad-025000000001");
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = seed_worker_pod();
    json_patch::patch(&mut pod, &patch).expect("patch applies to the pod the API server sent");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 3600);
    assert_eq!(pod["spec"]["securityContext"]["fsGroup"], 1000);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        "buildbot-volume-permissions"
    );
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/component"],
        "worker"
    );
    assert_eq!(pod["metadata"]["labels"]["tier"], "worker");
    assert!(pod["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"].is_array());
    assert_eq!(
        resp["auditAnnotations"]["injected"],
        "fsGroup,gracefulStop,labels,resources,volumeOwnership"
    );
    assert_eq!(resp["auditAnnotations"]["role"], "worker");
}

#[tokio::test]
async fn warnings_reach_the_client() {
    let srv = start(|_| {}).await;
    let mut pod = seed_worker_pod();
    pod["spec"]["terminationGracePeriodSeconds"] = 60.into();
    let v = srv.post(&admission_review("u1", pod)).await.json();
    let warnings = v["response"]["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("terminationGracePeriodSeconds=60")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn garbage_gets_a_clear_400_and_health_and_metrics_answer() {
    let srv = start(|_| {}).await;
    let reply = srv.post(b"{\"this is\": not json").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("not valid JSON"), "{}", reply.body);
    let reply = srv.post(br#"{"apiVersion":"v1","kind":"Pod"}"#).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("admission.k8s.io/v1"), "{}", reply.body);

    let too_big = vec![b' '; buildbot_webhook::server::MAX_BODY_BYTES + 1];
    assert_eq!(srv.post(&too_big).await.status, 413);

    let nginx = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                                   "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}});
    let v = srv.post(&admission_review("u2", nginx)).await.json();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"].get("patch").is_none());

    assert_eq!(srv.get("/healthz").await.status, 200);
    assert_eq!(srv.get("/readyz").await.status, 200);
    assert_eq!(srv.get("/nope").await.status, 404);
    let metrics = srv.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("buildbot_webhook_bad_requests_total 3"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("buildbot_webhook_reviews_total{outcome=\"skipped\"} 1"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let srv = start(|_| {}).await;
    assert_eq!(srv.get("/healthz").await.status, 200);

    let new_ca = Ca::new("rotated-ca");
    let (cert, key) = new_ca.leaf(&["localhost"]);
    // Key first, then cert: a half-written rotation must not break serving.
    write_atomic(&srv.dir.join("tls.key"), &key);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        srv.get("/healthz").await.status,
        200,
        "old certificate still served mid-rotation"
    );
    write_atomic(&srv.dir.join("tls.crt"), &cert);

    let mut picked_up = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if https(srv.addr, &new_ca.pem(), "localhost", "GET", "/healthz", b"")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            picked_up = true;
            break;
        }
    }
    assert!(picked_up, "new certificate served within 2.5 s");
    let err = https(srv.addr, &srv.ca.pem(), "localhost", "GET", "/healthz", b"")
        .await
        .unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "old CA no longer trusted: {err}"
    );
    assert!(srv
        .metrics
        .render()
        .contains("buildbot_webhook_certificate_reloads_total{result=\"ok\"} 1"));
}

#[tokio::test]
async fn wrong_server_name_is_refused_by_the_client() {
    let srv = start(|_| {}).await;
    let err = https(
        srv.addr,
        &srv.ca.pem(),
        "evil.example.com",
        "GET",
        "/healthz",
        b"",
    )
    .await
    .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn shutdown_finishes_the_review_in_flight() {
    let mut srv = start(|_| {}).await;
    let body = admission_review("in-flight", seed_worker_pod());
    let mut tls = tls_connect(srv.addr, &connector(&srv.ca.pem()), "localhost")
        .await
        .unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..100]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    srv.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(srv.addr).await.is_err(),
        "no new connections after shutdown starts"
    );

    tls.write_all(&body[100..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let reply = parse_reply(&raw).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["response"]["uid"], "in-flight");
    tokio::time::timeout(Duration::from_secs(5), &mut srv.done)
        .await
        .expect("server stops")
        .unwrap();
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_counted() {
    let srv = start(|c| c.max_connections = 1).await;
    let _held = tls_connect(srv.addr, &connector(&srv.ca.pem()), "localhost")
        .await
        .unwrap();
    let second = https(srv.addr, &srv.ca.pem(), "localhost", "GET", "/healthz", b"").await;
    assert!(second.is_err(), "second connection refused: {second:?}");
    assert!(srv
        .metrics
        .render()
        .contains("buildbot_webhook_connections_rejected_total 1"));
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let srv = start(|c| c.read_timeout = Duration::from_millis(300)).await;
    let mut tls = tls_connect(srv.addr, &connector(&srv.ca.pem()), "localhost")
        .await
        .unwrap();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "slowloris connection closed by the server");
}

#[tokio::test]
async fn bad_certificate_files_fail_at_start_with_the_path() {
    let dir = temp_dir("badcert");
    std::fs::write(dir.join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.join("tls.key"), "not a key").unwrap();
    let config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("tls.crt"),
        dir.join("tls.key"),
    );
    let err = Server::bind(config).await.err().expect("fails").to_string();
    assert!(
        err.contains("tls.crt") && err.contains("no PEM certificate"),
        "{err}"
    );
    let missing = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("nope.crt"),
        dir.join("tls.key"),
    );
    let err = Server::bind(missing)
        .await
        .err()
        .expect("fails")
        .to_string();
    assert!(err.contains("nope.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_certificate_under_load_loses_no_request() {
    let srv = start(|_| {}).await;
    let connector = connector(&srv.ca.pem());
    let body = admission_review("rot", seed_worker_pod());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (connector, body, stop, addr) =
            (connector.clone(), body.clone(), stop.clone(), srv.addr);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut n) = (0u32, 0u32);
            let mut conn = KeepAlive::connect(addr, &connector, "localhost")
                .await
                .expect("connect");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || n < 20 {
                n += 1;
                if n % 10 == 0 {
                    // New handshakes during the rotation too.
                    conn = KeepAlive::connect(addr, &connector, "localhost")
                        .await
                        .expect("reconnect during rotation");
                }
                let reply = conn.post("/mutate", &body).await.expect("no request lost");
                assert_eq!(reply.status, 200);
                ok += 1;
            }
            ok
        }));
    }
    // Five rotations to new certificates from the same CA, as cert-manager renews them.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (cert, key) = srv.ca.leaf(&["localhost"]);
        write_atomic(&srv.dir.join("tls.key"), &key);
        write_atomic(&srv.dir.join("tls.crt"), &cert);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("every connection finished without error");
    }
    assert!(total >= 64 * 20, "{total} reviews answered");
    let metrics = srv.metrics.render();
    let reloads: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("buildbot_webhook_certificate_reloads_total{result=\"ok\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(reloads >= 1, "{metrics}");
    assert_eq!(
        srv.metrics
            .reviews(buildbot_webhook::review::Outcome::Patched),
        total as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_beyond_the_connection_limit_is_refused_cleanly_and_recovers() {
    let srv = start(|c| c.max_connections = 8).await;
    let connector = connector(&srv.ca.pem());
    let body = admission_review("load", seed_worker_pod());
    let mut held = Vec::new();
    let (mut refused, mut served) = (0, 0);
    for _ in 0..32 {
        match KeepAlive::connect(srv.addr, &connector, "localhost").await {
            Ok(mut c) => match c.post("/mutate", &body).await {
                Ok(r) if r.status == 200 => {
                    served += 1;
                    held.push(c);
                }
                _ => refused += 1,
            },
            Err(_) => refused += 1,
        }
    }
    assert_eq!(served, 8, "the limit is served");
    assert_eq!(refused, 24, "the rest refused, not queued forever");
    // The held connections keep working under overload.
    for c in &mut held {
        assert_eq!(c.post("/mutate", &body).await.unwrap().status, 200);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = KeepAlive::connect(srv.addr, &connector, "localhost")
        .await
        .expect("accepting again");
    assert_eq!(again.post("/mutate", &body).await.unwrap().status, 200);
    assert!(srv
        .metrics
        .render()
        .contains("buildbot_webhook_connections_rejected_total 24"));
}

/// The chart sends namespaces labelled `pod-security.kubernetes.io/enforce=restricted` to
/// `/mutate/restricted`: no root chown init container there, which PodSecurity would reject.
#[tokio::test]
async fn each_pod_security_level_has_its_path() {
    let srv = start(|_| {}).await;
    let body = admission_review("5c1b-level", seed_master_pod());
    let patch_of = |reply: Reply| -> String {
        let v = reply.json();
        let patch = v["response"]["patch"].as_str().unwrap_or_default();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(patch)
                .unwrap(),
        )
        .unwrap()
    };
    let post = |path: &'static str| {
        let body = body.clone();
        let (addr, ca) = (srv.addr, srv.ca.pem());
        async move {
            https(addr, &ca, "localhost", "POST", path, &body)
                .await
                .expect("request")
        }
    };
    for (path, chown) in [
        ("/mutate", true),
        ("/mutate/privileged", true),
        ("/mutate/baseline", true),
        ("/mutate/restricted", false),
    ] {
        let reply = post(path).await;
        assert_eq!(reply.status, 200, "{path}");
        let patch = patch_of(reply);
        assert_eq!(
            patch.contains("buildbot-volume-permissions"),
            chown,
            "{path}: {patch}"
        );
        assert!(patch.contains("fsGroup"), "{path}: {patch}");
    }
    let reply = post("/mutate/strict").await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.body.contains("not a Pod Security level"),
        "{}",
        reply.body
    );
}
