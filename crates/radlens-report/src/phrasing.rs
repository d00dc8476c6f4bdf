//! Draft phrasing from a real report corpus: for each finding a draft states, the
//! closest real findings/impression sentence that states the same thing.
//!
//! Two steps, so that the wording is a radiologist's and the claim stays radlens':
//! the labeller first keeps only corpus sentences that state exactly the draft's claim
//! (one observation, the same status and side, no severity, change or history words
//! that radlens did not measure, no anonymisation marks); all-MiniLM-L6-v2 then ranks
//! those by cosine similarity to radlens' own template sentence. Without a sentence
//! that passes the filter, the draft keeps its template.

use crate::corpus::IuRecord;
use crate::error::{ReportError, Result};
use crate::label::{Labeler, Laterality, Mention, Observation, Status};
use crate::split::fold_text;
use crate::text::Section;
use radlens_lm::embed::{Embeddings, SentenceEncoder};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Longest corpus sentence taken as a phrasing, in words: longer ones say more than
/// one thing.
const MAX_WORDS: usize = 16;

/// What a draft sentence claims: the query a phrasing must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub observation: Observation,
    pub status: Status,
    pub laterality: Option<Laterality>,
    /// radlens' template sentence without its numbers, the text ranked against.
    pub template: String,
}

/// A corpus sentence that states exactly one claim.
#[derive(Debug, Clone, PartialEq)]
struct BankSentence {
    text: String,
    observation: Observation,
    status: Status,
    laterality: Option<Laterality>,
    section: Section,
    /// The first report it occurs in and how many reports use it.
    uid: String,
    reports: usize,
}

/// The phrasing chosen for a draft sentence, with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phrasing {
    /// The corpus sentence as written.
    pub sentence: String,
    /// Report it was taken from (the first of `reports` that use it word for word).
    pub uid: String,
    pub section: Section,
    pub reports: usize,
    /// Cosine similarity to radlens' template sentence.
    pub similarity: f32,
    /// Corpus sentences that state the same claim (the ones ranked).
    pub candidates: usize,
}

/// Corpus sentences that state one claim each, with their embeddings.
pub struct PhraseBank {
    encoder: SentenceEncoder,
    sentences: Vec<BankSentence>,
    embeddings: Embeddings,
}

/// The single claim of a sentence's mentions, if it makes exactly one that radlens could
/// state: one observation among `wanted`, one status (no uncertain), one side, nothing
/// historical, no severity or change.
fn single_claim(
    mentions: &[&Mention],
    wanted: &[Observation],
) -> Option<(Observation, Status, Option<Laterality>)> {
    let first = mentions.first()?;
    let same = mentions.iter().all(|m| {
        m.observation == first.observation
            && m.status == first.status
            && m.laterality == first.laterality
    });
    let plain = mentions
        .iter()
        .all(|m| !m.historical && m.severity.is_none() && m.change.is_none());
    (same && plain && first.status != Status::Uncertain && wanted.contains(&first.observation))
        .then_some((first.observation, first.status, first.laterality))
}

/// Locations finer than a side, which radlens' masks do not establish: a sentence
/// naming one would claim more than was measured.
const LOCATIONS: [&str; 14] = [
    "lobe",
    "lobes",
    "base",
    "bases",
    "basilar",
    "bibasilar",
    "apex",
    "apical",
    "upper",
    "lower",
    "middle",
    "lingula",
    "perihilar",
    "retrocardiac",
];

/// Whether a corpus sentence reads as a finished sentence radlens may reuse.
fn reusable(sentence: &str) -> bool {
    let words: Vec<String> = sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    (2..=MAX_WORDS).contains(&words.len())
        && !sentence.contains("XXXX")
        && !sentence.chars().any(|c| c.is_ascii_digit())
        && !words.iter().any(|w| LOCATIONS.contains(&w.as_str()))
}

