//! Report structure: sections (indication, comparison, findings, impression) found by
//! their headings, and sentences with their byte offsets in the report text.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// A report section. Text before any heading is `Body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Indication,
    Comparison,
    Technique,
    Findings,
    Impression,
    Body,
}

impl Section {
    /// Sections whose sentences describe the current image (the labeller reads these;
    /// indication and comparison describe the request and the priors).
    pub fn describes_image(self) -> bool {
        matches!(self, Self::Findings | Self::Impression | Self::Body)
    }

    /// The heading radlens writes for this section.
    pub fn heading(self) -> &'static str {
        match self {
            Self::Indication => "INDICATION",
            Self::Comparison => "COMPARISON",
            Self::Technique => "TECHNIQUE",
            Self::Findings => "FINDINGS",
            Self::Impression => "IMPRESSION",
            Self::Body => "",
        }
    }
}

static HEADING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?im)^[ \t]*(indications?|clinical (?:history|indication)|history|reason for (?:exam|study)|comparisons?|technique|examination|findings|impressions?|conclusions?)[ \t]*:",
    )
    .expect("valid heading regex")
});

fn section_of(heading: &str) -> Section {
    let h = heading.to_ascii_lowercase();
    if h.starts_with("indication") || h.contains("history") || h.starts_with("reason") {
        Section::Indication
    } else if h.starts_with("comparison") {
        Section::Comparison
    } else if h.starts_with("technique") || h.starts_with("examination") {
        Section::Technique
    } else if h.starts_with("findings") {
        Section::Findings
    } else {
        Section::Impression
    }
}

/// One sentence: its section and byte range in the report text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence<'t> {
    pub section: Section,
    pub start: usize,
    pub text: &'t str,
}

/// Split a report into sections by their headings, then into sentences: a sentence ends
/// at `.`, `?` or `!` followed by white space or the end (not a decimal point), or at a
/// line break.
pub fn sentences(report: &str) -> Vec<Sentence<'_>> {
    let mut cuts: Vec<(usize, usize, Section)> = Vec::new(); // (heading start, body start, section)
    for m in HEADING.captures_iter(report) {
        let whole = m.get(0).expect("match");
        cuts.push((whole.start(), whole.end(), section_of(&m[1])));
    }
    let mut parts = Vec::new();
    let first = cuts.first().map_or(report.len(), |c| c.0);
    parts.push((0, first, Section::Body));
    for (i, &(_, body, section)) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).map_or(report.len(), |c| c.0);
        parts.push((body, end, section));
    }
    let mut out = Vec::new();
    for (start, end, section) in parts {
        split_sentences(report, start, end, section, &mut out);
    }
    out
}

fn split_sentences<'t>(
    text: &'t str,
    start: usize,
    end: usize,
    section: Section,
    out: &mut Vec<Sentence<'t>>,
) {
    let bytes = text.as_bytes();
    let mut push = |a: usize, b: usize| {
        let s = &text[a..b];
        let lead = s.len() - s.trim_start().len();
        let t = s.trim();
        if t.chars().any(char::is_alphanumeric) {
            out.push(Sentence {
                section,
                start: a + lead,
                text: t,
            });
        }
    };
    let mut from = start;
    let mut i = start;
    while i < end {
        let c = bytes[i];
        let boundary = match c {
            b'\n' | b'\r' => true,
            b'.' | b'?' | b'!' => {
                let next = bytes.get(i + 1).copied();
                let decimal = c == b'.'
                    && i > 0
                    && bytes[i - 1].is_ascii_digit()
                    && next.is_some_and(|n| n.is_ascii_digit());
                !decimal && (i + 1 >= end || next.is_some_and(|n| n.is_ascii_whitespace()))
            }
            _ => false,
        };
        if boundary {
            push(from, i + 1);
            from = i + 1;
        }
        i += 1;
    }
    if from < end {
        push(from, end);
    }
}

