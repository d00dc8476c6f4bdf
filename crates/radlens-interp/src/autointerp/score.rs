//! Scorers: how well an explanation tells a latent's held-back activating windows from
//! windows where it is silent ([`ScoringSet`], balanced).
//!
//! - embedding: the explanation is a query, each window a document, both embedded with a
//!   sentence encoder (all-MiniLM-L6-v2); the score is the AUROC of their cosine
//!   similarity (delphi's embedding scorer), against the random negatives (`embedding`,
//!   delphi's default) and, separately, against the hard ones (`embedding_hard`), which
//!   share the latent's tokens and so ask whether the explanation says when they count;
//! - detection: an LLM judge reads the explanation and the windows (unmarked, shuffled)
//!   and says which ones the latent fires on;
//! - fuzzing: the judge reads windows with tokens marked and says whether the marks are
//!   on tokens the explanation describes. Positives are activating windows with their
//!   activating tokens marked; negatives are half those windows with as many *silent*
//!   tokens marked instead, half silent windows with random tokens marked.
//!
//! Judges score balanced accuracy (the mean of the hit rates on positives and negatives);
//! a batch whose reply cannot be read counts as wrong throughout.

use super::contexts::{Context, NegativeKind, ScoringSet};
use super::db::ExplanationScore;
use super::llm::{judge, ChatModel, JudgeTask};
use crate::Result;
use radlens_eval::auroc;
use radlens_lm::SentenceEncoder;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One scored text.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredText {
    pub doc: String,
    pub position: u32,
    /// Whether the scorer should accept it.
    pub label: bool,
    /// For a negative, how its window was chosen.
    pub negative: Option<NegativeKind>,
    /// What the scorer read.
    pub text: String,
    /// Cosine similarity (embedding), or the judge's verdict as 1/0 (`None`: unread reply).
    pub prediction: Option<f64>,
}

/// What a scorer stores beside its score.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreDetails {
    pub texts: Vec<ScoredText>,
    /// The judge and its raw replies, batch by batch (LLM scorers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<String>,
}

fn scored(c: &Context, label: bool, negative: Option<NegativeKind>, text: String) -> ScoredText {
    ScoredText {
        doc: c.doc.clone(),
        position: c.position,
        label,
        negative,
        text,
        prediction: None,
    }
}

/// The plain texts of a scoring set, positives first.
fn plain_texts(set: &ScoringSet) -> Vec<ScoredText> {
    let pos = set
        .positives
        .iter()
        .map(|c| scored(c, true, None, c.text()));
    let neg = set
        .negatives
        .iter()
        .map(|(k, c)| scored(c, false, Some(*k), c.text()));
    pos.chain(neg).collect()
}

fn counts(texts: &[ScoredText]) -> (usize, usize) {
    let p = texts.iter().filter(|t| t.label).count();
    (p, texts.len() - p)
}

/// AUROC of the cosine similarity between the explanation and each window, the
/// positives against the negatives of one `kind`.
pub fn embedding_score(
    encoder: &SentenceEncoder,
    explanation: &str,
    set: &ScoringSet,
    kind: NegativeKind,
) -> Result<(ExplanationScore, ScoreDetails)> {
    let mut texts = plain_texts(set);
    texts.retain(|t| t.negative.is_none_or(|k| k == kind));
    let docs: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
    let query = encoder.embed(&[explanation])?;
    let sims = encoder.embed(&docs)?.similarities(query.row(0));
    for (t, s) in texts.iter_mut().zip(&sims) {
        t.prediction = Some(*s as f64);
    }
    let scores: Vec<f64> = sims.iter().map(|&s| s as f64).collect();
    let labels: Vec<bool> = texts.iter().map(|t| t.label).collect();
    let (n_positive, n_negative) = counts(&texts);
    // an empty class leaves nothing to separate: chance (runs leave such latents out)
    let score = auroc(&scores, &labels).unwrap_or(0.5);
    Ok((
        ExplanationScore {
            scorer: match kind {
                NegativeKind::Random => "embedding",
                NegativeKind::Hard => "embedding_hard",
            }
            .into(),
            score,
            n_positive,
            n_negative,
        },
        ScoreDetails {
            texts,
            judge: None,
            replies: Vec::new(),
        },
    ))
}

/// `k` distinct indices of `0..n` for which `allowed` holds, at random.
fn pick(n: usize, k: usize, allowed: impl Fn(usize) -> bool, rng: &mut impl Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).filter(|&i| allowed(i)).collect();
    idx.shuffle(rng);
    idx.truncate(k);
    idx
}

/// The fuzzing texts of a scoring set: see the module documentation.
fn fuzzed_texts(set: &ScoringSet, rng: &mut impl Rng) -> Vec<ScoredText> {
    let mut out: Vec<ScoredText> = set
        .positives
        .iter()
        .map(|c| scored(c, true, None, c.marked(&c.active())))
        .collect();
    let k = set.negatives.len();
    // activating windows with the marks moved to silent tokens
    for c in set.positives.iter().take(k / 2) {
        let active = c.active();
        let n_marks = active.iter().filter(|&&a| a).count().max(1);
        let mut marks = vec![false; c.tokens.len()];
        for i in pick(c.tokens.len(), n_marks, |i| !active[i], rng) {
            marks[i] = true;
        }
        if marks.iter().any(|&m| m) {
            out.push(scored(c, false, None, c.marked(&marks)));
        }
    }
    // silent windows with random marks
    let missing = k - (out.len() - set.positives.len());
    for (kind, c) in set.negatives.iter().take(missing) {
        let n_marks = rng.gen_range(1..=c.tokens.len().clamp(1, 3));
        let mut marks = vec![false; c.tokens.len()];
        for i in pick(c.tokens.len(), n_marks, |_| true, rng) {
            marks[i] = true;
        }
        out.push(scored(c, false, Some(*kind), c.marked(&marks)));
    }
    out
}