/// The sentences of `records` that state one claim about `wanted`, de-duplicated word
/// for word (case and spacing folded), in first-seen order.
fn collect(records: &[IuRecord], labeler: &Labeler, wanted: &[Observation]) -> Vec<BankSentence> {
    let mut out: Vec<BankSentence> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in records {
        let mentions = labeler.mentions(&r.document());
        let mut by_sentence: Vec<(usize, Vec<&Mention>)> = Vec::new();
        for m in &mentions {
            match by_sentence.last_mut() {
                Some((start, ms)) if *start == m.sentence_start => ms.push(m),
                _ => by_sentence.push((m.sentence_start, vec![m])),
            }
        }
        for (_, ms) in by_sentence {
            let section = ms[0].section;
            let text = ms[0].sentence.trim();
            if !matches!(section, Section::Findings | Section::Impression) || !reusable(text) {
                continue;
            }
            let Some((observation, status, laterality)) = single_claim(&ms, wanted) else {
                continue;
            };
            match seen.get(&fold_text(text)) {
                Some(&i) => out[i].reports += 1,
                None => {
                    seen.insert(fold_text(text), out.len());
                    out.push(BankSentence {
                        text: text.to_string(),
                        observation,
                        status,
                        laterality,
                        section,
                        uid: r.uid.clone(),
                        reports: 1,
                    });
                }
            }
        }
    }
    out
}

impl PhraseBank {
    /// Collect and embed the sentences of `records` that state one claim about `wanted`.
    pub fn build(
        records: &[IuRecord],
        labeler: &Labeler,
        encoder: SentenceEncoder,
        wanted: &[Observation],
    ) -> Result<Self> {
        let sentences = collect(records, labeler, wanted);
        if sentences.is_empty() {
            return Err(ReportError::Invalid(
                "the phrasing corpus has no sentence that states one of the draft's findings"
                    .into(),
            ));
        }
        let texts: Vec<&str> = sentences.iter().map(|s| s.text.as_str()).collect();
        let embeddings = encoder
            .embed(&texts)
            .map_err(|e| ReportError::Invalid(format!("embedding the phrasing corpus: {e}")))?;
        Ok(Self {
            encoder,
            sentences,
            embeddings,
        })
    }

    /// Number of distinct corpus sentences available.
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    /// True without sentences (never, for a built bank).
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The corpus sentence closest to `claim.template` among those that state the same
    /// claim; `None` when no corpus sentence states it.
    pub fn closest(&self, claim: &Claim) -> Result<Option<Phrasing>> {
        let matching: Vec<usize> = (0..self.sentences.len())
            .filter(|&i| {
                let s = &self.sentences[i];
                s.observation == claim.observation
                    && s.status == claim.status
                    && s.laterality == claim.laterality
            })
            .collect();
        if matching.is_empty() {
            return Ok(None);
        }
        let query = self
            .encoder
            .embed(&[claim.template.as_str()])
            .map_err(|e| ReportError::Invalid(format!("embedding a draft sentence: {e}")))?;
        let sims = self.embeddings.similarities(query.row(0));
        let best = matching
            .iter()
            .copied()
            .max_by(|&a, &b| sims[a].total_cmp(&sims[b]).then(b.cmp(&a)))
            .expect("matching is not empty");
        let s = &self.sentences[best];
        Ok(Some(Phrasing {
            sentence: s.text.clone(),
            uid: s.uid.clone(),
            section: s.section,
            reports: s.reports,
            similarity: sims[best],
            candidates: matching.len(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(uid: &str, findings: &str, impression: &str) -> IuRecord {
        IuRecord {
            uid: uid.into(),
            indication: String::new(),
            comparison: String::new(),
            findings: findings.into(),
            impression: impression.into(),
            mesh: vec![],
        }
    }

    #[test]
    fn only_single_plain_claims_are_collected() {
        let labeler = Labeler::builtin().unwrap();
        let records = [
            record(
                "1",
                "The heart is enlarged. Heart size is normal. No pneumothorax.",
                "Mild cardiomegaly. Right lower lobe opacity.",
            ),
            record(
                "2",
                "The heart is enlarged. Stable cardiomegaly. Cardiomegaly and right pleural effusion.",
                "Heart size XXXX.",
            ),
        ];
        let bank = collect(
            &records,
            &labeler,
            &[Observation::Cardiomegaly, Observation::LungOpacity],
        );
        let texts: Vec<(&str, Status, usize)> = bank
            .iter()
            .map(|s| (s.text.as_str(), s.status, s.reports))
            .collect();
        // severity ("mild"), change ("stable"), a second observation (effusion), an
        // unwanted observation (pneumothorax), a lobe and anonymisation marks are left out;
        // the repeated sentence counts twice
        assert_eq!(
            texts,
            vec![
                ("The heart is enlarged.", Status::Positive, 2),
                ("Heart size is normal.", Status::Negative, 1),
            ]
        );
    }
}
