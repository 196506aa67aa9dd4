//! Test support: certificates from a throwaway CA, and an HTTPS client that talks to the
//! webhook exactly as the API server does (trusting only the CA, checking the server name).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A CA that signs serving certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate and key (PEM) for the given DNS names / IPs.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "bbwh-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a file atomically (write + rename), as the kubelet swaps Secret volumes.
pub fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TLS client that trusts only `ca_pem`.
pub fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A TLS connection to `addr`, verifying the server as `server_name` (no Nagle: requests and
/// answers are small).
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
    server_name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// One HTTP/1.1 request on a new TLS connection, verified against `ca_pem` and `server_name`.
pub async fn https(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    server_name: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Reply, String> {
    let mut tls = tls_connect(addr, &connector(ca_pem), server_name).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(body).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // A server that closes without close_notify still gave us what it sent.
    let _ = tls.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok(Reply {
        status,
        body: body.to_string(),
    })
}

/// An AdmissionReview v1 as the API server sends it, for the given object.
pub fn admission_review(uid: &str, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ci",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .unwrap()
}

/// The seed write-up's worker pod as its Deployment creates it (defaults filled in by the API server).
pub fn seed_worker_pod() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "worker-3607067131-", "namespace": "ci",
                     "labels": {"app": "buildbot", "tier": "worker", "pod-template-hash": "3607067131"}},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "containers": [{
                "name": "worker", "image": "buildbot/buildbot-worker:master",
                "env": [{"name": "BUILDMASTER", "value": "master"}, {"name": "BUILDMASTER_PORT", "value": "9989"},
                        {"name": "WORKERNAME", "value": "example-worker"}, {"name": "WORKERPASS", "value": "pass"}],
                "resources": {},
                "volumeMounts": [{"name": "worker-storage", "mountPath": "/buildbot"}],
                "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"
            }],
            "volumes": [{"name": "worker-storage", "persistentVolumeClaim": {"claimName": "worker-pv-claim"}}]
        }
    })
}

/// A keep-alive HTTP/1.1 client over one TLS connection, for load tests and the benchmark.
pub struct KeepAlive {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl KeepAlive {
    pub async fn connect(
        addr: std::net::SocketAddr,
        connector: &TlsConnector,
        server_name: &str,
    ) -> Result<Self, String> {
        let stream = tls_connect(addr, connector, server_name).await?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Appends what the connection has next to the buffer; `closed` is the error at EOF.
    async fn read_more(&mut self, closed: &str) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(closed.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One POST on the open connection; the response is read by its Content-Length.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<Reply, String> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        self.stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        self.stream.flush().await.map_err(|e| e.to_string())?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more("connection closed before the response")
                .await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.trim().parse().unwrap_or(0))
            })
            .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
        while self.buf.len() < head_end + length {
            self.read_more("connection closed mid-body").await?;
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&self.buf[head_end..head_end + length]).to_string(),
        })
    }
}

/// A master pod as the write-up had it.
pub fn seed_master_pod() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "master-3038604518-", "namespace": "ci", "labels": {"app": "buildbot", "tier": "master"}},
        "spec": {
            "containers": [{"name": "master", "image": "buildbot/buildbot-master:master",
                            "env": [{"name": "BUILDBOT_CONFIG_DIR", "value": "config"}, {"name": "BUILDBOT_WORKER_PORT", "value": "9989"}],
                            "ports": [{"containerPort": 8080}, {"containerPort": 9989}],
                            "volumeMounts": [{"name": "master-persistent-storage", "mountPath": "/var/lib/buildbot"}]}],
            "volumes": [{"name": "master-persistent-storage", "persistentVolumeClaim": {"claimName": "master-pv-claim"}}]
        }
    })
}

/// A large pod: a worker with 19 sidecars, each with env and mounts.
pub fn large_pod() -> serde_json::Value {
    let containers: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            serde_json::json!({
                "name": format!("c{i}"),
                "image": if i == 0 { "buildbot/buildbot-worker:v4.3.0".to_string() } else { format!("registry.example.com/sidecar-{i}:1.0") },
                "env": (0..10).map(|j| serde_json::json!({"name": format!("VAR_{j}"), "value": "x".repeat(20)})).collect::<Vec<_>>(),
                "volumeMounts": [{"name": "data", "mountPath": format!("/data/{i}"), "subPath": format!("c{i}")}],
                "ports": [{"containerPort": 8000 + i}]
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "big-", "namespace": "ci", "labels": {"app": "buildbot", "tier": "worker"},
                     "annotations": {"note": "y".repeat(512)}},
        "spec": {"containers": containers, "volumes": [{"name": "data", "hostPath": {"path": "/srv/data"}}]}
    })
}

/// A pod that is not Buildbot's.
pub fn nginx_pod() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    })
}