/// Balanced accuracy of a judge on `task`, asking `batch` texts at a time in a seeded
/// random order.
pub fn judge_score(
    model: &dyn ChatModel,
    task: JudgeTask,
    explanation: &str,
    set: &ScoringSet,
    batch: usize,
    seed: u64,
) -> Result<(ExplanationScore, ScoreDetails)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut texts = match task {
        JudgeTask::Detection => plain_texts(set),
        JudgeTask::Fuzzing => fuzzed_texts(set, &mut rng),
    };
    texts.shuffle(&mut rng);
    let mut replies = Vec::new();
    for chunk in texts.chunks_mut(batch.max(1)) {
        let shown: Vec<String> = chunk.iter().map(|t| t.text.clone()).collect();
        let (verdicts, reply) = judge(model, task, explanation, &shown)?;
        if let Some(v) = verdicts {
            for (t, yes) in chunk.iter_mut().zip(v) {
                t.prediction = Some(if yes { 1.0 } else { 0.0 });
            }
        }
        replies.push(reply);
    }
    let (n_positive, n_negative) = counts(&texts);
    let hit_rate = |label: bool| {
        let of: Vec<&ScoredText> = texts.iter().filter(|t| t.label == label).collect();
        let right = of
            .iter()
            .filter(|t| t.prediction.is_some_and(|p| (p > 0.5) == label))
            .count();
        if of.is_empty() {
            0.5
        } else {
            right as f64 / of.len() as f64
        }
    };
    let score = (hit_rate(true) + hit_rate(false)) / 2.0;
    let scorer = match task {
        JudgeTask::Detection => "detection",
        JudgeTask::Fuzzing => "fuzzing",
    };
    Ok((
        ExplanationScore {
            scorer: scorer.into(),
            score,
            n_positive,
            n_negative,
        },
        ScoreDetails {
            texts,
            judge: Some(model.name().to_string()),
            replies,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(doc: &str, tokens: &[&str], acts: &[f64]) -> Context {
        Context {
            doc: doc.into(),
            ..crate::autointerp::contexts::test_context(tokens, acts)
        }
    }

    /// A judge that accepts every text containing `word` (fuzzing: marked `word`).
    struct Keyword(&'static str);

    impl ChatModel for Keyword {
        fn name(&self) -> &str {
            "keyword"
        }

        fn reply(&self, _: &str, user: &str, _: usize) -> Result<String> {
            let verdicts: Vec<&str> = user
                .lines()
                .filter(|l| {
                    l.split_once(". ")
                        .is_some_and(|(n, _)| n.parse::<usize>().is_ok())
                })
                .map(|l| if l.contains(self.0) { "1" } else { "0" })
                .collect();
            Ok(format!("[{}]", verdicts.join(", ")))
        }
    }

    fn set() -> ScoringSet {
        ScoringSet {
            positives: vec![
                ctx("a", &["small", " effusion"], &[0.0, 1.0]),
                ctx("b", &["new", " effusion", " left"], &[0.0, 2.0, 0.0]),
            ],
            // fuzzing marks tokens of the first negative only: one without "effusion"
            negatives: vec![
                (
                    NegativeKind::Random,
                    ctx("d", &["clear", " lungs"], &[0.0, 0.0]),
                ),
                (
                    NegativeKind::Hard,
                    ctx("c", &["no", " effusion"], &[0.0, 0.0]),
                ),
            ],
        }
    }

    #[test]
    fn a_judge_that_follows_the_explanation_scores_what_its_verdicts_earn() {
        // detection by the word: right on both positives and the random negative, wrong
        // on the hard one ("no effusion"): (1 + 1/2) / 2
        let (s, d) = judge_score(
            &Keyword("effusion"),
            JudgeTask::Detection,
            "x",
            &set(),
            3,
            1,
        )
        .unwrap();
        assert_eq!((s.n_positive, s.n_negative), (2, 2));
        assert!((s.score - 0.75).abs() < 1e-12, "{}", s.score);
        assert_eq!(d.replies.len(), 2);
        // fuzzing by the marked word: the correctly marked positives say "<<effusion>>",
        // the fuzzed ones never mark it
        let (s, _) = judge_score(
            &Keyword("<<effusion>>"),
            JudgeTask::Fuzzing,
            "x",
            &set(),
            4,
            1,
        )
        .unwrap();
        assert_eq!((s.n_positive, s.n_negative), (2, 2));
        assert!((s.score - 1.0).abs() < 1e-12, "{}", s.score);
    }

    /// A judge whose replies are not lists.
    struct Rambler;

    impl ChatModel for Rambler {
        fn name(&self) -> &str {
            "rambler"
        }

        fn reply(&self, _: &str, _: &str, _: usize) -> Result<String> {
            Ok("I think they are all about lungs.".into())
        }
    }

    #[test]
    fn unreadable_replies_count_as_wrong() {
        let (s, d) = judge_score(&Rambler, JudgeTask::Detection, "x", &set(), 2, 0).unwrap();
        assert_eq!(s.score, 0.0);
        assert!(d.texts.iter().all(|t| t.prediction.is_none()));
    }
}
