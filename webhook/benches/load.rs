//! Load benchmark: the real webhook against the stack's own floor, side by side in one run.
//!
//! `cargo bench -p buildbot-webhook --bench load [-- --seconds 3]`
//! `cargo bench -p buildbot-webhook --bench load -- --against https://127.0.0.1:8443/mutate --against-ca DIR/ca.crt [--against-pid PID] [--against-name NAME]`
//! `cargo bench -p buildbot-webhook --bench load -- --make-cert DIR`
//!
//! Starts (a) the real `buildbot-webhook serve` binary and (b) a null server (this binary
//! again, with `--null-server`) on the very same transport (`server::transport`, axum over
//! rustls) that answers every review with a fixed "allowed, no patch". Drives both over
//! loopback HTTPS with keep-alive connections at concurrency 1, 16 and 64, with a mix of
//! seed-style worker and master pods, 20-container pods and non-Buildbot pods. Prints
//! throughput, p50/p99/p99.9 latency, peak RSS and CPU time per request (server and client)
//! of each, and the ratios webhook/null; then the webhook's RSS after at least 100,000
//! reviews. A second floor, `answers`, is the null server answering each request with the
//! webhook's own answer to it: what sending the answers costs, without finding them.
//!
//! `--against URL` (repeatable) drives any other HTTPS admission endpoint the same way in the
//! same run (a row each, and the ratio webhook/peer): for example kube-rs' `admission_controller`
//! example. `--make-cert DIR` writes `ca.crt`, `tls.crt` and `tls.key` (for `localhost`) for
//! such a peer to serve, and exits; `--against-ca` is the CA to trust, `--against-pid` the
//! process whose peak RSS to report.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use buildbot_webhook::metrics::Metrics;
use buildbot_webhook::server::tls::{server_config, CertReloader};
use buildbot_webhook::server::transport::{self, Limits};
use common::{admission_review, connector, KeepAlive};

const NULL_RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true,"status":{}}}"#;

fn arg(name: &str) -> Option<String> {
    args(name).into_iter().next()
}

/// Every value of a repeatable flag, in order.
fn args(name: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

/// The requests of the load, in order: 40% seed workers, 20% seed masters, 10% 20-container
/// pods, 30% not Buildbot.
fn mix() -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for (n, pod) in [
        (4, common::seed_worker_pod()),
        (2, common::seed_master_pod()),
        (1, common::large_pod()),
        (3, common::nginx_pod()),
    ] {
        for i in 0..n {
            bodies.push(admission_review(
                &format!("7c4a1f0e-0000-4000-8000-{i:012}"),
                pod.clone(),
            ));
        }
    }
    bodies
}

/// `--null-server [--answers] --listen ADDR --tls-cert F --tls-key F`: the floor, on the same
/// transport. It reads each body and answers a constant "allowed, no patch"; with
/// `--answers`, the webhook's own answer to each request of the [`mix`], worked out once at
/// start: what sending those answers costs, without the work of finding them.
fn null_server() {
    let answers: Arc<Vec<(Vec<u8>, axum::body::Bytes)>> =
        Arc::new(if std::env::args().any(|a| a == "--answers") {
            let policy = buildbot_policy::Policy::default();
            mix()
                .into_iter()
                .map(|body| {
                    let answer = buildbot_webhook::review::review(&body, &policy)
                        .unwrap()
                        .into_json();
                    (body, answer.into())
                })
                .collect()
        } else {
            Vec::new()
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(
            CertReloader::load(
                Path::new(&arg("--tls-cert").unwrap()),
                Path::new(&arg("--tls-key").unwrap()),
                provider.clone(),
            )
            .unwrap(),
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(certs, provider)));
        let listener = tokio::net::TcpListener::bind(arg("--listen").unwrap())
            .await
            .unwrap();
        // Reads the whole body, as the webhook does.
        let app = Router::new().route(
            "/mutate",
            post(move |body: axum::body::Bytes| async move {
                answers
                    .iter()
                    .find(|(request, _)| request.len() == body.len() && **request == *body)
                    .map_or(
                        axum::body::Bytes::from_static(NULL_RESPONSE),
                        |(_, answer)| answer.clone(),
                    )
            }),
        );
        let limits = Limits {
            max_connections: 1024,
            read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(1),
        };
        transport::serve(
            listener,
            acceptor,
            app,
            limits,
            Arc::new(Metrics::default()),
            std::future::pending(),
        )
        .await;
    });
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// CPU time (user and system) a process has used so far, in seconds (Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks_per_second(),
        _ => f64::NAN,
    }
}

/// The unit of /proc's CPU times (`getconf CLK_TCK`, asked once; 100 on every Linux we run
/// on).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak and current resident memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
}

struct Target {
    name: String,
    addr: SocketAddr,
    path: String,
    /// The process, when this benchmark started it (it is stopped with the benchmark).
    child: Option<Child>,
    pid: Option<u32>,
    /// The CA that signed its certificate.
    ca: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `https://HOST:PORT/PATH` as an address and a path.
fn parse_url(url: &str) -> (SocketAddr, String) {
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("--against {url}: an https:// URL"));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("--against {url}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("--against {url}: no address"));
    let path = if path.is_empty() { "/" } else { path };
    (addr, path.to_string())
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr}");
}

