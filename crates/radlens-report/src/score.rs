//! Report-generation metrics: BLEU-4 (corpus level, Papineni et al. 2002), ROUGE-L
//! (longest common subsequence F1, as Google's `rouge-score`), and CheXpert-label F1
//! from radlens' labeller run on both texts.
//!
//! Conventions: text is lower-cased and cut into words and single punctuation marks;
//! BLEU uses uniform weights over 1- to 4-grams, clipped counts, the brevity penalty over
//! the corpus and no smoothing. Label F1 counts a label of 1 as positive, and uncertain
//! (-1), negative and unmentioned as not positive (the usual report-generation
//! convention); micro F1 pools the counts of the 14 CheXpert columns, macro F1 averages
//! the columns that have a positive in either text; `micro_f1_5` pools Atelectasis,
//! Cardiomegaly, Consolidation, Edema and Pleural Effusion.

use crate::label::{Labeler, Observation, Status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Lower-cased words and single punctuation marks.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn ngrams(t: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    if t.len() >= n {
        for g in t.windows(n) {
            *m.entry(g).or_insert(0) += 1;
        }
    }
    m
}

/// Corpus BLEU-4 of `(prediction, reference)` pairs.
pub fn bleu4(pairs: &[(Vec<String>, Vec<String>)]) -> f64 {
    let (mut matched, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut c, mut r) = (0usize, 0usize);
    for (pred, refr) in pairs {
        c += pred.len();
        r += refr.len();
        for n in 1..=4 {
            let rc = ngrams(refr, n);
            for (g, k) in ngrams(pred, n) {
                matched[n - 1] += k.min(rc.get(g).copied().unwrap_or(0));
                total[n - 1] += k;
            }
        }
    }
    if c == 0 || matched.contains(&0) {
        return 0.0;
    }
    let log_p: f64 = (0..4)
        .map(|i| (matched[i] as f64 / total[i] as f64).ln())
        .sum::<f64>()
        / 4.0;
    let bp = if c > r {
        1.0
    } else {
        (1.0 - r as f64 / c as f64).exp()
    };
    bp * log_p.exp()
}

/// Length of the longest common subsequence.
fn lcs(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ROUGE-L F1 of one prediction against one reference.
pub fn rouge_l(pred: &[String], refr: &[String]) -> f64 {
    let l = lcs(pred, refr) as f64;
    if l == 0.0 {
        return 0.0;
    }
    let (p, r) = (l / pred.len() as f64, l / refr.len() as f64);
    2.0 * p * r / (p + r)
}

/// F1 of one column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColumnF1 {
    pub observation: Observation,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub f1: Option<f64>,
}

/// `radlens report score` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportScores {
    pub reports: usize,
    pub bleu4: f64,
    /// Mean over reports.
    pub rouge_l: f64,
    pub chexpert_micro_f1: f64,
    pub chexpert_macro_f1: f64,
    pub chexpert_micro_f1_5: f64,
    pub columns: Vec<ColumnF1>,
    pub conventions: String,
}

const FIVE: [Observation; 5] = [
    Observation::Atelectasis,
    Observation::Cardiomegaly,
    Observation::Consolidation,
    Observation::Edema,
    Observation::PleuralEffusion,
];

fn f1(tp: usize, fp: usize, fn_: usize) -> Option<f64> {
    (tp + fp + fn_ > 0).then(|| 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64)
}

