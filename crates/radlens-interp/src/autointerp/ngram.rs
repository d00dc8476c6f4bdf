//! The contrastive n-gram explainer: no language model, only counting.
//!
//! In a causal language model a token's activation depends on that token and the ones
//! before it, so the candidate causes of a firing are the 1-, 2- and 3-grams *ending* at
//! it. For every token where the latent fires in its shown examples (events A) and every
//! token of as many windows where it is silent (events B), the n-grams ending there are
//! counted, and each n-gram is scored by its log-odds ratio between A and B with an
//! informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"): the
//! prior pulls rare n-grams towards no difference, and dividing by the estimate's
//! standard error gives a z-score that does not favour n-grams seen twice over ones seen
//! forty times. The explanation lists the most over-represented n-grams and the token the
//! latent fires on most strongly, e.g. `"effusion", "pleural effusion" (fires on the token
//! "effusion")`.

use super::contexts::Context;
use std::collections::HashMap;

/// Settings of the n-gram explainer.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramConfig {
    /// Longest n-gram counted.
    pub max_n: usize,
    /// Total pseudo-count of the prior, spread over n-grams by their pooled frequency.
    pub prior_strength: f64,
    /// Smallest z-score an n-gram needs to be named.
    pub min_z: f64,
    /// Smallest number of activating tokens an n-gram must end at.
    pub min_count: usize,
    /// Most n-grams named.
    pub max_terms: usize,
}

impl Default for NgramConfig {
    fn default() -> Self {
        Self {
            max_n: 3,
            prior_strength: 10.0,
            min_z: 1.96,
            min_count: 2,
            max_terms: 3,
        }
    }
}

/// An n-gram's over-representation at activating tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub text: String,
    pub n: usize,
    /// Occurrences ending at activating / silent tokens.
    pub count_active: usize,
    pub count_silent: usize,
    /// Log-odds ratio (active vs silent) and its z-score.
    pub log_odds: f64,
    pub z: f64,
}

