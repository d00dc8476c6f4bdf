//! Draft reports: findings and impression sentences built from the measurements, each
//! with its evidence (measurement, interval, region) and confidence, marked as AI output;
//! comparison with a prior image and report; text, JSON and MAIRA-2's grounded format.

use crate::analysis::Analysis;
use crate::error::Result;
use crate::findings::{measured_findings, Assessment, Evidence, MeasuredFinding};
use crate::label::{Labeler, Laterality, Observation, Status};
use crate::measure::Interval;
use crate::phrasing::{Claim, PhraseBank, Phrasing};
use crate::review::describe_evidence;
use crate::text::Section;
use serde::{Deserialize, Serialize};

/// How far a sentence can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// The measurement's interval lies clear of the threshold.
    Measured,
    /// The interval straddles the threshold: the sentence says it cannot assess.
    Uncertain,
    /// A statement about the study, not a finding (scope, comparison basis).
    Context,
}

/// One drafted sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftSentence {
    pub section: Section,
    pub text: String,
    pub observation: Option<Observation>,
    pub confidence: Confidence,
    pub evidence: Vec<Evidence>,
    /// Prior-report sentences this sentence confirms or contradicts.
    pub prior: Vec<PriorLink>,
    /// The real report sentence this sentence is worded from (with a phrase bank); the
    /// claim and its numbers stay radlens' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrasing: Option<Phrasing>,
}

/// A prior-report sentence and how the current measurement bears on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorLink {
    pub sentence: String,
    /// `confirms`, `contradicts` or `uncertain`.
    pub relation: String,
}

/// A measured change between the prior and the current image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub measurement: String,
    pub prior: Interval,
    pub current: Interval,
    /// Current minus prior, with the difference of the interval ends (conservative).
    pub difference: Interval,
}

impl Change {
    pub fn new(measurement: &str, prior: Interval, current: Interval) -> Self {
        Self {
            measurement: measurement.into(),
            prior,
            current,
            difference: Interval {
                value: current.value - prior.value,
                low: current.low - prior.high,
                high: current.high - prior.low,
            },
        }
    }

    /// `increased`, `decreased` or `unchanged` (the difference's interval contains 0).
    pub fn direction(&self) -> &'static str {
        match self.difference.side_of(0.0) {
            Some(true) => "increased",
            Some(false) if self.difference.high < 0.0 => "decreased",
            _ => "unchanged",
        }
    }
}

/// `radlens report draft` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub image: String,
    pub ai_generated: bool,
    pub indication: Option<String>,
    pub not_assessable: Option<String>,
    pub sentences: Vec<DraftSentence>,
    pub changes: Vec<Change>,
    pub caveat: String,
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

fn side_words(l: Option<Laterality>) -> &'static str {
    match l {
        Some(Laterality::Right) => "the right lung",
        Some(Laterality::Left) => "the left lung",
        Some(Laterality::Bilateral) => "both lungs",
        None => "the lungs",
    }
}

/// What radlens states for a measured finding: the claim (no numbers), the numbers
/// behind it, and how far it can be trusted.
struct Statement {
    claim: String,
    numbers: String,
    confidence: Confidence,
}

impl Statement {
    /// `claim (numbers).`
    fn sentence(&self) -> String {
        format!("{} ({}).", self.claim, self.numbers)
    }
}