/// Score predicted reports against references (pairs of texts).
pub fn score(labeler: &Labeler, pairs: &[(String, String)]) -> ReportScores {
    let tok: Vec<(Vec<String>, Vec<String>)> =
        pairs.iter().map(|(p, r)| (tokens(p), tokens(r))).collect();
    let rouge = tok.iter().map(|(p, r)| rouge_l(p, r)).sum::<f64>() / tok.len().max(1) as f64;
    let labels: Vec<_> = pairs
        .iter()
        .map(|(p, r)| (labeler.label(p).0, labeler.label(r).0))
        .collect();
    let chexpert = &Observation::COLUMNS[..14];
    let columns: Vec<ColumnF1> = chexpert
        .iter()
        .map(|&o| {
            let (mut tp, mut fp, mut fn_) = (0, 0, 0);
            for (p, r) in &labels {
                let pos = |l: &crate::label::Labels| l.get(o) == Some(Status::Positive);
                match (pos(p), pos(r)) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    _ => {}
                }
            }
            ColumnF1 {
                observation: o,
                true_positives: tp,
                false_positives: fp,
                false_negatives: fn_,
                f1: f1(tp, fp, fn_),
            }
        })
        .collect();
    let micro = |cols: &mut dyn Iterator<Item = &ColumnF1>| {
        let (tp, fp, fn_) = cols.fold((0, 0, 0), |a, c| {
            (
                a.0 + c.true_positives,
                a.1 + c.false_positives,
                a.2 + c.false_negatives,
            )
        });
        f1(tp, fp, fn_).unwrap_or(0.0)
    };
    let defined: Vec<f64> = columns.iter().filter_map(|c| c.f1).collect();
    ReportScores {
        reports: pairs.len(),
        bleu4: bleu4(&tok),
        rouge_l: rouge,
        chexpert_micro_f1: micro(&mut columns.iter()),
        chexpert_macro_f1: defined.iter().sum::<f64>() / defined.len().max(1) as f64,
        chexpert_micro_f1_5: micro(&mut columns.iter().filter(|c| FIVE.contains(&c.observation))),
        columns,
        conventions: "tokens: lower-cased words and punctuation marks; BLEU-4: corpus level, uniform weights, brevity penalty, no smoothing; ROUGE-L: LCS F1 per report, mean; CheXpert F1: radlens labeller on both texts, label 1 positive, -1/0/empty not positive; micro pools the 14 columns, macro averages columns with a positive in either text".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        tokens(s)
    }

    #[test]
    fn tokens_split_words_and_punctuation() {
        assert_eq!(
            t("No effusion, Heart OK."),
            ["no", "effusion", ",", "heart", "ok", "."]
        );
    }

    #[test]
    fn bleu_by_hand() {
        let same = bleu4(&[(t("the cat sat on the mat"), t("the cat sat on the mat"))]);
        assert!((same - 1.0).abs() < 1e-12);
        // p1..p4 = 6/7, 5/6, 4/5, 3/4; longer than the reference: no brevity penalty
        let longer = bleu4(&[(
            t("the cat sat on the mat today"),
            t("the cat sat on the mat"),
        )]);
        assert!(
            (longer - (3.0f64 / 7.0).powf(0.25)).abs() < 1e-12,
            "{longer}"
        );
        // all precisions 1, c = 6 < r = 7: BP = exp(1 - 7/6)
        let shorter = bleu4(&[(
            t("the cat sat on the mat"),
            t("the cat sat on the mat today"),
        )]);
        assert!((shorter - (-1.0f64 / 6.0).exp()).abs() < 1e-12, "{shorter}");
        // clipped counts: "the the the" against "the cat": p1 = 1/3, no bigram match
        assert_eq!(bleu4(&[(t("the the the"), t("the cat"))]), 0.0);
    }

    #[test]
    fn rouge_l_by_hand() {
        // LCS "the cat on the mat" = 5 of 6 tokens each side
        let r = rouge_l(&t("the cat sat on the mat"), &t("the cat is on the mat"));
        assert!((r - 5.0 / 6.0).abs() < 1e-12);
        // LCS 2 ("a c"): P = 2/3, R = 2/4, F1 = 4/7
        let r = rouge_l(&t("a b c"), &t("a c d e"));
        assert!((r - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(rouge_l(&t("x"), &t("y")), 0.0);
    }

    #[test]
    fn label_f1_by_hand() {
        let l = Labeler::builtin().unwrap();
        let pairs = vec![
            (
                "Cardiomegaly. Small left effusion.".to_string(),
                "Cardiomegaly. No effusion.".to_string(),
            ),
            (
                "No pneumothorax.".to_string(),
                "Right pneumothorax.".to_string(),
            ),
        ];
        let s = score(&l, &pairs);
        let col = |o| s.columns.iter().find(|c| c.observation == o).unwrap();
        assert_eq!(col(Observation::Cardiomegaly).f1, Some(1.0));
        assert_eq!(col(Observation::PleuralEffusion).false_positives, 1);
        assert_eq!(col(Observation::Pneumothorax).false_negatives, 1);
        // micro over all columns: tp 1 (cardiomegaly), fp 1, fn 1 plus No Finding:
        // pred 2 has No Finding, ref 2 does not -> fp 1: F1 = 2 / (2 + 2 + 1)
        assert!(
            (s.chexpert_micro_f1 - 2.0 / 5.0).abs() < 1e-12,
            "{:?}",
            s.columns
        );
    }
}
