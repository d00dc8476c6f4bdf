//! Progress bars: the one place the binary turns library progress events into terminal
//! output (libraries report through `radlens_core::Observer` and never draw).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps drawn with an indicatif `template`, on stderr.
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(template).expect("valid template"));
    pb
}
