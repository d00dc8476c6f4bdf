//! Radiology report text for radlens: report corpora (the IU X-ray collection,
//! `iu-xray:<dir>`) and a reproducible report-level held-out split. Text only, so the
//! language-model side of radlens builds without the image and DICOM stack.
//!
//! - [`corpus`]: reading a corpus named on the command line into [`Report`]s.
//! - [`split`]: which reports are held out (by de-duplicated, normalised text).
//! - [`tags`]: the corpus' curated tags and the findings decided from them.

pub mod corpus;
pub mod split;
pub mod tags;

mod error;

pub use corpus::{read_iu_xray, CorpusSpec, Report};
pub use error::{ReportError, Result};
pub use split::{normalised_text, ReportPart, ReportSplit};
pub use tags::{read_iu_xray_tags, Finding, ReportTags, FINDINGS};
