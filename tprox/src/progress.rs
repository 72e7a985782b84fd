//! The one way tprox shows progress on long work: a bar on stderr where a person watches, and
//! nothing where stderr is a log (the commands print a line per finished step there instead).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps drawn with `template` (indicatif's syntax), or `None` when stderr is
/// not a terminal.
pub fn bar(len: u64, template: &str) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    })
}
