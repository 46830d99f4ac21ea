//! A progress bar on stderr while a scenario runs. It is drawn only when both stdout and
//! stderr are terminals and the JSON report does not go to stdout, so that piped output and
//! logs stay free of control sequences.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// How often a time-based bar moves.
const TICK_INTERVAL: Duration = Duration::from_millis(200);

/// Returns whether a progress bar should be drawn, given the `--json` path of the run.
/// `-` as the path sends the JSON report to stdout.
pub fn wanted(json: Option<&Path>) -> bool {
    let json_to_stdout = json.is_some_and(|path| path == Path::new("-"));
    !json_to_stdout && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A progress bar, or nothing when it is hidden. Dropping it clears the bar.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Creates a bar that counts up to `total` items, such as messages sent or connections
    /// opened.
    pub fn counter(shown: bool, total: u64, unit: &str) -> Progress {
        let bar = shown.then(|| {
            let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{elapsed}} {{msg}}");
            let bar = ProgressBar::new(total);
            bar.set_style(style(&template));
            bar
        });
        Progress { bar, ticker: None }
    }

    /// Creates a bar that fills over `length` of wall time, for scenarios that run for a set
    /// time.
    pub fn timed(shown: bool, length: Duration) -> Progress {
        let Some(bar) = shown.then(|| ProgressBar::new(length.as_secs().max(1))) else {
            return Progress {
                bar: None,
                ticker: None,
            };
        };
        bar.set_style(style("{bar:40} {pos}/{len} s {msg}"));
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut interval = tokio::time::interval(TICK_INTERVAL);
            loop {
                interval.tick().await;
                ticking.set_position(start.elapsed().as_secs().min(ticking.length().unwrap_or(0)));
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    pub fn inc(&self, delta: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(delta);
        }
    }

    /// Sets the text after the bar, such as the current phase or counts.
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// Removes the bar from the terminal.
    pub fn finish(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the progress templates are valid")
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_to_stdout_hides_bar() {
        assert!(!wanted(Some(Path::new("-"))));
    }

    #[tokio::test]
    async fn hidden_bar_ignores_updates() {
        let mut progress = Progress::counter(false, 10, "messages");

        progress.inc(3);
        progress.set_message("draining");
        progress.finish();

        assert!(!progress.is_shown());
    }

    #[tokio::test]
    async fn shown_bar_can_be_finished() {
        let mut progress = Progress::timed(true, Duration::from_secs(2));
        assert!(progress.is_shown());

        progress.finish();

        assert!(!progress.is_shown());
    }
}
