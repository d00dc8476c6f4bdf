//! Augmented report review: label the clinician's text and compare it with what radlens
//! measured. Flags: omissions (a measured finding not mentioned), contradictions (the text
//! says the opposite of a measurement whose interval lies clear of the threshold),
//! laterality conflicts, and, where the interval straddles the threshold, an `uncertain`
//! note instead of a flag.

use crate::analysis::Analysis;
use crate::error::{ReportError, Result};
use crate::findings::{measured_findings, Assessment, Evidence, MeasuredFinding};
use crate::label::{Labeler, Laterality, Mention, Observation, Status};
use crate::measure::Measurements;
use crate::text::check_report_text;
use serde::{Deserialize, Serialize};

/// What a flag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    Omission,
    Contradiction,
    LateralityConflict,
    /// Not an error: the measurement cannot decide what the text states.
    Uncertain,
}

/// How much a flag matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

/// The sentence a flag points at, and the mention in it. Offsets count characters
/// (Unicode scalar values), not bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSpan {
    pub sentence: String,
    /// Offset of the sentence in the report.
    pub sentence_start: usize,
    /// Range of the mention in `sentence` (not in the report: a page marks it in the
    /// sentence it shows).
    pub start: usize,
    pub end: usize,
    pub mention: String,
}

/// One review flag, marked as AI output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub kind: FlagKind,
    pub severity: Severity,
    pub observation: Observation,
    pub message: String,
    pub span: Option<TextSpan>,
    pub evidence: Vec<Evidence>,
}

/// `radlens report review` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub image: String,
    pub ai_generated: bool,
    pub measurements: Measurements,
    /// Set when the image cannot be assessed: no flags are raised then.
    pub not_assessable: Option<String>,
    pub flags: Vec<Flag>,
    pub mentions: Vec<Mention>,
}

/// Mentions that speak to a measured finding.
fn speaks_to(m: &Mention, o: Observation) -> bool {
    match o {
        Observation::Cardiomegaly => m.observation == Observation::Cardiomegaly,
        Observation::LungOpacity => matches!(
            m.observation,
            Observation::LungOpacity
                | Observation::Consolidation
                | Observation::Pneumonia
                | Observation::Edema
        ),
        _ => m.observation == o,
    }
}

