//! `kubectl-buildbot`: deploy, preview, scale and inspect Buildbot on Kubernetes.
//! Installed on the PATH, it runs as `kubectl buildbot ...`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use buildbot_webhook::policy::Policy;
use clap::{CommandFactory as _, Parser as _};

use kubectl_buildbot::cli::{Cli, Command, PreviewArgs};
use kubectl_buildbot::{output, preview};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let diff_mode = matches!(&cli.command, Command::Preview(a) if a.diff);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Like `kubectl diff`: 1 means differences, so errors are 2 there.
            ExitCode::from(if diff_mode { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Preview(args) => preview(&args),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kubectl-buildbot", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("kubectl-buildbot {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a policy file, or the defaults.
fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else { return Ok(Policy::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy file {}", path.display()))?;
    Policy::from_yaml(&text).with_context(|| format!("policy file {}", path.display()))
}

/// Reads `-f` inputs: files, or `-` for standard input.
fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
                Ok(("<stdin>".to_string(), text))
            } else {
                let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
                Ok((f.display().to_string(), text))
            }
        })
        .collect()
}

fn preview(args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let mut results = Vec::new();
    for (name, text) in read_inputs(&args.filename)? {
        results.extend(preview::preview(&text, &name, &policy)?);
    }
    let stderr = &mut std::io::stderr();
    for r in &results {
        for w in &r.warnings {
            writeln!(stderr, "Warning: {}: {}", r.id, w.trim_start_matches("kubectl-buildbot: "))?;
        }
    }
    let out = &mut std::io::stdout().lock();
    if args.diff {
        let mut any = false;
        for r in results.iter().filter(|r| r.changed()) {
            any = true;
            out.write_all(output::diff(&r.id, &r.before, &r.after).as_bytes())?;
            for c in &r.changes {
                writeln!(stderr, "{}: {}: {}", r.id, c.mutation, c.detail)?;
            }
        }
        return Ok(if any { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    let objects: Vec<_> = results.into_iter().map(|r| r.after).collect();
    out.write_all(output::render(&objects, args.output).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
