//! `report.html` of each evaluation command (and a run's `curves.html`): its summary as
//! tables and SVG plots
//! (radlens-eval's [`radlens_eval::html::Page`] and [`radlens_eval::plot`]), one
//! self-contained file that opens offline.

mod curves;
mod eval;
mod robustness;
mod shift;
mod subgroups;

pub use curves::{curves_report, CURVES_FILE};
pub use eval::eval_report;
pub use robustness::robustness_report;
pub use shift::shift_report;
pub use subgroups::subgroups_report;

use crate::error::{Result, SegError};
use radlens_eval::plot::{Estimate, PlotError};
use std::path::Path;

/// The report's file name in a command's output folder.
pub const REPORT_FILE: &str = "report.html";

/// Writes `html` as `report.html` in `out`, atomically.
pub fn write_report(out: &Path, html: &str) -> Result<()> {
    Ok(radlens_core::atomic::write_atomic(
        &out.join(REPORT_FILE),
        html.as_bytes(),
    )?)
}

impl From<PlotError> for SegError {
    fn from(e: PlotError) -> Self {
        SegError::Invalid(e.to_string())
    }
}

/// An estimate from a mean and an optional interval (a point when it has none).
fn estimate(mean: f64, ci: Option<[f64; 2]>) -> Estimate {
    let [low, high] = ci.unwrap_or([mean, mean]);
    Estimate {
        value: mean,
        low,
        high,
    }
}
