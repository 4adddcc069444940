//! Where a run shows its per-epoch bar and epoch lines. A lone run draws on
//! the terminal; runs trained side by side (`hsuga experiment --jobs`) share
//! one `MultiProgress`, so their bars stack instead of overwriting each
//! other, and each line carries the run's label so interleaved lines stay
//! readable.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The display a run reports to (only consulted when the run's
/// `train.progress` is on).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    shared: Option<MultiProgress>,
    label: String,
}

impl Progress {
    /// Bars inside `bars`, lines prefixed with `label`.
    pub fn shared(bars: &MultiProgress, label: impl Into<String>) -> Self {
        Self {
            shared: Some(bars.clone()),
            label: label.into(),
        }
    }

    fn prefix(&self) -> String {
        if self.label.is_empty() {
            String::new()
        } else {
            format!("{} ", self.label)
        }
    }

    /// The bar of one epoch's `len` batches.
    pub(crate) fn epoch_bar(&self, epoch: usize, len: u64) -> ProgressBar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}epoch {epoch:>3}", self.prefix()));
        match &self.shared {
            Some(m) => m.add(bar),
            None => bar,
        }
    }

    /// One finished line (above the bars when they are shared).
    pub fn println(&self, line: &str) {
        let line = format!("{}{line}", self.prefix());
        match &self.shared {
            // Drawing fails only when the terminal is gone; the line is
            // also in the run's log files.
            Some(m) if !m.is_hidden() => m.println(line).unwrap_or(()),
            // Hidden bars (no terminal) would swallow the line.
            _ => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_bars_carry_the_label() {
        let hidden = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let p = Progress::shared(&hidden, "[SASRec · 42]");
        assert_eq!(p.epoch_bar(3, 10).prefix(), "[SASRec · 42] epoch   3");
        assert_eq!(Progress::default().epoch_bar(12, 10).prefix(), "epoch  12");
    }
}
