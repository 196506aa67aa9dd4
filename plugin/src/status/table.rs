//! The `status` table for a terminal: kubectl-style columns (comfy-table sizes them to the
//! longest cell, by display width), then Buildbot's view and the hints.

use std::fmt::Write as _;

use comfy_table::{presets, ContentArrangement, Table};

use super::Status;

/// Columns separated by three spaces, like `kubectl get`, with no border and no trailing
/// spaces.
fn kubectl_style(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec())
        .add_rows(rows);
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    let mut out: String = table
        .lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

/// The table: one line per component, Buildbot's view, then the hints.
pub fn render_table(s: &Status) -> String {
    let rows = s
        .components
        .iter()
        .map(|c| {
            let state = if !c.exists {
                "missing"
            } else if c.done() {
                "Ready"
            } else {
                "NotReady"
            };
            vec![
                c.label().to_string(),
                c.kind.to_string(),
                c.name.clone(),
                format!("{}/{}", c.ready, c.wanted),
                state.to_string(),
            ]
        })
        .collect();
    let mut out = kubectl_style(&["COMPONENT", "KIND", "NAME", "READY", "STATUS"], rows);
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
    if let Some(l) = &s.latent {
        let _ = writeln!(
            out,
            "\nWorkers: a pod per build (latent), {} of {} slots in use",
            l.pods.len(),
            l.slots
        );
        if !l.pods.is_empty() {
            let rows = l
                .pods
                .iter()
                .map(|p| {
                    let builds = if p.builds.is_empty() {
                        "-".to_string()
                    } else {
                        p.builds.join(", ")
                    };
                    vec![p.pod.clone(), p.worker.clone(), p.phase.clone(), builds]
                })
                .collect();
            out.push_str(&kubectl_style(&["POD", "WORKER", "PHASE", "BUILDS"], rows));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_longest_cell_whatever_its_width() {
        let rows = vec![
            vec![
                "database".into(),
                "StatefulSet".into(),
                "a-rather-long-installation-name-postgres".into(),
                "1/1".into(),
                "Ready".into(),
            ],
            vec![
                "master".into(),
                "Deployment".into(),
                "a".into(),
                "0/1".into(),
                "NotReady".into(),
            ],
            vec![
                "workers".into(),
                "StatefulSet".into(),
                "ü✓".into(),
                "2/2".into(),
                "Ready".into(),
            ],
        ];
        let text = kubectl_style(&["COMPONENT", "KIND", "NAME", "READY", "STATUS"], rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // READY starts at the same column on every line, 3 spaces after the longest name.
        let ready_at = lines[0].find("READY").unwrap();
        assert_eq!(
            ready_at,
            "COMPONENT   KIND          ".len()
                + "a-rather-long-installation-name-postgres".len()
                + 3
        );
        for (line, ready) in lines[1..].iter().zip(["1/1", "0/1", "2/2"]) {
            let chars: Vec<char> = line.chars().collect();
            let width_before: usize = line[..line.find(ready).unwrap()].chars().count();
            assert_eq!(width_before, ready_at, "{text}");
            assert!(
                !chars.last().unwrap().is_whitespace(),
                "no trailing spaces: {line:?}"
            );
        }
    }
}
