//! Printing a report: findings as blocks a person reads top to bottom (like a compiler's
//! diagnostics), or the whole report as JSON or YAML for tools.

use std::fmt::Write as _;

use super::{Report, Severity};

/// The human form: one block per finding, then a summary line.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    if report.installations.is_empty() {
        out.push_str("No Buildbot pods or workloads found.\n");
    }
    for i in &report.installations {
        let _ = writeln!(
            out,
            "Buildbot in namespace {}: master {}, workers {}, database {}",
            i.namespace,
            list(&i.masters),
            list(&i.workers),
            list(&i.databases)
        );
    }
    for f in &report.findings {
        let ns = if f.namespace.is_empty() {
            String::new()
        } else {
            format!(" [{}]", f.namespace)
        };
        let _ = write!(
            out,
            "\n{}[{}]{ns}: {}\n  objects: {}\n  why: {}\n  fix: {}\n",
            f.severity,
            f.code,
            f.trap,
            f.objects.join(", "),
            f.why,
            f.fix
        );
        if let Some(a) = &f.automatic {
            let _ = writeln!(out, "  automatic: {a}");
        }
    }
    for u in &report.unreadable {
        let _ = writeln!(out, "\nnot checked: {u}");
    }
    let _ = write!(
        out,
        "\n{} error(s), {} warning(s), {} info in {} installation(s)",
        report.count(Severity::Error),
        report.count(Severity::Warning),
        report.count(Severity::Info),
        report.installations.len()
    );
    if !report.findings.is_empty() {
        let mut codes: Vec<&str> = report.findings.iter().map(|f| f.code.id()).collect();
        codes.sort_unstable();
        codes.dedup();
        let _ = write!(
            out,
            "; `kubectl buildbot doctor --explain {}` tells the whole story",
            codes[0]
        );
    }
    out.push('\n');
    out
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        "-".to_string()
    } else {
        ids.join(" ")
    }
}

pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("a report serialises");
    s.push('\n');
    s
}

pub fn yaml(report: &Report) -> String {
    crate::yaml::to_string(report)
}