/// English words common in any chest X-ray report (function words and the commonest
/// terms), to tell an English report from one in another language.
const ENGLISH: [&str; 55] = [
    "the",
    "a",
    "an",
    "no",
    "not",
    "is",
    "are",
    "of",
    "and",
    "or",
    "with",
    "without",
    "in",
    "on",
    "there",
    "this",
    "to",
    "for",
    "as",
    "at",
    "by",
    "be",
    "since",
    "prior",
    "normal",
    "heart",
    "lung",
    "lungs",
    "chest",
    "size",
    "clear",
    "left",
    "right",
    "pleural",
    "effusion",
    "pneumothorax",
    "mild",
    "small",
    "stable",
    "silhouette",
    "evidence",
    "acute",
    "disease",
    "focal",
    "opacity",
    "bilateral",
    "lobe",
    "within",
    "limits",
    // section headings and the words of radlens' own refusal to measure, so that its
    // drafts pass its review's check
    "findings",
    "impression",
    "image",
    "view",
    "lateral",
    "cannot",
];

/// English function words among [`ENGLISH`] (the first 21).
const FUNCTION_WORDS: usize = 21;

/// Whether `text` can be reviewed: not empty, and English: nearly all letters ASCII, at
/// least a quarter of its words common English report words, and (from six words on)
/// at least one English function word.
pub fn check_report_text(text: &str) -> Result<(), String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().any(char::is_alphabetic))
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return Err("the report is empty".into());
    }
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let non_ascii = text
        .chars()
        .filter(|c| c.is_alphabetic() && !c.is_ascii())
        .count();
    let known = words
        .iter()
        .filter(|w| ENGLISH.contains(&w.as_str()))
        .count();
    let function = words
        .iter()
        .filter(|w| ENGLISH[..FUNCTION_WORDS].contains(&w.as_str()))
        .count();
    if non_ascii * 20 > letters
        || (words.len() >= 3 && known * 4 < words.len())
        || (words.len() >= 6 && function == 0)
    {
        return Err(
            "the report does not look like English (radlens' labeller reads English reports only)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_sentences_with_offsets() {
        let r = "INDICATION: Cough.\nFINDINGS: Heart is 1.5 times normal. No effusion!\nIMPRESSION: Normal";
        let s = sentences(r);
        let got: Vec<_> = s.iter().map(|s| (s.section, s.text)).collect();
        assert_eq!(
            got,
            [
                (Section::Indication, "Cough."),
                (Section::Findings, "Heart is 1.5 times normal."),
                (Section::Findings, "No effusion!"),
                (Section::Impression, "Normal"),
            ]
        );
        for s in &s {
            assert_eq!(&r[s.start..s.start + s.text.len()], s.text);
        }
    }

    #[test]
    fn empty_and_non_english_reports_are_refused() {
        assert!(check_report_text("Heart size is normal. No effusion.").is_ok());
        assert!(check_report_text("Cardiomegaly.").is_ok());
        // radlens' own draft of a film it cannot assess (covid-cxr's 93FE0BB1 in the sweep)
        let refusal = "[AI DRAFT - radlens; every sentence needs a radiologist's review]\n\
            IMPRESSION: The image cannot be assessed by radlens' models: the lungs overlap \
            horizontally by 87% (a lateral view?).\n";
        assert!(check_report_text(refusal).is_ok());
        assert!(check_report_text(" \n ").unwrap_err().contains("empty"));
        let de = check_report_text("Keine Pleuraergüsse. Herz normal groß, kein Infiltrat.");
        assert!(de.unwrap_err().contains("English"));
        let es = check_report_text("Silueta cardiaca de tamaño normal. Sin derrame pleural.");
        assert!(es.is_err());
    }

    #[test]
    fn text_without_headings_is_body() {
        let s = sentences("Lungs clear.  Heart normal");
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|s| s.section == Section::Body));
        assert!(sentences("  . \n").is_empty());
    }
}