/// The statement radlens makes for a measured finding.
fn state(f: &MeasuredFinding) -> Statement {
    let ev = &f.evidence;
    let (claim, numbers, confidence) = match (f.observation, f.assessment) {
        (Observation::Cardiomegaly, a) => {
            let i = ev[0].interval;
            let n = format!("CTR {:.2} [{:.2}, {:.2}]", i.value, i.low, i.high);
            match a {
                Assessment::Present => ("The heart is enlarged".into(), n, Confidence::Measured),
                Assessment::Absent => ("Heart size is normal".into(), n, Confidence::Measured),
                Assessment::Uncertain => (
                    "Heart size cannot be assessed reliably".into(),
                    format!("{n}, across the 0.50 threshold"),
                    Confidence::Uncertain,
                ),
            }
        }
        (_, a) => {
            let parts: Vec<String> = ev
                .iter()
                .map(|e| {
                    format!(
                        "{} {} [{}, {}]",
                        e.region,
                        pct(e.interval.value),
                        pct(e.interval.low),
                        pct(e.interval.high)
                    )
                })
                .collect();
            let n = format!("extent of the lung: {}", parts.join(", "));
            match a {
                Assessment::Present => (
                    format!("Airspace opacity in {}", side_words(f.laterality)),
                    n,
                    Confidence::Measured,
                ),
                Assessment::Absent => ("No airspace opacity".into(), n, Confidence::Measured),
                Assessment::Uncertain => (
                    "Airspace opacity cannot be assessed reliably".into(),
                    n,
                    Confidence::Uncertain,
                ),
            }
        }
    };
    Statement {
        claim,
        numbers,
        confidence,
    }
}

/// The observations a draft states (and so the ones worth phrasing from a corpus).
pub const STATED: [Observation; 2] = [Observation::Cardiomegaly, Observation::LungOpacity];

/// The claim a measured finding makes, for phrasing; `None` when the evidence is
/// uncertain (radlens then says so in its own words).
fn claim(f: &MeasuredFinding, template: &str) -> Option<Claim> {
    let status = match f.assessment {
        Assessment::Present => Status::Positive,
        Assessment::Absent => Status::Negative,
        Assessment::Uncertain => return None,
    };
    Some(Claim {
        observation: f.observation,
        status,
        laterality: f.laterality,
        template: template.into(),
    })
}

/// The measurement pairs compared with a prior.
pub fn changes(prior: &Analysis, current: &Analysis) -> Vec<Change> {
    let (p, c) = (&prior.measurements, &current.measurements);
    let mut out = Vec::new();
    let mut add = |name: &str, a: Option<Interval>, b: Option<Interval>| {
        if let (Some(a), Some(b)) = (a, b) {
            out.push(Change::new(name, a, b));
        }
    };
    add("ctr", p.ctr, c.ctr);
    add("lung_ratio", p.lung_ratio, c.lung_ratio);
    if p.area_unit == c.area_unit {
        add("right_lung_area", p.right_lung_area, c.right_lung_area);
        add("left_lung_area", p.left_lung_area, c.left_lung_area);
    }
    add(
        "opacity_extent_right",
        p.opacity.map(|o| o.right),
        c.opacity.map(|o| o.right),
    );
    add(
        "opacity_extent_left",
        p.opacity.map(|o| o.left),
        c.opacity.map(|o| o.left),
    );
    out
}

fn change_sentence(ch: &Change) -> String {
    let is_pct = ch.measurement.starts_with("opacity");
    let f = |v: f64| if is_pct { pct(v) } else { format!("{v:.2}") };
    let name = match ch.measurement.as_str() {
        "ctr" => "Cardiothoracic ratio".to_string(),
        "opacity_extent_right" => "Opacity extent in the right lung".to_string(),
        "opacity_extent_left" => "Opacity extent in the left lung".to_string(),
        "lung_ratio" => "Left/right lung area ratio".to_string(),
        m => m.replace('_', " "),
    };
    format!(
        "{name} {} since the prior: {} -> {} (difference {} [{}, {}]).",
        ch.direction(),
        f(ch.prior.value),
        f(ch.current.value),
        f(ch.difference.value),
        f(ch.difference.low),
        f(ch.difference.high)
    )
}

