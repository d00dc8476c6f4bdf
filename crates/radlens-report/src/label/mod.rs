//! The report labeller: CheXpert's 14 observations plus Emphysema, Granuloma and Nodule,
//! each mention with its status (positive, negative, uncertain) from ConText-style
//! triggers, and its laterality, severity and change words.
//!
//! Rules live in text files (`rules/` in this crate, built in; `--rules DIR` replaces
//! them): `observations.txt` (mention patterns), `context.txt` (triggers, pseudo-triggers,
//! terminators) and `modifiers.txt` (laterality, severity, change words).

pub mod context;
pub mod evaluate;
pub mod observation;

use crate::error::{ReportError, Result};
use crate::rules::{load_rules, RuleSection};
use crate::text::{sentences, Section};
use context::{Category, ContextRules};
pub use observation::Observation;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::Path;

const OBSERVATIONS: &str = include_str!("../../rules/observations.txt");
const CONTEXT: &str = include_str!("../../rules/context.txt");
const MODIFIERS: &str = include_str!("../../rules/modifiers.txt");

/// A mention's byte range in its sentence, and whether only a trigger makes it count.
type MatchedSpan = (Range<usize>, bool);

/// A mention's status, and a label's value in CheXpert's convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Positive,
    Negative,
    Uncertain,
}

impl Status {
    /// CheXpert's number: 1 positive, 0 negative, -1 uncertain.
    pub fn value(self) -> i8 {
        match self {
            Self::Positive => 1,
            Self::Negative => 0,
            Self::Uncertain => -1,
        }
    }

    /// Precedence when a report mentions an observation more than once:
    /// positive over uncertain over negative (CheXpert's aggregation).
    fn rank(self) -> u8 {
        match self {
            Self::Positive => 2,
            Self::Uncertain => 1,
            Self::Negative => 0,
        }
    }
}

/// Which side a mention is on (the patient's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Laterality {
    Left,
    Right,
    Bilateral,
}

/// One mention of an observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    pub observation: Observation,
    pub section: Section,
    pub sentence: String,
    /// Character offset of the sentence in the report text.
    pub sentence_start: usize,
    /// Character range of the mention in the report text.
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub status: Status,
    /// The trigger phrase that made the mention negative or uncertain.
    pub trigger: Option<String>,
    /// Covered by a historical trigger ("history of", "prior"): it does not set the label.
    pub historical: bool,
    /// Matched by a qualified phrase ("heart size"), which counts only with a trigger.
    pub qualified: bool,
    pub laterality: Option<Laterality>,
    pub severity: Option<String>,
    pub change: Option<String>,
}

/// One report's labels: a status per column ([`Observation::COLUMNS`]), `None` when not
/// mentioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels(pub [Option<Status>; 17]);

impl Labels {
    /// The label of `o` (`None` for `Other`, which is no column).
    pub fn get(&self, o: Observation) -> Option<Status> {
        o.column().and_then(|c| self.0[c])
    }

    /// Labels from mentions: per observation positive over uncertain over negative;
    /// historical mentions are skipped. `No Finding` is positive when no observation
    /// but Support Devices (and no other abnormality) is positive or uncertain, and
    /// empty otherwise (CheXpert's rule).
    pub fn from_mentions(mentions: &[Mention]) -> Self {
        let mut values = [None; 17];
        let mut abnormal = false;
        for m in mentions.iter().filter(|m| !m.historical) {
            if m.status != Status::Negative && m.observation != Observation::SupportDevices {
                abnormal = true;
            }
            if let Some(c) = m.observation.column() {
                let v: &mut Option<Status> = &mut values[c];
                if v.is_none_or(|old| m.status.rank() > old.rank()) {
                    *v = Some(m.status);
                }
            }
        }
        if !abnormal {
            values[0] = Some(Status::Positive);
        }
        Self(values)
    }

