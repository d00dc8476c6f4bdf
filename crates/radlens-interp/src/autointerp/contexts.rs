//! The text an explainer reads and a scorer tests: windows of report tokens with one
//! latent's activation on each, rebuilt from the activation store the feature database
//! was built from (and checked against it), plus windows where the latent is silent.
//!
//! Which examples go where, as in delphi: the explainer sees the top examples and half of
//! the activation-quantile examples; the scorers test the other half (so an explanation
//! is never scored on the text it was written from), against as many non-activating
//! windows, half drawn at random and half "hard": the windows richest in the tokens the
//! latent fires on elsewhere, where it stays silent. (delphi finds hard negatives by
//! sentence-embedding neighbours; token overlap needs no second model and asks the same
//! question: does the explanation say *when* the token counts?)

use super::db::TokenRef;
use crate::feature_db::{Example, Feature};
use crate::{InterpError, Result};
use radlens_sae::{ActivationStore, Sae, TokenRecord};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A window of one report's tokens around a focus token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    pub doc: String,
    /// The focus token's position in its report.
    pub position: u32,
    pub tokens: Vec<String>,
    /// The latent's activation on each token.
    pub activations: Vec<f64>,
    /// Index of the focus token in `tokens`.
    pub focus: usize,
}

impl Context {
    pub fn token_ref(&self) -> TokenRef {
        TokenRef {
            doc: self.doc.clone(),
            position: self.position,
        }
    }

    /// The window as plain text.
    pub fn text(&self) -> String {
        self.tokens.concat().trim().to_string()
    }

    /// Tokens where the latent fires.
    pub fn active(&self) -> Vec<bool> {
        self.activations.iter().map(|&a| a > 0.0).collect()
    }

    /// The text with each run of `marked` tokens between `<<` and `>>`, as delphi shows
    /// activating tokens.
    pub fn marked(&self, marked: &[bool]) -> String {
        let mut out = String::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let on = marked[i];
            let before = i > 0 && marked[i - 1];
            let after = i + 1 < marked.len() && marked[i + 1];
            // the opening mark goes after the token's leading space, as a reader expects
            let (space, word) = t.split_at(t.len() - t.trim_start().len());
            out.push_str(space);
            if on && !before {
                out.push_str("<<");
            }
            out.push_str(word);
            if on && !after {
                out.push_str(">>");
            }
        }
        out.trim().to_string()
    }
}

/// The store's tokens and, for the latents asked for, their nonzero activations.
pub struct StoreIndex {
    records: Vec<TokenRecord>,
    row_of: HashMap<(String, u32), usize>,
    /// Per latent asked for: `(row, activation)` sorted by row.
    codes: HashMap<usize, Vec<(usize, f32)>>,
    /// Tokens shown on each side of a focus token.
    radius: usize,
}