/// Prior-report sentences about `f`'s observation and whether `f` confirms them.
fn prior_links(
    f: &MeasuredFinding,
    prior_report: Option<&str>,
    labeler: &Labeler,
) -> Vec<PriorLink> {
    let Some(text) = prior_report else {
        return vec![];
    };
    let related = |o: Observation| match f.observation {
        Observation::LungOpacity => matches!(
            o,
            Observation::LungOpacity
                | Observation::Consolidation
                | Observation::Pneumonia
                | Observation::Edema
        ),
        x => o == x,
    };
    labeler
        .mentions(text)
        .into_iter()
        .filter(|m| !m.historical && related(m.observation))
        .map(|m| {
            let relation = match (m.status, f.assessment) {
                (_, Assessment::Uncertain) | (Status::Uncertain, _) => "uncertain",
                (Status::Positive, Assessment::Present)
                | (Status::Negative, Assessment::Absent) => "confirms",
                _ => "contradicts",
            };
            PriorLink {
                sentence: m.sentence,
                relation: relation.into(),
            }
        })
        .collect()
}

/// What a draft is drafted from besides the current image.
#[derive(Clone, Copy, Default)]
pub struct DraftInputs<'a> {
    pub prior: Option<&'a Analysis>,
    pub prior_report: Option<&'a str>,
    pub indication: Option<&'a str>,
    /// Real report sentences to word the findings with.
    pub phrases: Option<&'a PhraseBank>,
}

/// Draft a report for `current`, with an optional prior image and report; with a phrase
/// bank each measured finding is worded as the closest real report sentence that states
/// the same claim.
pub fn draft(current: &Analysis, inputs: DraftInputs, labeler: &Labeler) -> Result<Draft> {
    let DraftInputs {
        prior,
        prior_report,
        indication,
        phrases,
    } = inputs;
    let m = &current.measurements;
    let mut sentences = Vec::new();
    let not_assessable = (!m.plausibility.plausible).then(|| {
        format!(
            "The image cannot be assessed by radlens' models: {}.",
            m.plausibility.problems.join("; ")
        )
    });
    let findings = measured_findings(current);
    for f in &findings {
        let st = state(f);
        let phrasing = match (phrases, claim(f, &format!("{}.", st.claim))) {
            (Some(bank), Some(c)) => bank.closest(&c)?,
            _ => None,
        };
        let text = match &phrasing {
            Some(p) => format!("{} ({}).", p.sentence.trim_end_matches('.'), st.numbers),
            None => st.sentence(),
        };
        sentences.push(DraftSentence {
            section: Section::Findings,
            text,
            observation: Some(f.observation),
            confidence: st.confidence,
            evidence: f.evidence.clone(),
            prior: prior_links(f, prior_report, labeler),
            phrasing,
        });
    }
    let changes = match prior {
        Some(p) if m.plausibility.plausible && p.measurements.plausibility.plausible => {
            changes(p, current)
        }
        _ => vec![],
    };
    for ch in &changes {
        let observation = match ch.measurement.as_str() {
            "ctr" => Some(Observation::Cardiomegaly),
            s if s.starts_with("opacity") => Some(Observation::LungOpacity),
            _ => None,
        };
        if observation.is_none() && ch.direction() == "unchanged" {
            continue; // unchanged lung areas are not worth a sentence
        }
        sentences.push(DraftSentence {
            section: Section::Findings,
            text: change_sentence(ch),
            observation,
            confidence: Confidence::Measured,
            evidence: vec![],
            prior: vec![],
            phrasing: None,
        });
    }
    let present: Vec<&DraftSentence> = sentences
        .iter()
        .filter(|s| s.section == Section::Findings && s.confidence == Confidence::Measured)
        .filter(|s| {
            findings.iter().any(|f| {
                Some(f.observation) == s.observation && f.assessment == Assessment::Present
            })
        })
        .take(findings.len())
        .collect();
    let impression = match (&not_assessable, present.is_empty()) {
        (Some(why), _) => why.clone(),
        (None, true) => {
            let open: Vec<&str> = findings
                .iter()
                .filter(|f| f.assessment == Assessment::Uncertain)
                .map(|f| match f.observation {
                    Observation::Cardiomegaly => "heart size",
                    _ => "airspace opacity",
                })
                .collect();
            if open.is_empty() {
                "No abnormality among the findings radlens measures (heart size, airspace opacity)."
                    .to_string()
            } else {
                // an uncertain finding is no evidence of normality
                format!(
                    "No abnormality measured with confidence; {} cannot be assessed reliably.",
                    open.join(" and ")
                )
            }
        }
        (None, false) => present
            .iter()
            .filter(|s| s.evidence.len() <= 2 && !s.evidence.is_empty())
            .map(|s| s.text.split(" (").next().unwrap_or(&s.text).to_string() + ".")
            .collect::<Vec<_>>()
            .join(" "),
    };
    let evidence: Vec<Evidence> = present.iter().flat_map(|s| s.evidence.clone()).collect();
    sentences.push(DraftSentence {
        section: Section::Impression,
        text: impression,
        observation: None,
        confidence: if not_assessable.is_some() {
            Confidence::Context
        } else {
            Confidence::Measured
        },
        evidence,
        prior: vec![],
        phrasing: None,
    });
    Ok(Draft {
        image: current.path.display().to_string(),
        ai_generated: true,
        indication: indication.map(str::to_string),
        not_assessable,
        sentences,
        changes,
        caveat: m.caveat.clone(),
    })
}

