//! Shared helpers for the cross-crate end-to-end tests: where the real tools are (installed
//! by `.ci/tools` on first use), and the repository's paths.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn cache() -> PathBuf {
    repo_root().join(".ci/cache")
}

/// Runs `.ci/tools` once per test process (it is idempotent and locked against other
/// processes), so a fresh machine needs nothing but `cargo test --workspace`.
pub fn ensure_tools() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let status = Command::new(repo_root().join(".ci/tools"))
            .status()
            .expect("run .ci/tools");
        assert!(
            status.success(),
            ".ci/tools failed: it installs helm, Buildbot and PostgreSQL for the tests"
        );
    });
}

/// The path of a tool the tests use: `helm`, `kubectl`, or a command of the Python venv
/// (`buildbot`, `buildbot-worker`, `kubernetes-validate`, `python`).
pub fn tool(name: &str) -> PathBuf {
    ensure_tools();
    for dir in ["bin", "venv/bin"] {
        let p = cache().join(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} not found under {} after .ci/tools",
        cache().display()
    );
}

/// The directory holding PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`).
pub fn postgres_bin_dir() -> PathBuf {
    ensure_tools();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect(
        "PostgreSQL server binaries under /usr/lib/postgresql/*/bin (installed by .ci/tools)",
    )
}

pub mod buildbot;
pub mod controlplane;
pub mod installation;
pub mod postgres;
pub mod webhook;

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kbb-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command: `Ok(stdout and stderr)` when it succeeds, `Err(the same)` otherwise.
pub fn output_of(command: &mut Command) -> Result<String, String> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    result_of(&out)
}

/// [`output_of`], with `stdin` written to the command's standard input.
pub fn output_with_stdin(command: &mut Command, stdin: &str) -> Result<String, String> {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    // The command may rightly exit before reading everything; its output says why.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    result_of(&child.wait_with_output().unwrap())
}

/// A finished command's stdout and stderr: `Ok` when it succeeded, `Err` otherwise.
pub fn result_of(out: &std::process::Output) -> Result<String, String> {
    let text = text_of(out);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// A finished command's stdout, then its stderr.
pub fn text_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The real `kubernetes-validate --strict` on objects, for a Kubernetes version ("1.34.0").
pub fn kubernetes_validate(objects: &[serde_json::Value], version: &str) -> Result<String, String> {
    use kubectl_buildbot::output::{render, Format};
    let file = temp_dir("validate").join("objects.yaml");
    std::fs::write(&file, render(objects, Format::Yaml)).unwrap();
    output_of(
        Command::new(tool("kubernetes-validate"))
            .args(["--strict", "-k", version])
            .arg(&file),
    )
}

/// The newest modification time of the files under `dirs` (recursively).
fn newest(dirs: &[PathBuf]) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(modified);
        }
    }
    newest
}

/// The path of one of the workspace's binaries (`kubectl-buildbot`, `buildbot-webhook`), as
/// `cargo test --workspace` builds them next to the test executables. When that one is
/// missing or older than the sources (only this crate's tests were built), builds it first,
/// into a target directory of its own so that it never waits on the lock of the build that
/// runs these tests.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let built = profile_dir.join(name);
    let root = repo_root();
    let sources = newest(&[
        root.join("policy/src"),
        root.join("plugin/src"),
        root.join("webhook/src"),
        root.join("Cargo.lock"),
    ]);
    let fresh = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m >= sources)
    };
    if fresh(&built) {
        return built;
    }
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let target = repo_root().join("target/e2e-bins");
    let package = match name {
        "buildbot-webhook" => "buildbot-webhook",
        _ => "kubectl-buildbot",
    };
    output_of(
        Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(repo_root()),
    )
    .unwrap_or_else(|e| panic!("cannot build {name}: {e}"));
    target.join("debug").join(name)
}

/// `(code, severity, first object)` of each finding of a `kubectl buildbot doctor -o json`
/// report, in its order.
pub fn doctor_findings(report: &serde_json::Value) -> Vec<(String, String, String)> {
    let field = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or_default().to_string();
    report["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let object = f["objects"][0].as_str().unwrap_or_default().to_string();
            (field(f, "code"), field(f, "severity"), object)
        })
        .collect()
}
