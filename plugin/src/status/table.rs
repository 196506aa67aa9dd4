//! The `status` table for a terminal.

use std::fmt::Write as _;

use super::Status;

/// The table: one line per component, Buildbot's view, then the hints.
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<12} {:<24} {:<6} STATUS",
        "COMPONENT", "KIND", "NAME", "READY"
    );
    for c in &s.components {
        let state = if !c.exists {
            "missing"
        } else if c.done() {
            "Ready"
        } else {
            "NotReady"
        };
        let _ = writeln!(
            out,
            "{:<10} {:<12} {:<24} {:<6} {state}",
            c.label(),
            c.kind,
            c.name,
            format!("{}/{}", c.ready, c.wanted)
        );
    }
    if let Some(b) = &s.buildbot {
        let _ = writeln!(
            out,
            "\nBuildbot: {}/{} workers connected, {} builds running, {} build requests queued",
            b.workers_connected.len(),
            b.workers_configured.len(),
            b.builds_running.len(),
            b.build_requests_queued
        );
        for r in &b.builds_running {
            let _ = writeln!(
                out,
                "  running: {} #{} on {}",
                r.builder, r.number, r.worker
            );
        }
    }
    if !s.hints.is_empty() {
        let _ = writeln!(out, "\nHints:");
        for h in &s.hints {
            let _ = writeln!(out, "  - {h}");
        }
    }
    out
}
