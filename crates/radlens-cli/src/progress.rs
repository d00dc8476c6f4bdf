//! Progress bars: the one place the binary turns library progress events into terminal
//! output (libraries report through `radlens_core::Observer` and never draw).

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::OnceLock;

/// A bar of `len` steps drawn with an indicatif `template`, on stderr.
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(template).expect("valid template"));
    pb
}

/// A bar made on first use, when a library's first event gives its length, so that a
/// command that fails before any progress draws no empty bar.
pub struct LazyBar {
    template: &'static str,
    bar: OnceLock<ProgressBar>,
}

impl LazyBar {
    pub fn new(template: &'static str) -> Self {
        Self {
            template,
            bar: OnceLock::new(),
        }
    }

    /// The bar, made with length `len` if it does not exist yet.
    pub fn get(&self, len: u64) -> &ProgressBar {
        self.bar.get_or_init(|| bar(len, self.template))
    }

    /// Finishes the bar, if it was made.
    pub fn finish(&self) {
        if let Some(pb) = self.bar.get() {
            pb.finish();
        }
    }
}
