//! Segmentation metrics and their summaries: overlap (Dice, IoU), surface
//! distances (HD95, ASSD) in millimetres, the distribution metrics of
//! stochastic segmentation (GED^2, sample diversity, Hungarian-matched IoU,
//! sample plausibility), calibration (ECE, NLL), bootstrap confidence intervals,
//! AUROC with a stratified bootstrap interval, paired comparisons of two models, and
//! subgroup differences; and the reports that show them (SVG plots in offline HTML).

pub mod assignment;
pub mod auroc;
pub mod calibration;
pub mod compare;
pub mod distance;
pub mod ged;
pub mod groups;
pub mod html;
pub mod overlap;
pub mod plausibility;
pub mod plot;
pub mod stats;

pub use auroc::{auroc, bootstrap_auroc_ci};
pub use calibration::{expected_calibration_error, negative_log_likelihood};
pub use distance::{surface_distances, SurfaceDistances};
pub use ged::{generalized_energy_distance, hungarian_matched_iou, GedResult};
pub use overlap::{dice, iou};
pub use stats::{bootstrap_mean_ci, Summary};
