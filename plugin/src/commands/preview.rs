//! `preview`: what the admission webhook would do to manifests, offline.

use std::io::Write as _;
use std::process::ExitCode;

use crate::cli::{Cli, PreviewArgs};
use crate::frontend::{load_policy, read_inputs};
use crate::output;
use crate::preview::preview;

/// `kubectl buildbot preview`. With `--diff`, exits 1 when something would change (like
/// `kubectl diff`).
pub fn run(_cli: &Cli, args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let mut results = Vec::new();
    for (name, text) in read_inputs(&args.filename)? {
        results.extend(preview(&text, &name, &policy)?);
    }
    let stderr = &mut std::io::stderr();
    for r in &results {
        for w in &r.warnings {
            writeln!(stderr, "Warning: {}: {w}", r.id)?;
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
        return Ok(if any {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let objects: Vec<_> = results.into_iter().map(|r| r.after).collect();
    out.write_all(output::render(&objects, args.output).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
