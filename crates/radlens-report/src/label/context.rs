//! ConText-style context of a mention (Harkema et al. 2009): trigger phrases whose scope
//! runs forward or backward within the sentence until a terminating phrase, a semicolon,
//! a trigger of another category or [`WINDOW_WORDS`] words; pseudo-triggers are removed
//! first and a trigger inside a longer one is dropped.

use crate::error::{ReportError, Result};
use crate::rules::RuleSection;
use regex::Regex;
use std::ops::Range;

/// The most words between a trigger and a mention it governs.
pub const WINDOW_WORDS: usize = 12;

/// What a trigger says about the mentions in its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Negated,
    Uncertain,
    Historical,
}

/// Which side of the trigger its scope lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
    Both,
}

#[derive(Debug, Clone)]
struct Trigger {
    category: Category,
    direction: Direction,
    pattern: Regex,
}

/// The compiled context rules.
#[derive(Debug, Clone)]
pub struct ContextRules {
    triggers: Vec<Trigger>,
    pseudo: Vec<Regex>,
    terminate: Vec<Regex>,
}

/// A trigger found in a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub category: Category,
    direction: Direction,
    pub span: Range<usize>,
}

/// The triggers and scope stops of one sentence.
#[derive(Debug, Clone)]
pub struct SentenceContext {
    triggers: Vec<Found>,
    stops: Vec<Range<usize>>,
    /// Byte offsets where words start, to count words between two offsets.
    word_starts: Vec<usize>,
}

/// How the context qualifies one mention: the governing negation or uncertainty trigger
/// (nearest first) and whether a historical trigger covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualifier {
    pub status: Option<(Category, Range<usize>)>,
    pub historical: bool,
}

impl ContextRules {
    /// Rules from the sections of a context rule file.
    pub fn from_sections(file: &str, sections: Vec<RuleSection>) -> Result<Self> {
        let mut rules = Self {
            triggers: Vec::new(),
            pseudo: Vec::new(),
            terminate: Vec::new(),
        };
        for s in sections {
            match s.header.as_str() {
                "pseudo" => rules.pseudo.extend(s.patterns),
                "terminate" => rules.terminate.extend(s.patterns),
                h => {
                    let bad = || {
                        ReportError::Rules {
                        file: file.to_string(),
                        line: 0,
                        reason: format!(
                            "unknown section [{h}] (expected [<negated|uncertain|historical> <forward|backward|both>], [pseudo] or [terminate])"
                        ),
                    }
                    };
                    let (c, d) = h.split_once(' ').ok_or_else(bad)?;
                    let category = match c {
                        "negated" => Category::Negated,
                        "uncertain" => Category::Uncertain,
                        "historical" => Category::Historical,
                        _ => return Err(bad()),
                    };
                    let direction = match d.trim() {
                        "forward" => Direction::Forward,
                        "backward" => Direction::Backward,
                        "both" => Direction::Both,
                        _ => return Err(bad()),
                    };
                    rules
                        .triggers
                        .extend(s.patterns.into_iter().map(|pattern| Trigger {
                            category,
                            direction,
                            pattern,
                        }));
                }
            }
        }
        Ok(rules)
    }

    /// Find the triggers and stops of `sentence`.
    pub fn scan(&self, sentence: &str) -> SentenceContext {
        let pseudo: Vec<Range<usize>> = self
            .pseudo
            .iter()
            .flat_map(|p| p.find_iter(sentence).map(|m| m.range()))
            .collect();
        let mut found: Vec<Found> = self
            .triggers
            .iter()
            .flat_map(|t| {
                t.pattern.find_iter(sentence).map(|m| Found {
                    category: t.category,
                    direction: t.direction,
                    span: m.range(),
                })
            })
            .filter(|f| !pseudo.iter().any(|p| overlaps(p, &f.span)))
            .collect();
        // A trigger inside a longer one ("normal" in "upper limits of normal") is dropped.
        let all = found.clone();
        found.retain(|f| {
            !all.iter().any(|g| {
                g.span != f.span && g.span.start <= f.span.start && f.span.end <= g.span.end
            })
        });
        found.dedup_by(|a, b| {
            a.span == b.span && a.category == b.category && a.direction == b.direction
        });
        let mut stops: Vec<Range<usize>> = self
            .terminate
            .iter()
            .flat_map(|p| p.find_iter(sentence).map(|m| m.range()))
            .collect();
        stops.extend(sentence.match_indices(';').map(|(i, _)| i..i + 1));
        let word_starts = sentence
            .char_indices()
            .filter(|&(i, c)| {
                c.is_alphanumeric()
                    && sentence[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|p| !p.is_alphanumeric())
            })
            .map(|(i, _)| i)
            .collect();
        SentenceContext {
            triggers: found,
            stops,
            word_starts,
        }
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

impl SentenceContext {
    fn words_between(&self, from: usize, to: usize) -> usize {
        self.word_starts
            .iter()
            .filter(|&&w| w >= from && w < to)
            .count()
    }

    /// Whether anything stops a scope in the gap `from..to`: a terminating phrase, a
    /// semicolon, or a trigger of a category other than `category`.
    fn blocked(&self, from: usize, to: usize, category: Category) -> bool {
        let inside = |r: &Range<usize>| r.start >= from && r.end <= to;
        self.stops.iter().any(inside)
            || self.triggers.iter().any(|t| {
                t.category != category
                    && t.category != Category::Historical
                    && category != Category::Historical
                    && inside(&t.span)
            })
            || self.words_between(from, to) > WINDOW_WORDS
    }

    /// Distance from trigger `t` to `mention` when `t`'s scope covers it.
    fn covers(&self, t: &Found, mention: &Range<usize>) -> Option<usize> {
        if overlaps(&t.span, mention) {
            return Some(0);
        }
        let forward = matches!(t.direction, Direction::Forward | Direction::Both);
        let backward = matches!(t.direction, Direction::Backward | Direction::Both);
        if forward && t.span.end <= mention.start {
            return (!self.blocked(t.span.end, mention.start, t.category))
                .then(|| mention.start - t.span.end);
        }
        if backward && mention.end <= t.span.start {
            return (!self.blocked(mention.end, t.span.start, t.category))
                .then(|| t.span.start - mention.end);
        }
        None
    }

    /// The context of the mention at `mention` (byte range in the sentence): the nearest
    /// covering negation or uncertainty trigger, and whether it is historical.
    pub fn qualify(&self, mention: &Range<usize>) -> Qualifier {
        let mut best: Option<(usize, &Found)> = None;
        let mut historical = false;
        for t in &self.triggers {
            let Some(d) = self.covers(t, mention) else {
                continue;
            };
            if t.category == Category::Historical {
                historical = true;
            } else if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, t));
            }
        }
        Qualifier {
            status: best.map(|(_, t)| (t.category, t.span.clone())),
            historical,
        }
    }
}
