//! Every workbench command on every image and patient of a dataset: draft (with the
//! patient's previous film and its notes as the prior), review (of the film's clinical
//! notes, else of the draft), search (every kind of query, and one radlens cannot
//! answer) and history (each patient's timeline), each image analysed once. The counts
//! prove that the engine runs everywhere; failures are collected, not fatal.

use crate::analysis::{Analysis, Models};
use crate::draft::{draft, DraftInputs};
use crate::history::{analyse_sample, patients, read_notes, studies_of, timeline};
use crate::label::Labeler;
use crate::phrasing::PhraseBank;
use crate::review::review;
use crate::search::search;
use crate::text::check_report_text;
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_io::attributes::PATIENT_ID;
use radlens_io::{Dataset, Sample};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The queries asked of every image: each kind of region search resolves, and one it
/// cannot (which must get the list of what can be searched).
pub const QUERIES: [&str; 14] = [
    "lungs",
    "heart",
    "right apex",
    "left apex",
    "lung bases",
    "right costophrenic angle",
    "left costophrenic angle",
    "hila",
    "retrocardiac region",
    "mediastinum",
    "opacity",
    "enlarged heart",
    "Pleural Effusion",
    "spleen",
];

/// A command that failed on a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub case: String,
    pub command: String,
    pub message: String,
}

/// What the sweep produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub dataset: String,
    pub images: usize,
    pub patients: usize,
    pub analysed: usize,
    /// Images the plausibility check refused (named, not measured).
    pub not_assessable: Vec<String>,
    pub drafts: usize,
    pub drafts_with_prior: usize,
    pub draft_finding_sentences: usize,
    /// Finding sentences worded from the phrase bank (with one).
    pub phrased_sentences: usize,
    pub reviews: usize,
    pub reviews_of_notes: usize,
    pub review_flags: usize,
    /// Clinical notes the review refused (empty or not English), with the reason; the
    /// draft is reviewed instead.
    pub notes_refused: Vec<Failure>,
    pub searches: usize,
    pub searches_resolved: usize,
    /// Unknown queries answered with the list of what can be searched.
    pub searches_explained: usize,
    pub histories: usize,
    pub history_intervals: usize,
    pub failures: Vec<Failure>,
}

impl SweepSummary {
    fn fail(&mut self, case: &str, command: &str, message: impl ToString) {
        self.failures.push(Failure {
            case: case.into(),
            command: command.into(),
            message: message.to_string(),
        });
    }

    /// Draft, review and search one analysed image.
    fn image(
        &mut self,
        case: &str,
        a: &Analysis,
        prior: Option<(&Analysis, Option<&str>)>,
        notes: Option<&str>,
        labeler: &Labeler,
        phrases: Option<&PhraseBank>,
    ) {
        if !a.measurements.plausibility.plausible {
            self.not_assessable.push(case.into());
        }
        let inputs = DraftInputs {
            prior: prior.map(|p| p.0),
            prior_report: prior.and_then(|p| p.1),
            indication: None,
            phrases,
        };
        let d = match draft(a, inputs, labeler) {
            Ok(d) => d,
            Err(e) => return self.fail(case, "draft", e),
        };
        self.drafts += 1;
        self.drafts_with_prior += usize::from(prior.is_some());
        let findings = d.sentences.iter().filter(|s| s.observation.is_some());
        self.draft_finding_sentences += findings.clone().count();
        self.phrased_sentences += findings.filter(|s| s.phrasing.is_some()).count();
        let text = match notes.map(|n| (n, check_report_text(n))) {
            Some((n, Ok(()))) => {
                self.reviews_of_notes += 1;
                n.to_string()
            }
            Some((_, Err(why))) => {
                self.notes_refused.push(Failure {
                    case: case.into(),
                    command: "review".into(),
                    message: why,
                });
                d.text()
            }
            None => d.text(),
        };
        match review(a, &text, labeler) {
            Ok(r) => {
                self.reviews += 1;
                self.review_flags += r.flags.len();
            }
            Err(e) => self.fail(case, "review", e),
        }
        for q in QUERIES {
            let r = search(a, q);
            self.searches += 1;
            self.searches_resolved += usize::from(r.found);
            self.searches_explained += usize::from(!r.found && r.note.contains("can search for"));
        }
    }
}

/// Run the sweep over `ds` (images read from their samples; clinical notes from
/// `dataset_dir`'s metadata.csv where present), counting images off to `progress`.
pub fn sweep(
    models: &Models,
    ds: &Dataset,
    dataset_dir: &Path,
    labeler: &Labeler,
    phrases: Option<&PhraseBank>,
    progress: &dyn Observer<Count>,
) -> SweepSummary {
    let mut out = SweepSummary {
        dataset: ds.spec_name.clone(),
        images: ds.samples.len(),
        ..SweepSummary::default()
    };
    let notes = match read_notes(dataset_dir) {
        Ok(n) => n,
        Err(e) => {
            out.fail(&ds.spec_name, "read notes", e);
            Default::default()
        }
    };
    // each patient's films in time order; a film without a patient id is its own group
    let mut groups: Vec<(Option<String>, Vec<&Sample>)> = Vec::new();
    for (p, _) in patients(ds) {
        match studies_of(ds, &p) {
            Ok(s) => groups.push((Some(p), s)),
            Err(e) => out.fail(&p, "history", e),
        }
    }
    out.patients = groups.len();
    groups.extend(
        ds.samples
            .iter()
            .filter(|s| s.attributes.category(PATIENT_ID).is_none())
            .map(|s| (None, vec![s])),
    );
    let mut done = 0;
    for (patient, samples) in groups {
        let mut analysed: Vec<(&Sample, Analysis)> = Vec::new();
        for s in samples {
            done += 1;
            progress.observe(&Count {
                done,
                total: out.images as u64,
            });
            let a = match analyse_sample(models, s) {
                Ok(a) => a,
                Err(e) => {
                    out.fail(&s.id, "analyse", e);
                    continue;
                }
            };
            out.analysed += 1;
            let prior = analysed
                .last()
                .map(|(p, pa)| (pa, notes.get(&p.id).map(String::as_str)));
            let note = notes.get(&s.id).map(String::as_str);
            out.image(&s.id, &a, prior, note, labeler, phrases);
            analysed.push((s, a));
        }
        if let Some(p) = patient {
            let (samples, analyses): (Vec<&Sample>, Vec<Analysis>) = analysed.into_iter().unzip();
            let h = timeline(&p, &samples, &analyses, &notes, labeler);
            out.histories += 1;
            out.history_intervals += h.intervals.len();
        }
    }
    out
}