impl StoreIndex {
    /// Encodes every row of `store` with `sae`, keeping the codes of `latents`.
    pub fn build(
        sae: &Sae,
        store: &ActivationStore,
        latents: &[usize],
        radius: usize,
    ) -> Result<Self> {
        store.check_reader(sae)?;
        let wanted: HashSet<u32> = latents.iter().map(|&l| l as u32).collect();
        let mut codes: HashMap<usize, Vec<(usize, f32)>> =
            latents.iter().map(|&l| (l, Vec::new())).collect();
        let mut records: Vec<TokenRecord> = Vec::new();
        for s in 0..store.shards().len() {
            let (acts, tokens) = store.read_shard_with_tokens(s)?;
            let n = acts.dim(0)?;
            const BATCH: usize = 4096;
            for start in (0..n).step_by(BATCH) {
                let c = sae.encode(&acts.narrow(0, start, BATCH.min(n - start))?)?;
                let values = c.values.to_vec1::<f32>()?;
                let entries = c.index.entry_rows().iter().zip(c.index.entry_cols());
                for ((&r, &col), &v) in entries.zip(&values) {
                    if v > 0.0 && wanted.contains(&col) {
                        let row = records.len() + start + r as usize;
                        codes.entry(col as usize).or_default().push((row, v));
                    }
                }
            }
            records.extend(tokens);
        }
        for c in codes.values_mut() {
            c.sort_unstable_by_key(|&(row, _)| row);
        }
        let row_of = records
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.doc.clone(), r.position), i))
            .collect();
        Ok(Self {
            records,
            row_of,
            codes,
            radius,
        })
    }

    fn activation(&self, latent: usize, row: usize) -> f32 {
        let codes = &self.codes[&latent];
        codes
            .binary_search_by_key(&row, |&(r, _)| r)
            .map_or(0.0, |i| codes[i].1)
    }

    /// The rows of the window around `row`, within its report.
    fn window(&self, row: usize) -> std::ops::Range<usize> {
        let doc = &self.records[row].doc;
        let same = |r: usize| self.records[r].doc == *doc;
        let mut start = row;
        while start > 0 && row - start < self.radius && same(start - 1) {
            start -= 1;
        }
        let mut end = row + 1;
        while end < self.records.len() && end - row <= self.radius && same(end) {
            end += 1;
        }
        start..end
    }

    fn context(&self, latent: usize, row: usize) -> Context {
        let w = self.window(row);
        Context {
            doc: self.records[row].doc.clone(),
            position: self.records[row].position,
            tokens: w.clone().map(|r| self.records[r].text.clone()).collect(),
            activations: w
                .clone()
                .map(|r| self.activation(latent, r) as f64)
                .collect(),
            focus: row - w.start,
        }
    }

    /// The context of a stored example, after checking that the store holds its token
    /// and that the SAE gives it the stored activation: a database built from another
    /// SAE or store is refused rather than explained with the wrong text.
    fn example_context(&self, latent: usize, ex: &Example, db: &Path) -> Result<Context> {
        let row = *self
            .row_of
            .get(&(ex.doc.clone(), ex.position as u32))
            .ok_or_else(|| {
                InterpError::invalid(format!(
                    "{}: latent {latent}'s example (report {}, token {}) is not in the \
                     activation store: the database was built from another store",
                    db.display(),
                    ex.doc,
                    ex.position
                ))
            })?;
        let got = self.activation(latent, row) as f64;
        if self.records[row].text != ex.token
            || (got - ex.activation).abs() > 1e-3 * ex.activation.abs().max(1.0)
        {
            return Err(InterpError::invalid(format!(
                "{}: latent {latent} has activation {:.4} on {:?} (report {}, token {}) in \
                 the database but {got:.4} on {:?} with this SAE and store: the database \
                 was built from another SAE or store",
                db.display(),
                ex.activation,
                ex.token,
                ex.doc,
                ex.position,
                self.records[row].text
            )));
        }
        Ok(self.context(latent, row))
    }
}

/// A latent's examples, split between the explainer and the scorers.
pub struct LatentExamples {
    /// Shown to the explainer: top and quantile examples interleaved, strongest first.
    pub shown: Vec<Context>,
    /// Activating windows held back for scoring, spread over the quantiles.
    pub held_back: Vec<Context>,
}

impl LatentExamples {
    /// Splits `feature`'s stored examples: the top ones and the even-ranked quantile ones
    /// are shown, the odd-ranked quantile ones (not also shown) are held back.
    pub fn of(feature: &Feature, index: &StoreIndex, db: &Path) -> Result<Self> {
        let latent = feature.index;
        let ctx = |e: &Example| index.example_context(latent, e, db);
        let top: Vec<Context> = feature.top.iter().map(ctx).collect::<Result<_>>()?;
        // strongest bin first
        let mut quantiles: Vec<&Example> = feature.quantiles.iter().collect();
        quantiles.sort_by_key(|e| (std::cmp::Reverse(e.quantile), e.rank));
        let even: Vec<Context> = quantiles
            .iter()
            .filter(|e| e.rank % 2 == 0)
            .map(|e| ctx(e))
            .collect::<Result<_>>()?;
        let mut shown = Vec::with_capacity(top.len() + even.len());
        let (mut a, mut b) = (top.into_iter(), even.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => shown.extend(x.into_iter().chain(y)),
            }
        }
        let seen: HashSet<TokenRef> = shown.iter().map(Context::token_ref).collect();
        // spread over the bins: the first odd-ranked example of every bin, then the next
        let mut odd: Vec<&Example> = quantiles
            .iter()
            .copied()
            .filter(|e| e.rank % 2 == 1)
            .collect();
        odd.sort_by_key(|e| (e.rank, std::cmp::Reverse(e.quantile)));
        let mut held_back = Vec::new();
        for e in odd {
            let c = ctx(e)?;
            if !seen.contains(&c.token_ref()) {
                held_back.push(c);
            }
        }
        Ok(Self { shown, held_back })
    }
}

/// How a non-activating window was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeKind {
    Random,
    /// Shares tokens with the windows where the latent fires.
    Hard,
}

impl StoreIndex {
    /// Whether `latent` is silent on the whole window around `row`.
    fn silent(&self, latent: usize, row: usize) -> bool {
        self.window(row).all(|r| self.activation(latent, r) == 0.0)
    }

