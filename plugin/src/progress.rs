//! How `deploy --wait` shows progress: a spinner line on a terminal (indicatif: redrawn in
//! place, cut to the terminal's width, ticking while nothing changes), a plain line per
//! change anywhere else (CI logs, pipes).

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes.
pub trait Progress {
    /// The state now (called whenever it changes).
    fn update(&mut self, line: &str);
    /// The wait is over: `ready`, or it gave up.
    fn finish(&mut self, ready: bool);
}

/// A line per change: `waiting: database 1/1 ✓  master 0/1 ...`.
pub struct Lines<W: Write>(pub W);

impl<W: Write> Progress for Lines<W> {
    fn update(&mut self, line: &str) {
        // Progress is best effort: a closed stderr must not fail the deploy.
        let _ = writeln!(self.0, "waiting: {line}");
        let _ = self.0.flush();
    }

    fn finish(&mut self, _ready: bool) {}
}

/// A spinner on standard error.
pub struct Spinner(ProgressBar);

impl Spinner {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} Waiting for Buildbot ({elapsed}): {wide_msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }
}

impl Default for Spinner {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Spinner {
    fn update(&mut self, line: &str) {
        self.0.set_message(line.to_string());
    }

    fn finish(&mut self, ready: bool) {
        let template = if ready {
            "Ready after {elapsed}: {wide_msg}"
        } else {
            "Gave up after {elapsed}: {wide_msg}"
        };
        self.0
            .set_style(ProgressStyle::with_template(template).expect("a valid template"));
        self.0.finish();
    }
}

/// A spinner when standard error is a terminal, else plain lines on it.
pub fn on_stderr() -> Box<dyn Progress> {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() {
        Box::new(Spinner::new())
    } else {
        Box::new(Lines(std::io::stderr()))
    }
}