impl Draft {
    /// The draft as report text, marked as AI output.
    pub fn text(&self) -> String {
        let mut out =
            String::from("[AI DRAFT - radlens; every sentence needs a radiologist's review]\n");
        if let Some(i) = &self.indication {
            out += &format!("INDICATION: {i}\n");
        }
        for section in [Section::Findings, Section::Impression] {
            let s: Vec<&str> = self
                .sentences
                .iter()
                .filter(|s| s.section == section)
                .map(|s| s.text.as_str())
                .collect();
            if !s.is_empty() {
                out += &format!("{}: {}\n", section.heading(), s.join(" "));
            }
        }
        out
    }

    /// MAIRA-2's grounded format: each finding sentence as `<obj>text<box>..</box></obj>`
    /// with the boxes of its regions (sentences without a region stay plain).
    pub fn grounded(&self) -> String {
        self.sentences
            .iter()
            .filter(|s| s.section == Section::Findings)
            .map(|s| {
                let boxes: Vec<String> = s
                    .evidence
                    .iter()
                    .filter_map(|e| e.region_box.map(|b| b.grounded()))
                    .collect();
                if boxes.is_empty() {
                    s.text.clone()
                } else {
                    format!("<obj>{}{}</obj>", s.text, boxes.concat())
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every sentence with its evidence, for a reader of the text output.
    pub fn evidence_text(&self) -> String {
        self.sentences
            .iter()
            .filter(|s| !s.evidence.is_empty())
            .map(|s| {
                let wording = s.phrasing.as_ref().map_or(String::new(), |p| {
                    format!(
                        "\n  wording: report {} ({:?}, used word for word in {} reports), similarity {:.2} to radlens' sentence among {} sentences stating the same claim",
                        p.uid, p.section, p.reports, p.similarity, p.candidates
                    )
                });
                format!(
                    "- {}\n  evidence: {}{wording}",
                    s.text,
                    describe_evidence(&s.evidence)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_direction_from_interval_difference() {
        let i = |value, low, high| Interval { value, low, high };
        let up = Change::new(
            "opacity_extent_right",
            i(0.18, 0.15, 0.21),
            i(0.31, 0.27, 0.35),
        );
        assert_eq!(up.direction(), "increased");
        assert!((up.difference.low - 0.06).abs() < 1e-12);
        let same = Change::new("ctr", i(0.50, 0.48, 0.52), i(0.51, 0.49, 0.53));
        assert_eq!(same.direction(), "unchanged");
        let down = Change::new("ctr", i(0.60, 0.58, 0.62), i(0.50, 0.48, 0.52));
        assert_eq!(down.direction(), "decreased");
        assert!(
            change_sentence(&up).contains("18% -> 31%"),
            "{}",
            change_sentence(&up)
        );
    }
}