    /// Up to `n` distinct windows where `latent` is silent throughout, drawn at random.
    pub fn random_negatives(&self, latent: usize, n: usize, rng: &mut impl Rng) -> Vec<Context> {
        let mut rows = HashSet::new();
        let mut out = Vec::new();
        // a latent that fires nearly everywhere may leave few silent windows: give up
        // after a bounded number of draws
        for _ in 0..n * 50 {
            if out.len() == n || self.records.is_empty() {
                break;
            }
            let row = rng.gen_range(0..self.records.len());
            if rows.insert(row) && self.silent(latent, row) {
                out.push(self.context(latent, row));
            }
        }
        out
    }

    /// Up to `n` windows where `latent` is silent throughout that hold the most tokens the
    /// latent fires on in `activating` (ties broken at random), excluding `taken`.
    pub fn hard_negatives(
        &self,
        latent: usize,
        activating: &[Context],
        n: usize,
        taken: &HashSet<TokenRef>,
        rng: &mut impl Rng,
    ) -> Vec<Context> {
        let firing: HashSet<&str> = activating
            .iter()
            .flat_map(|c| c.tokens.iter().zip(&c.activations))
            .filter(|(_, &a)| a > 0.0)
            .map(|(t, _)| t.as_str())
            .collect();
        let hits: Vec<u32> = self
            .records
            .iter()
            .map(|r| u32::from(firing.contains(r.text.as_str())))
            .collect();
        let mut prefix = vec![0u32; hits.len() + 1];
        for (i, h) in hits.iter().enumerate() {
            prefix[i + 1] = prefix[i] + h;
        }
        let mut candidates: Vec<(u32, usize)> = (0..self.records.len())
            .filter(|&row| hits[row] > 0)
            .map(|row| {
                let w = self.window(row);
                (prefix[w.end] - prefix[w.start], row)
            })
            .collect();
        candidates.shuffle(rng);
        candidates.sort_by_key(|&(overlap, _)| std::cmp::Reverse(overlap));
        let mut out = Vec::new();
        let mut used: HashSet<usize> = HashSet::new();
        for (_, row) in candidates {
            if out.len() == n {
                break;
            }
            // one window per stretch of text: skip windows overlapping a chosen one
            let w = self.window(row);
            if w.clone().any(|r| used.contains(&r)) || !self.silent(latent, row) {
                continue;
            }
            let c = self.context(latent, row);
            if taken.contains(&c.token_ref()) {
                continue;
            }
            used.extend(w);
            out.push(c);
        }
        out
    }
}

/// The examples a scorer tests: activating windows and as many silent ones, half random
/// and half hard (seeded per latent).
#[derive(Debug, Clone, Serialize)]
pub struct ScoringSet {
    pub positives: Vec<Context>,
    pub negatives: Vec<(NegativeKind, Context)>,
}

impl ScoringSet {
    /// Up to `n` held-back activating windows and the same number of silent ones.
    pub fn draw(
        index: &StoreIndex,
        examples: &LatentExamples,
        latent: usize,
        n: usize,
        seed: u64,
    ) -> Self {
        let positives: Vec<Context> = examples.held_back.iter().take(n).cloned().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ ((latent as u64) << 24));
        let n_hard = positives.len() / 2;
        let hard = index.hard_negatives(latent, &examples.shown, n_hard, &HashSet::new(), &mut rng);
        let taken: HashSet<TokenRef> = hard.iter().map(Context::token_ref).collect();
        let mut negatives: Vec<(NegativeKind, Context)> =
            hard.into_iter().map(|c| (NegativeKind::Hard, c)).collect();
        // random windows fill what hard ones could not
        let random = index.random_negatives(latent, positives.len() * 2, &mut rng);
        negatives.extend(
            random
                .into_iter()
                .filter(|c| !taken.contains(&c.token_ref()))
                .take(positives.len() - negatives.len())
                .map(|c| (NegativeKind::Random, c)),
        );
        // balanced: as many positives as negatives
        let k = positives.len().min(negatives.len());
        Self {
            positives: positives.into_iter().take(k).collect(),
            negatives: negatives.into_iter().take(k).collect(),
        }
    }
}

/// A context of report "d" from token texts and activations, for tests.
#[cfg(test)]
pub(crate) fn test_context(tokens: &[&str], activations: &[f64]) -> Context {
    Context {
        doc: "d".into(),
        position: 0,
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        activations: activations.to_vec(),
        focus: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::test_context as ctx;

    #[test]
    fn runs_of_marked_tokens_share_one_pair_of_delimiters() {
        let c = ctx(&["small", " pleural", " eff", "usion", " noted"], &[0.0; 5]);
        assert_eq!(
            c.marked(&[false, true, true, true, false]),
            "small <<pleural effusion>> noted"
        );
        assert_eq!(
            c.marked(&[true, false, true, false, true]),
            "<<small>> pleural <<eff>>usion <<noted>>"
        );
        assert_eq!(c.text(), "small pleural effusion noted");
    }
}
