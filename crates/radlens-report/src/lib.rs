//! The radlens report engine, the library behind `radlens report ...` and the clinician
//! workbench. Text only (without the default `imaging` feature):
//!
//! - [`corpus`], [`split`]: report corpora (IU X-ray, `iu-xray:<dir>`) and the held-out split
//!   (by de-duplicated, normalised text).
//! - [`tags`]: the corpus' curated tags and the findings decided from them.
//! - [`text`]: sections and sentences; [`rules`]: the rule-file format.
//! - [`label`]: the CheXpert-style labeller and its evaluation against MeSH terms.
//! - [`score`]: BLEU-4, ROUGE-L and CheXpert-label F1 of generated reports.
//!
//! With `imaging` (the segmentation models):
//!
//! - [`measure`]: CTR, lung areas, opacity extent with SSN-sample intervals, plausibility.
//! - [`analysis`]: one image analysed once; [`findings`]: measurements as findings.
//! - [`regions`]: anatomical regions from the masks; [`search`]: queries in words.
//! - [`draft`], [`review`], [`history`]: the workbench's three other concepts;
//!   [`phrasing`]: draft sentences worded from real reports (all-MiniLM-L6-v2 retrieval);
//!   [`sweep`]: all of them on every image and patient of a dataset, with counts.
//! - [`vlm`]: the optional VLM route: MAIRA-2's prompts to an OpenAI-compatible endpoint,
//!   its grounded answer parsed back to boxes in the image's pixels.

pub mod corpus;
pub mod label;
pub mod rules;
pub mod score;
pub mod split;
pub mod tags;
pub mod text;

#[cfg(feature = "imaging")]
pub mod analysis;
#[cfg(feature = "imaging")]
pub mod draft;
#[cfg(feature = "imaging")]
pub mod findings;
#[cfg(feature = "imaging")]
pub mod history;
#[cfg(feature = "imaging")]
pub mod measure;
#[cfg(feature = "imaging")]
pub mod phrasing;
#[cfg(feature = "imaging")]
pub mod regions;
#[cfg(feature = "imaging")]
pub mod review;
#[cfg(feature = "imaging")]
pub mod search;
#[cfg(feature = "imaging")]
pub mod sweep;
#[cfg(feature = "imaging")]
pub mod vlm;

mod error;

pub use corpus::{read_iu_records, read_iu_xray, CorpusSpec, IuRecord, Report};
pub use error::{ReportError, Result};
pub use label::{Labeler, Labels, Mention, Observation, Status};
pub use split::{normalised_text, ReportPart, ReportSplit, SplitItem};
pub use tags::{read_iu_xray_tags, Finding, ReportTags, FINDINGS};