/// The n-grams of order `n` ending at each token of `ctx` for which `keep` holds.
fn ngrams_ending<'a>(
    ctx: &'a Context,
    n: usize,
    keep: impl Fn(usize) -> bool + 'a,
) -> impl Iterator<Item = String> + 'a {
    (n - 1..ctx.tokens.len())
        .filter(move |&i| keep(i))
        .map(move |i| ctx.tokens[i + 1 - n..=i].concat().trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Every n-gram (orders 1 to `max_n`) scored, highest z first (ties by text).
pub fn score_terms(active: &[Context], silent: &[Context], cfg: &NgramConfig) -> Vec<Term> {
    let mut terms = Vec::new();
    for n in 1..=cfg.max_n {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for c in active {
            for g in ngrams_ending(c, n, |i| c.activations[i] > 0.0) {
                counts.entry(g).or_default().0 += 1;
            }
        }
        for c in silent {
            for g in ngrams_ending(c, n, |_| true) {
                counts.entry(g).or_default().1 += 1;
            }
        }
        let n_a: usize = counts.values().map(|c| c.0).sum();
        let n_b: usize = counts.values().map(|c| c.1).sum();
        if n_a == 0 || n_b == 0 {
            continue;
        }
        let (n_a, n_b, a0) = (n_a as f64, n_b as f64, cfg.prior_strength);
        for (text, (ya, yb)) in counts {
            let alpha = a0 * (ya + yb) as f64 / (n_a + n_b);
            let (fa, fb) = (ya as f64 + alpha, yb as f64 + alpha);
            let log_odds = (fa / (n_a + a0 - fa)).ln() - (fb / (n_b + a0 - fb)).ln();
            let z = log_odds / (1.0 / fa + 1.0 / fb).sqrt();
            terms.push(Term {
                text,
                n,
                count_active: ya,
                count_silent: yb,
                log_odds,
                z,
            });
        }
    }
    terms.sort_by(|a, b| b.z.total_cmp(&a.z).then_with(|| a.text.cmp(&b.text)));
    terms
}

/// The explanation: the most over-represented n-grams (none a fragment of another named
/// before it) and the token the latent fires on most strongly in most examples.
pub fn explain(active: &[Context], silent: &[Context], cfg: &NgramConfig) -> String {
    let mut named: Vec<String> = Vec::new();
    for t in score_terms(active, silent, cfg) {
        if named.len() == cfg.max_terms || t.z < cfg.min_z {
            break;
        }
        // a fragment of a named term adds nothing ("astinal" after "mediastinal"); a term
        // that extends one adds its context ("pleural effusion" after "effusion")
        if t.count_active >= cfg.min_count && !named.iter().any(|n| n.contains(&t.text)) {
            named.push(t.text);
        }
    }
    let quoted: Vec<String> = named.iter().map(|t| format!("{t:?}")).collect();
    let terms = if quoted.is_empty() {
        "no n-gram stands out".to_string()
    } else {
        quoted.join(", ")
    };
    match peak_token(active) {
        Some((tok, word)) if word != tok => {
            format!("{terms} (fires on the token {tok:?} of {word:?})")
        }
        Some((tok, _)) => format!("{terms} (fires on the token {tok:?})"),
        None => terms,
    }
}

/// The commonest (token, word) pair of the token with the highest activation in each
/// example: a sub-word token is shown with the word it is part of.
fn peak_token(active: &[Context]) -> Option<(String, String)> {
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for c in active {
        let Some(peak) =
            (0..c.tokens.len()).max_by(|&i, &j| c.activations[i].total_cmp(&c.activations[j]))
        else {
            continue;
        };
        let text = c.tokens[peak].trim();
        if !text.is_empty() {
            let word = word_around(&c.tokens, peak);
            *counts.entry((text.to_string(), word)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(t, _)| t)
}

/// The word token `i` belongs to: byte-level BPE tokens that start a word carry its
/// leading space, the others continue the word before them.
fn word_around(tokens: &[String], i: usize) -> String {
    let starts_word = |t: &str| !t.starts_with(|c: char| c.is_alphanumeric());
    let mut start = i;
    while start > 0 && !starts_word(&tokens[start]) {
        start -= 1;
    }
    let mut end = i + 1;
    while end < tokens.len() && !starts_word(&tokens[end]) {
        end += 1;
    }
    tokens[start..end].concat().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autointerp::contexts::test_context as ctx;

    /// Two activating windows (the latent fires on " effusion") and two silent ones.
    fn tiny() -> (Vec<Context>, Vec<Context>) {
        let active = vec![
            ctx(&["small", " effusion"], &[0.0, 2.0]),
            ctx(&["pleural", " effusion"], &[0.0, 1.0]),
        ];
        let silent = vec![
            ctx(&["no", " effusion"], &[0.0, 0.0]),
            ctx(&["clear", " lungs"], &[0.0, 0.0]),
        ];
        (active, silent)
    }

    #[test]
    fn log_odds_match_a_hand_computation() {
        let (active, silent) = tiny();
        let cfg = NgramConfig {
            max_n: 2,
            prior_strength: 2.0,
            ..NgramConfig::default()
        };
        let terms = score_terms(&active, &silent, &cfg);
        let get = |t: &str| terms.iter().find(|x| x.text == t).unwrap();
        // Unigrams: A = {effusion: 2} (n_A = 2), B = {no, effusion, clear, lungs} (n_B = 4).
        // "effusion": alpha = 2 * 3/6 = 1; fa = 3, fb = 2;
        //   delta = ln(3 / (2 + 2 - 3)) - ln(2 / (4 + 2 - 2)) = ln 3 - ln 0.5 = ln 6
        //   z = ln 6 / sqrt(1/3 + 1/2)
        let e = get("effusion");
        assert_eq!((e.n, e.count_active, e.count_silent), (1, 2, 1));
        assert!((e.log_odds - 6f64.ln()).abs() < 1e-12, "{}", e.log_odds);
        assert!((e.z - 6f64.ln() / (5.0f64 / 6.0).sqrt()).abs() < 1e-12);
        // "lungs": alpha = 2/6; fa = 1/3, fb = 4/3;
        //   delta = ln((1/3) / (4 - 1/3)) - ln((4/3) / (6 - 4/3)) = ln(1/11) - ln(2/7)
        let l = get("lungs");
        assert!((l.log_odds - ((1.0f64 / 11.0).ln() - (2.0f64 / 7.0).ln())).abs() < 1e-12);
        // Bigrams: A = {small effusion, pleural effusion}, B = {no effusion, clear lungs}:
        // "small effusion": alpha = 2/4 = 0.5; fa = 1.5, fb = 0.5;
        //   delta = ln(1.5 / (2 + 2 - 1.5)) - ln(0.5 / (2 + 2 - 0.5)) = ln 0.6 - ln(1/7) = ln 4.2
        let s = get("small effusion");
        assert_eq!(s.n, 2);
        assert!((s.log_odds - 4.2f64.ln()).abs() < 1e-12, "{}", s.log_odds);
        // "small" never ends at an activating token, so it counts for neither side
        assert!(terms
            .iter()
            .all(|t| t.text != "small" && t.text != "pleural"));
        assert_eq!(terms[0].text, "effusion");
    }

    #[test]
    fn a_sub_word_peak_token_is_shown_with_its_word() {
        let toks = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = toks(&["The", " medi", "ast", "inal", " contour", "."]);
        assert_eq!(word_around(&t, 2), "mediastinal");
        assert_eq!(word_around(&t, 1), "mediastinal");
        assert_eq!(word_around(&t, 4), "contour");
        assert_eq!(word_around(&t, 0), "The");
        let active = vec![ctx(&["The", " medi", "ast", "inal"], &[0.0, 0.0, 3.0, 1.0])];
        let text = explain(&active, &[], &NgramConfig::default());
        assert_eq!(
            text,
            r#"no n-gram stands out (fires on the token "ast" of "mediastinal")"#
        );
    }

    #[test]
    fn explanation_names_significant_terms_and_the_peak_token() {
        let (active, silent) = tiny();
        let loose = NgramConfig {
            min_z: 1.0,
            min_count: 2,
            ..NgramConfig::default()
        };
        // only "effusion" ends at two activating tokens; with the default prior of 10,
        // alpha = 5 and z = ln((7/5) / (6/8)) / sqrt(1/7 + 1/6) ≈ 1.12: named at a
        // threshold of 1, not at the default 1.96
        assert_eq!(
            explain(&active, &silent, &loose),
            r#""effusion" (fires on the token "effusion")"#
        );
        assert_eq!(
            explain(&active, &silent, &NgramConfig::default()),
            r#"no n-gram stands out (fires on the token "effusion")"#
        );
    }
}
