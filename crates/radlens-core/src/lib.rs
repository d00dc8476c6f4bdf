//! Foundations every radlens crate shares, with no heavy dependencies (no tensors, no
//! images): files are written atomically, results are written and read by the same
//! serde types, runs resume from their own directories, and libraries report progress
//! through an [`Observer`] instead of printing.
//!
//! - [`atomic`]: write a file so that a reader never sees half of it.
//! - [`results`]: JSON and CSV result files.
//! - [`run`]: a run directory that is either new or resumed, never silently both.
//! - [`history`]: a per-step/per-epoch CSV log that a resumed run continues.
//! - [`observe`]: the progress convention (typed events, no printing in libraries).
//! - [`timing`]: the median-of-N timing loop behind `radlens bench`.

pub mod atomic;
pub mod history;
pub mod observe;
pub mod results;
pub mod run;
pub mod timing;

mod error;

pub use error::FileError;
pub use history::History;
pub use observe::{Observer, Silent};
pub use run::RunDir;