/// A short statement of the evidence: `CTR 0.58 [0.55, 0.61]`.
pub fn describe_evidence(e: &[Evidence]) -> String {
    e.iter()
        .map(|e| {
            let pct = e.measurement.starts_with("opacity");
            let f = |v: f64| {
                if pct {
                    format!("{:.0}%", 100.0 * v)
                } else {
                    format!("{v:.2}")
                }
            };
            let name = match e.measurement.as_str() {
                "ctr" => "CTR".to_string(),
                m => m.replace('_', " "),
            };
            format!(
                "{name} {} [{}, {}] (threshold {})",
                f(e.interval.value),
                f(e.interval.low),
                f(e.interval.high),
                f(e.threshold)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn span(m: &Mention) -> TextSpan {
    TextSpan {
        sentence: m.sentence.clone(),
        sentence_start: m.sentence_start,
        start: m.start - m.sentence_start,
        end: m.end - m.sentence_start,
        mention: m.text.clone(),
    }
}

/// Flags for one measured finding against the report's mentions of it.
fn flags_for(f: &MeasuredFinding, mentions: &[Mention]) -> Vec<Flag> {
    let relevant: Vec<&Mention> = mentions
        .iter()
        .filter(|m| !m.historical && speaks_to(m, f.observation))
        .collect();
    let claim = |s: Status| relevant.iter().find(|m| m.status == s).copied();
    let positive = claim(Status::Positive);
    let negative = claim(Status::Negative);
    let evidence = describe_evidence(&f.evidence);
    let name = f.observation.name();
    let flag = |kind, severity, message: String, m: Option<&Mention>| Flag {
        kind,
        severity,
        observation: f.observation,
        message,
        span: m.map(span),
        evidence: f.evidence.clone(),
    };
    let mut out = Vec::new();
    match f.assessment {
        Assessment::Uncertain => {
            let m = positive.or(negative).or_else(|| relevant.first().copied());
            out.push(flag(
                FlagKind::Uncertain,
                Severity::Info,
                format!("uncertain: radlens cannot assess {name} reliably ({evidence}: the interval straddles the threshold)"),
                m,
            ));
        }
        Assessment::Present => match (positive, negative) {
            (Some(p), _) => {
                if let (Some(text_side), Some(measured)) = (p.laterality, f.laterality) {
                    if text_side != measured
                        && measured != Laterality::Bilateral
                        && text_side != Laterality::Bilateral
                    {
                        out.push(flag(
                            FlagKind::LateralityConflict,
                            Severity::High,
                            format!(
                                "the report places {name} on the {} side; radlens measured it on the {} ({evidence})",
                                side(text_side),
                                side(measured)
                            ),
                            Some(p),
                        ));
                    }
                }
            }
            (None, Some(n)) => out.push(flag(
                FlagKind::Contradiction,
                Severity::High,
                format!("the report negates {name}; radlens measured it ({evidence})"),
                Some(n),
            )),
            (None, None) => {
                let uncertain = relevant
                    .iter()
                    .find(|m| m.status == Status::Uncertain)
                    .copied();
                if uncertain.is_none() {
                    out.push(flag(
                        FlagKind::Omission,
                        Severity::Medium,
                        format!("{name} measured but not mentioned ({evidence})"),
                        None,
                    ));
                }
            }
        },
        Assessment::Absent => {
            if let Some(p) = positive {
                out.push(flag(
                    FlagKind::Contradiction,
                    Severity::Medium,
                    format!(
                        "the report states {name}; radlens' measurement is against it ({evidence})"
                    ),
                    Some(p),
                ));
            }
        }
    }
    out
}

fn side(l: Laterality) -> &'static str {
    match l {
        Laterality::Left => "left",
        Laterality::Right => "right",
        Laterality::Bilateral => "both",
    }
}

/// Review `report` against the analysed image.
pub fn review(a: &Analysis, report: &str, labeler: &Labeler) -> Result<Review> {
    check_report_text(report).map_err(ReportError::Invalid)?;
    let mentions = labeler.mentions(report);
    let m = &a.measurements;
    let not_assessable = (!m.plausibility.plausible).then(|| {
        format!(
            "the image cannot be assessed by radlens' models: {}",
            m.plausibility.problems.join("; ")
        )
    });
    let flags = measured_findings(a)
        .iter()
        .flat_map(|f| flags_for(f, &mentions))
        .collect();
    Ok(Review {
        image: a.path.display().to_string(),
        ai_generated: true,
        measurements: m.clone(),
        not_assessable,
        flags,
        mentions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Interval;

    fn finding(
        o: Observation,
        a: Assessment,
        lat: Option<Laterality>,
        value: f64,
        low: f64,
        high: f64,
    ) -> MeasuredFinding {
        MeasuredFinding {
            observation: o,
            assessment: a,
            laterality: lat,
            evidence: vec![Evidence {
                measurement: "ctr".into(),
                interval: Interval { value, low, high },
                threshold: 0.5,
                region: "heart".into(),
                region_box: None,
            }],
        }
    }

    fn kinds(f: &MeasuredFinding, text: &str) -> Vec<FlagKind> {
        let m = Labeler::builtin().unwrap().mentions(text);
        flags_for(f, &m).iter().map(|f| f.kind).collect()
    }

    #[test]
    fn contradiction_omission_and_agreement() {
        let big = finding(
            Observation::Cardiomegaly,
            Assessment::Present,
            None,
            0.58,
            0.55,
            0.61,
        );
        assert_eq!(
            kinds(&big, "Heart size is normal."),
            [FlagKind::Contradiction]
        );
        assert_eq!(kinds(&big, "Lungs are clear."), [FlagKind::Omission]);
        assert!(kinds(&big, "Mild cardiomegaly.").is_empty());
        let m = Labeler::builtin()
            .unwrap()
            .mentions("Heart size is normal.");
        let f = &flags_for(&big, &m)[0];
        assert!(f.message.contains("CTR 0.58 [0.55, 0.61]"), "{}", f.message);
        assert_eq!(f.span.as_ref().unwrap().sentence, "Heart size is normal.");
        let small = finding(
            Observation::Cardiomegaly,
            Assessment::Absent,
            None,
            0.42,
            0.40,
            0.44,
        );
        assert_eq!(kinds(&small, "Cardiomegaly."), [FlagKind::Contradiction]);
        assert!(kinds(&small, "Heart size is normal.").is_empty());
    }

    #[test]
    fn a_span_counts_characters_within_its_sentence() {
        let small = finding(
            Observation::Cardiomegaly,
            Assessment::Absent,
            None,
            0.42,
            0.40,
            0.44,
        );
        // 'ä' is two bytes: byte offsets would be one past the mention
        let report =
            "IMPRESSION: Lungs are clear. Compared with the 12 März study, the heart is enlarged.";
        let m = Labeler::builtin().unwrap().mentions(report);
        let f = &flags_for(&small, &m)[0];
        assert_eq!(f.kind, FlagKind::Contradiction);
        let sp = f.span.as_ref().unwrap();
        assert_eq!(
            sp.sentence,
            "Compared with the 12 März study, the heart is enlarged."
        );
        assert_eq!(sp.sentence_start, 29);
        assert_eq!((sp.start, sp.end), (37, 54));
        let marked: String = sp
            .sentence
            .chars()
            .skip(sp.start)
            .take(sp.end - sp.start)
            .collect();
        assert_eq!(marked, "heart is enlarged");
        assert_eq!(sp.mention, marked);
    }

    #[test]
    fn an_interval_across_the_threshold_says_uncertain_not_error() {
        let edge = finding(
            Observation::Cardiomegaly,
            Assessment::Uncertain,
            None,
            0.51,
            0.48,
            0.54,
        );
        assert_eq!(kinds(&edge, "Heart size is normal."), [FlagKind::Uncertain]);
        assert_eq!(kinds(&edge, "Cardiomegaly."), [FlagKind::Uncertain]);
    }

    #[test]
    fn laterality_conflict() {
        let right = finding(
            Observation::LungOpacity,
            Assessment::Present,
            Some(Laterality::Right),
            0.2,
            0.15,
            0.25,
        );
        assert_eq!(
            kinds(&right, "Left lower lobe consolidation."),
            [FlagKind::LateralityConflict]
        );
        assert!(kinds(&right, "Right lower lobe consolidation.").is_empty());
        assert!(kinds(&right, "Bilateral opacities.").is_empty());
    }
}