    /// The CSV cells: `1`, `0`, `-1` or empty.
    pub fn cells(&self) -> impl Iterator<Item = String> + '_ {
        self.0
            .iter()
            .map(|v| v.map_or(String::new(), |s| s.value().to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModifierKind {
    Laterality,
    Severity,
    Change,
}

#[derive(Debug, Clone)]
struct Modifier {
    kind: ModifierKind,
    value: String,
    pattern: Regex,
}

/// Mention patterns of one observation. Qualified patterns ("heart size") name where
/// an observation is read without asserting it: they make a mention only when a trigger
/// negates or qualifies them ("heart size is normal", "borderline heart size").
#[derive(Debug, Clone)]
struct MentionRules {
    observation: Observation,
    qualified: bool,
    patterns: Vec<Regex>,
    /// Phrases inside which a match does not count ("pericardial effusion").
    excluded: Vec<Regex>,
}

/// The suffix of an observation header whose patterns are qualified.
const QUALIFIED: &str = "(qualified)";
/// The suffix of an observation header whose patterns exclude matches.
const EXCLUDED: &str = "(not)";

/// The compiled rules.
#[derive(Debug, Clone)]
pub struct Labeler {
    mentions: Vec<MentionRules>,
    context: ContextRules,
    modifiers: Vec<Modifier>,
}

fn unknown(file: &str, what: &str, header: &str) -> ReportError {
    ReportError::Rules {
        file: file.to_string(),
        line: 0,
        reason: format!("unknown {what} [{header}]"),
    }
}

impl Labeler {
    /// radlens' built-in rules.
    pub fn builtin() -> Result<Self> {
        Self::load(None)
    }

    /// The rules in `dir` (`observations.txt`, `context.txt`, `modifiers.txt`), or the
    /// built-in ones.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let obs = load_rules(dir, "observations.txt", OBSERVATIONS)?;
        let ctx = load_rules(dir, "context.txt", CONTEXT)?;
        let mods = load_rules(dir, "modifiers.txt", MODIFIERS)?;
        let mentions = obs
            .into_iter()
            .map(|s| {
                let (name, qualified, excluding) = if let Some(n) = s.header.strip_suffix(QUALIFIED)
                {
                    (n, true, false)
                } else if let Some(n) = s.header.strip_suffix(EXCLUDED) {
                    (n, false, true)
                } else {
                    (s.header.as_str(), false, false)
                };
                let observation = Observation::parse(name)
                    .filter(|&o| o != Observation::NoFinding)
                    .ok_or_else(|| unknown("observations.txt", "observation", &s.header))?;
                let (patterns, excluded) = if excluding {
                    (Vec::new(), s.patterns)
                } else {
                    (s.patterns, Vec::new())
                };
                Ok(MentionRules {
                    observation,
                    qualified,
                    patterns,
                    excluded,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let modifiers = mods
            .into_iter()
            .map(|s: RuleSection| {
                let (kind, value) = s
                    .header
                    .split_once(' ')
                    .ok_or_else(|| unknown("modifiers.txt", "modifier", &s.header))?;
                let kind = match kind {
                    "laterality" if ["left", "right", "bilateral"].contains(&value) => {
                        ModifierKind::Laterality
                    }
                    "severity" => ModifierKind::Severity,
                    "change" => ModifierKind::Change,
                    _ => return Err(unknown("modifiers.txt", "modifier", &s.header)),
                };
                let value = value.to_string();
                Ok(s.patterns.into_iter().map(move |pattern| Modifier {
                    kind,
                    value: value.clone(),
                    pattern,
                }))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(Self {
            mentions,
            context: ContextRules::from_sections("context.txt", ctx)?,
            modifiers,
        })
    }

    /// Every mention in the sentences that describe the image (findings, impression, or
    /// text without headings), in text order.
    pub fn mentions(&self, report: &str) -> Vec<Mention> {
        let mut out = Vec::new();
        for s in sentences(report)
            .into_iter()
            .filter(|s| s.section.describes_image())
        {
            let ctx = self.context.scan(s.text);
            let char_at = |byte: usize| report[..s.start + byte].chars().count();
            for (o, spans) in self.find(s.text) {
                for (span, qualified) in spans {
                    let q = ctx.qualify(&span);
                    if qualified && q.status.is_none() {
                        continue;
                    }
                    let (status, trigger) = match q.status {
                        None => (Status::Positive, None),
                        Some((c, t)) => (
                            if c == Category::Negated {
                                Status::Negative
                            } else {
                                Status::Uncertain
                            },
                            Some(s.text[t].to_string()),
                        ),
                    };
                    let clause = clause_around(s.text, &span);
                    out.push(Mention {
                        observation: o,
                        section: s.section,
                        sentence: s.text.to_string(),
                        sentence_start: char_at(0),
                        start: char_at(span.start),
                        end: char_at(span.end),
                        text: s.text[span.clone()].to_string(),
                        status,
                        trigger,
                        historical: q.historical,
                        qualified,
                        laterality: self.laterality(clause),
                        severity: self.modifier(ModifierKind::Severity, clause),
                        change: self.modifier(ModifierKind::Change, clause),
                    });
                }
            }
        }
        out.sort_by_key(|m| (m.start, m.observation));
        out
    }

    /// Labels and mentions of one report.
    pub fn label(&self, report: &str) -> (Labels, Vec<Mention>) {
        let m = self.mentions(report);
        (Labels::from_mentions(&m), m)
    }

    /// The baseline without context rules: an observation is positive when any of its
    /// (unqualified) mention phrases occurs in the findings or impression, whatever
    /// surrounds it.
    pub fn keyword_labels(&self, report: &str) -> Labels {
        let mentions: Vec<Mention> = self
            .mentions(report)
            .into_iter()
            .filter(|m| !m.qualified)
            .map(|m| Mention {
                status: Status::Positive,
                historical: false,
                ..m
            })
            .collect();
        Labels::from_mentions(&mentions)
    }

    /// Mention spans per observation, each with whether it is qualified; overlapping
    /// matches of one observation merge (an unqualified match wins).
    fn find(&self, sentence: &str) -> Vec<(Observation, Vec<MatchedSpan>)> {
        let mut per: Vec<(Observation, Vec<MatchedSpan>)> = Vec::new();
        for rules in &self.mentions {
            let found = rules
                .patterns
                .iter()
                .flat_map(|p| p.find_iter(sentence).map(|m| (m.range(), rules.qualified)));
            match per.iter_mut().find(|(x, _)| *x == rules.observation) {
                Some((_, spans)) => spans.extend(found),
                None => per.push((rules.observation, found.collect())),
            }
        }
        for (o, spans) in per.iter_mut() {
            let excluded: Vec<Range<usize>> = self
                .mentions
                .iter()
                .filter(|r| r.observation == *o)
                .flat_map(|r| r.excluded.iter())
                .flat_map(|p| p.find_iter(sentence).map(|m| m.range()))
                .collect();
            spans.retain(|(r, _)| {
                !excluded
                    .iter()
                    .any(|e| e.start <= r.start && r.end <= e.end)
            });
            spans.sort_by_key(|(r, q)| (r.start, std::cmp::Reverse(r.end), *q));
            let mut merged: Vec<MatchedSpan> = Vec::new();
            for (r, q) in spans.drain(..) {
                match merged.last_mut() {
                    Some((last, lq)) if r.start < last.end => {
                        last.end = last.end.max(r.end);
                        *lq = *lq && q;
                    }
                    _ => merged.push((r, q)),
                }
            }
            *spans = merged;
        }
        per.retain(|(_, s)| !s.is_empty());
        per
    }

    fn laterality(&self, clause: &str) -> Option<Laterality> {
        let has = |v: &str| {
            self.modifiers.iter().any(|m| {
                m.kind == ModifierKind::Laterality && m.value == v && m.pattern.is_match(clause)
            })
        };
        match (has("bilateral"), has("left"), has("right")) {
            (true, _, _) | (false, true, true) => Some(Laterality::Bilateral),
            (false, true, false) => Some(Laterality::Left),
            (false, false, true) => Some(Laterality::Right),
            _ => None,
        }
    }

    fn modifier(&self, kind: ModifierKind, clause: &str) -> Option<String> {
        self.modifiers
            .iter()
            .filter(|m| m.kind == kind)
            .filter_map(|m| m.pattern.find(clause).map(|f| (f.start(), &m.value)))
            .min_by_key(|(at, _)| *at)
            .map(|(_, v)| v.clone())
    }
}

/// One labelled report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledReport {
    pub uid: String,
    pub labels: Labels,
    pub mentions: Vec<Mention>,
}

/// One line of the `--spans` file: a mention with its report's uid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub uid: String,
    #[serde(flatten)]
    pub mention: Mention,
}

/// Writes CheXpert-style labels: `uid` then the columns, one row per report.
pub fn write_labels_csv(path: &Path, reports: &[LabelledReport]) -> Result<()> {
    let header: Vec<&str> = std::iter::once("uid")
        .chain(Observation::COLUMNS.iter().map(|o| o.name()))
        .collect();
    let rows = reports
        .iter()
        .map(|r| std::iter::once(r.uid.clone()).chain(r.labels.cells()));
    Ok(radlens_core::results::write_csv(path, &header, rows)?)
}

/// Writes every mention as one JSON line.
pub fn write_spans_jsonl(path: &Path, reports: &[LabelledReport]) -> Result<()> {
    let mut text = String::new();
    for r in reports {
        for m in &r.mentions {
            let span = Span {
                uid: r.uid.clone(),
                mention: m.clone(),
            };
            text +=
                &serde_json::to_string(&span).map_err(|e| ReportError::Invalid(e.to_string()))?;
            text.push('\n');
        }
    }
    Ok(radlens_core::atomic::write_atomic(path, text.as_bytes())?)
}

/// The clause of `sentence` around `span`: cut at commas, semicolons and "and"/"but"
/// that do not lie inside the mention, so that modifiers of a neighbouring finding in a
/// list ("small left effusion and right pneumothorax") do not leak.
fn clause_around<'s>(sentence: &'s str, span: &Range<usize>) -> &'s str {
    static CUT: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"(?i)[,;]|\b(and|but|with|while|however)\b").expect("valid clause regex")
    });
    let mut start = 0;
    let mut end = sentence.len();
    for m in CUT.find_iter(sentence) {
        if m.end() <= span.start {
            start = m.end();
        } else if m.start() >= span.end {
            end = m.start();
            break;
        }
    }
    &sentence[start..end]
}

#[cfg(test)]
mod tests;