struct Run {
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies: Vec<u32>,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

/// `concurrency` keep-alive connections sending the mix for `duration`.
async fn drive(
    target: &Target,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    duration: Duration,
) -> Run {
    let (addr, path) = (target.addr, Arc::new(target.path.clone()));
    let tls = connector(&target.ca);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (tls, bodies, path) = (tls.clone(), bodies.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = KeepAlive::connect(addr, &tls, "localhost")
                .await
                .expect("connect");
            let (mut lat, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
            let mut i = t;
            while Instant::now() < deadline {
                let body = &bodies[i % bodies.len()];
                i += 1;
                let sent = Instant::now();
                match conn.post(&path, body).await {
                    Ok(r) if r.status == 200 => {
                        lat.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut run = Run {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        run.requests += lat.len() as u64;
        run.errors += errors;
        run.latencies.extend(lat);
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.latencies.sort_unstable();
    run
}

fn main() {
    if std::env::args().any(|a| a == "--null-server") {
        return null_server();
    }
    if let Some(dir) = arg("--make-cert") {
        let ca = common::Ca::new("bench-ca");
        let (cert, key) = ca.leaf(&["localhost"]);
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        println!(
            "wrote {}/{{ca.crt,tls.crt,tls.key}} (for localhost)",
            dir.display()
        );
        return;
    }
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("bbwh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = common::Ca::new("bench-ca");
    let (cert, key) = ca.leaf(&["localhost"]);
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));

    // Both servers get the same certificate and no logging sink.
    let spawn = |name: &'static str, program: PathBuf, args: &[&str]| {
        let addr = free_addr();
        let child = Command::new(program)
            .args(args)
            .args(["--listen", &addr.to_string()])
            .arg("--tls-cert")
            .arg(&crt)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} server: {e}"));
        Target {
            name: name.to_string(),
            addr,
            path: "/mutate".into(),
            pid: Some(child.id()),
            child: Some(child),
            ca: ca.pem(),
        }
    };
    let webhook = spawn(
        "webhook",
        PathBuf::from(env!("CARGO_BIN_EXE_buildbot-webhook")),
        &["serve", "--log-format", "json"],
    );
    let null = spawn("null", std::env::current_exe().unwrap(), &["--null-server"]);
    let answers = spawn(
        "answers",
        std::env::current_exe().unwrap(),
        &["--null-server", "--answers"],
    );
    // Each --against has its own --against-ca (else the last one given), --against-name and
    // --against-pid, by position.
    let (cas, names, pids) = (
        args("--against-ca"),
        args("--against-name"),
        args("--against-pid"),
    );
    let peers: Vec<Target> = args("--against")
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let (addr, path) = parse_url(url);
            let ca_file = cas
                .get(i)
                .or(cas.last())
                .expect("--against needs --against-ca FILE");
            Target {
                name: names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("peer{}", i + 1)),
                addr,
                path,
                child: None,
                pid: pids.get(i).and_then(|p| p.parse().ok()),
                ca: std::fs::read_to_string(ca_file)
                    .unwrap_or_else(|e| panic!("--against-ca {ca_file}: {e}")),
            }
        })
        .collect();

    let bodies = mix();
    let bodies = Arc::new(bodies);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        wait_listening(webhook.addr).await;
        wait_listening(null.addr).await;
        wait_listening(answers.addr).await;
        let mut targets = vec![&webhook, &null, &answers];
        for peer in &peers {
            wait_listening(peer.addr).await;
            targets.push(peer);
        }
        println!("load benchmark: {seconds} s per run, keep-alive HTTPS on loopback, 2 cores shared by client and server");
        println!("{:>4} {:>8} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7} {:>8} {:>8}", "conc", "server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "peakMiB", "errors", "srv µs", "cli µs");
        println!("(srv µs and cli µs: CPU time per request, user and system, of the server process and of this client)");
        let mut webhook_reviews = 0u64;
        for concurrency in [1usize, 16, 64] {
            let mut results = Vec::new();
            for target in &targets {
                drive(target, bodies.clone(), concurrency, Duration::from_millis(500)).await; // warm-up
                let server = target.pid.map(|pid| pid.to_string());
                let cpu = |pid: Option<&str>| pid.map_or(f64::NAN, cpu_seconds);
                let (server_before, client_before) = (cpu(server.as_deref()), cpu(Some("self")));
                let run = drive(target, bodies.clone(), concurrency, Duration::from_secs(seconds)).await;
                let per_request = |before: f64, after: f64| (after - before) * 1e6 / run.requests.max(1) as f64;
                let server_us = per_request(server_before, cpu(server.as_deref()));
                let client_us = per_request(client_before, cpu(Some("self")));
                let peak = target.pid.map_or(f64::NAN, |pid| rss_mib(pid).0);
                println!(
                    "{concurrency:>4} {:>8} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {peak:>8.1} {:>7} {server_us:>8.1} {client_us:>8.1}",
                    target.name, run.rps(), run.pct(0.5), run.pct(0.99), run.pct(0.999), run.errors
                );
                if target.name == "webhook" {
                    webhook_reviews += run.requests;
                }
                results.push(run);
            }
            for (i, other) in targets.iter().enumerate().skip(1) {
                println!(
                    "{:>4} ratio webhook/{}: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
                    "",
                    other.name,
                    results[0].rps() / results[i].rps(),
                    results[0].pct(0.5) / results[i].pct(0.5),
                    results[0].pct(0.99) / results[i].pct(0.99)
                );
            }
        }
        while webhook_reviews < 100_000 {
            webhook_reviews += drive(&webhook, bodies.clone(), 16, Duration::from_secs(2)).await.requests;
        }
        let (peak, now) = rss_mib(webhook.pid.unwrap());
        let (null_peak, _) = rss_mib(null.pid.unwrap());
        println!("webhook after {webhook_reviews} reviews: RSS {now:.1} MiB, peak {peak:.1} MiB (null server peak {null_peak:.1} MiB)");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
