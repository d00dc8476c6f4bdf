//! `radlens sae explain` and `radlens sae score` as library calls: choose latents, explain
//! each one not yet explained, score each explanation not yet scored, one transaction per
//! result, and summarise the scores over latents with bootstrap intervals.

use super::contexts::{LatentExamples, NegativeKind, ScoringSet, StoreIndex};
use super::db::{AutointerpDb, ExplanationScore};
use super::llm::{self, ChatModel, JudgeTask};
use super::ngram::{self, NgramConfig};
use super::score::{embedding_score, judge_score, ScoreDetails};
use crate::feature_db::{Feature, FeatureDb};
use crate::{InterpError, Result};
use radlens_core::observe::Count;
use radlens_core::results::write_json;
use radlens_core::Observer;
use radlens_eval::bootstrap_mean_ci;
use radlens_lm::SentenceEncoder;
use radlens_sae::formats::load_sae;
use radlens_sae::ActivationStore;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file `radlens sae score` writes in its output directory.
pub const SCORES: &str = "scores.json";

/// Which latents to work on.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// `count` latents that fired at least `min_fires` times, taken in turn from each
    /// Matryoshka group (seeded shuffle within a group), so that small groups are not
    /// drowned by the large last one.
    Stratified {
        count: usize,
        min_fires: u64,
        seed: u64,
    },
    /// These latents (each must exist and have fired).
    Listed(Vec<usize>),
}

/// A feature database and where its SAE and activation store are.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub db: PathBuf,
    /// Default: the SAE path the database's `meta` records.
    pub sae: Option<PathBuf>,
    /// Default: the store path the database's `meta` records.
    pub activations: Option<PathBuf>,
}

/// The database opened for writing, the chosen latents and their store contexts.
pub struct Autointerp {
    features: FeatureDb,
    db: AutointerpDb,
    index: StoreIndex,
    latents: Vec<usize>,
}

/// The settings `radlens sae features` recorded.
#[derive(Deserialize)]
struct FeatureSettings {
    context: usize,
}

impl Autointerp {
    /// Opens `target` (adding the explanation tables), chooses the latents and reads
    /// their activations on the whole store, checking that the database, SAE and store
    /// belong together.
    pub fn open(target: &Target, selection: &Selection) -> Result<Self> {
        let db = AutointerpDb::open(&target.db)?;
        let features = FeatureDb::open(&target.db)?;
        let recorded = |key: &str, given: &Option<PathBuf>| -> Result<PathBuf> {
            match given {
                Some(p) => Ok(p.clone()),
                None => db.meta(key)?.map(PathBuf::from).ok_or_else(|| {
                    InterpError::invalid(format!(
                        "{}: the database does not record its {key}; name it",
                        target.db.display()
                    ))
                }),
            }
        };
        let sae_path = recorded("sae", &target.sae)?;
        let store_path = recorded("activations", &target.activations)?;
        let sae = load_sae(&sae_path)?;
        if sae.config().d_sae != features.latents() {
            return Err(InterpError::invalid(format!(
                "{}: the database describes {} latents but the SAE {} has {}: it was \
                 built from another SAE",
                target.db.display(),
                features.latents(),
                sae_path.display(),
                sae.config().d_sae
            )));
        }
        let store = ActivationStore::open(&store_path)?;
        let settings: FeatureSettings = db
            .meta("feature_settings")?
            .and_then(|s| serde_json::from_str(&s).ok())
            .ok_or_else(|| {
                InterpError::invalid(format!(
                    "{}: no readable feature_settings in meta (rebuild it with `radlens sae \
                     features`)",
                    target.db.display()
                ))
            })?;
        let latents = choose(&db, selection)?;
        let index = StoreIndex::build(&sae, &store, &latents, settings.context)?;
        Ok(Self {
            features,
            db,
            index,
            latents,
        })
    }

    /// The chosen latents, in the order they are worked on.
    pub fn latents(&self) -> &[usize] {
        &self.latents
    }

    fn feature(&self, latent: usize) -> Result<Feature> {
        self.features
            .feature(latent)?
            .ok_or_else(|| InterpError::invalid(format!("latent {latent} is not in the database")))
    }

    fn examples(&self, latent: usize) -> Result<LatentExamples> {
        LatentExamples::of(&self.feature(latent)?, &self.index, self.db.path())
    }
}

/// The latents a selection names, in order; errors for latents past the SAE's width or
/// that never fired.
fn choose(db: &AutointerpDb, selection: &Selection) -> Result<Vec<usize>> {
    let sql = |source| InterpError::Sqlite {
        path: db.path().to_path_buf(),
        source,
    };
    let mut st = db
        .connection()
        .prepare("SELECT id, matryoshka_group, fires FROM latents ORDER BY id")
        .map_err(sql)?;
    let latents: Vec<(usize, usize, u64)> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, i64>(1)? as usize,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    match selection {
        Selection::Listed(ids) => {
            for &id in ids {
                match latents.get(id) {
                    None => {
                        return Err(InterpError::invalid(format!(
                            "feature {id} is out of range: {} has {} latents (0 to {})",
                            db.path().display(),
                            latents.len(),
                            latents.len().saturating_sub(1)
                        )))
                    }
                    Some(&(_, _, 0)) => {
                        return Err(InterpError::invalid(format!(
                            "feature {id} never fired in {}: nothing to explain",
                            db.path().display()
                        )))
                    }
                    Some(_) => {}
                }
            }
            Ok(ids.clone())
        }
        Selection::Stratified {
            count,
            min_fires,
            seed,
        } => Ok(stratified(&latents, *count, *min_fires, *seed)),
    }
}

/// `count` of the `(id, group, fires)` latents with at least `min_fires` firings, one
/// group at a time in turn.
fn stratified(
    latents: &[(usize, usize, u64)],
    count: usize,
    min_fires: u64,
    seed: u64,
) -> Vec<usize> {
    let groups = latents.iter().map(|l| l.1 + 1).max().unwrap_or(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pools: Vec<Vec<usize>> = (0..groups)
        .map(|g| {
            let mut ids: Vec<usize> = latents
                .iter()
                .filter(|l| l.1 == g && l.2 >= min_fires)
                .map(|l| l.0)
                .collect();
            ids.shuffle(&mut rng);
            ids.reverse(); // popped from the back
            ids
        })
        .collect();
    let mut out = Vec::new();
    while out.len() < count && pools.iter().any(|p| !p.is_empty()) {
        for pool in pools.iter_mut() {
            if out.len() < count {
                out.extend(pool.pop());
            }
        }
    }
    out
}

/// How latents are explained.
pub enum Explainer<'a> {
    /// The contrastive n-gram explainer, against as many random silent windows as shown
    /// examples.
    Ngram(NgramConfig),
    /// A chat model, shown the first `examples` of the latent's examples.
    Llm {
        model: &'a dyn ChatModel,
        examples: usize,
        max_tokens: usize,
    },
}

impl Explainer<'_> {
    /// The name its explanations are stored under.
    pub fn name(&self) -> String {
        match self {
            Explainer::Ngram(_) => "ngram".into(),
            Explainer::Llm { model, .. } => format!("llm:{}", model.name()),
        }
    }
}

/// What an explain run did.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainSummary {
    pub explainer: String,
    pub latents: usize,
    pub explained: usize,
    /// Already explained by this explainer (kept).
    pub cached: usize,
}

/// Explains every chosen latent that `explainer` has not explained yet, storing each
/// explanation in its own transaction and reporting the latents done.
pub fn explain(
    ai: &mut Autointerp,
    explainer: &Explainer,
    seed: u64,
    progress: &dyn Observer<Count>,
) -> Result<ExplainSummary> {
    let name = explainer.name();
    let done = ai.db.explained(&name)?;
    let mut summary = ExplainSummary {
        explainer: name.clone(),
        latents: ai.latents.len(),
        explained: 0,
        cached: 0,
    };
    let total = ai.latents.len() as u64;
    for (i, &latent) in ai.latents.clone().iter().enumerate() {
        if done.contains(&latent) {
            summary.cached += 1;
        } else {
            let ex = ai.examples(latent)?;
            let (text, shown) = match explainer {
                Explainer::Ngram(cfg) => {
                    let mut rng =
                        rand::rngs::StdRng::seed_from_u64(seed ^ ((latent as u64) << 24) ^ 1);
                    let silent = ai.index.random_negatives(latent, ex.shown.len(), &mut rng);
                    (ngram::explain(&ex.shown, &silent, cfg), &ex.shown[..])
                }
                Explainer::Llm {
                    model,
                    examples,
                    max_tokens,
                } => {
                    let shown = &ex.shown[..(*examples).min(ex.shown.len())];
                    (llm::explain(*model, shown, *max_tokens)?, shown)
                }
            };
            let refs: Vec<_> = shown.iter().map(|c| c.token_ref()).collect();
            ai.db.put_explanation(latent, &name, &text, &refs)?;
            summary.explained += 1;
        }
        progress.observe(&Count {
            done: i as u64 + 1,
            total,
        });
    }
    Ok(summary)
}

/// The scorers to run and their settings.
pub struct Scorers<'a> {
    pub embedding: Option<&'a SentenceEncoder>,
    /// Detection and fuzzing judge.
    pub judge: Option<&'a dyn ChatModel>,
    /// Activating windows scored per latent (and as many silent ones).
    pub examples: usize,
    /// Texts per judge request.
    pub judge_batch: usize,
}

/// One row of `scores.json`: an explainer's mean score by one scorer over the latents,
/// with a 95% bootstrap interval over latents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    pub explainer: String,
    pub scorer: String,
    pub n_features: usize,
    /// Mean AUROC (embedding) or balanced accuracy (detection, fuzzing); 0.5 is chance.
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Scores the explanations of every chosen latent by each explainer in `explainers`
/// (default: every explainer in the database) with each scorer that has not scored
/// them yet, then writes `scores.json` to `out` over all the chosen latents' scores.
pub fn score(
    ai: &mut Autointerp,
    explainers: &[String],
    scorers: &Scorers,
    seed: u64,
    out: &Path,
    progress: &dyn Observer<Count>,
) -> Result<Vec<ScoreRow>> {
    let explainers = if explainers.is_empty() {
        ai.db.explainers()?
    } else {
        explainers.to_vec()
    };
    let known = ai.db.explainers()?;
    if let Some(unknown) = explainers.iter().find(|e| !known.contains(e)) {
        return Err(InterpError::invalid(format!(
            "{}: no explanations by {unknown} (explainers here: {})",
            ai.db.path().display(),
            known.join(", ")
        )));
    }
    if explainers.is_empty() {
        return Err(InterpError::invalid(format!(
            "{}: no explanations to score (run `radlens sae explain` first)",
            ai.db.path().display()
        )));
    }
    let mut names: Vec<&str> = Vec::new();
    if scorers.embedding.is_some() {
        names.extend(["embedding", "embedding_hard"]);
    }
    if scorers.judge.is_some() {
        names.extend(["detection", "fuzzing"]);
    }
    if names.is_empty() {
        return Err(InterpError::invalid(
            "no scorer: give a sentence encoder or a judge",
        ));
    }
    let total = (explainers.len() * ai.latents.len()) as u64;
    let mut step = 0;
    for explainer in &explainers {
        let done: Vec<_> = names
            .iter()
            .map(|s| ai.db.scored(explainer, s))
            .collect::<Result<_>>()?;
        for latent in ai.latents.clone() {
            step += 1;
            let todo: Vec<&str> = names
                .iter()
                .zip(&done)
                .filter(|(_, d)| !d.contains(&latent))
                .map(|(s, _)| *s)
                .collect();
            let Some(text) = ai.db.explanation(latent, explainer)? else {
                progress.observe(&Count { done: step, total });
                continue;
            };
            if !todo.is_empty() {
                let ex = ai.examples(latent)?;
                let set = ScoringSet::draw(&ai.index, &ex, latent, scorers.examples, seed);
                let judge_seed = seed ^ ((latent as u64) << 24) ^ 2;
                for scorer in todo.into_iter().filter(|s| scorable(&set, s)) {
                    let (s, details): (ExplanationScore, ScoreDetails) = match scorer {
                        "embedding" | "embedding_hard" => embedding_score(
                            scorers.embedding.expect("embedding scorer chosen"),
                            &text,
                            &set,
                            if scorer == "embedding" {
                                NegativeKind::Random
                            } else {
                                NegativeKind::Hard
                            },
                        )?,
                        task => judge_score(
                            scorers.judge.expect("judge chosen"),
                            if task == "detection" {
                                JudgeTask::Detection
                            } else {
                                JudgeTask::Fuzzing
                            },
                            &text,
                            &set,
                            scorers.judge_batch,
                            judge_seed,
                        )?,
                    };
                    ai.db.put_score(latent, explainer, &s, &details)?;
                }
            }
            progress.observe(&Count { done: step, total });
        }
    }
    let rows = summarise(ai, &explainers, &names, seed)?;
    write_json(&out.join(SCORES), &rows)?;
    Ok(rows)
}

/// Whether `set` has both classes for `scorer`: a latent whose examples were all shown
/// to the explainer, or without silent windows of a kind, is left out (not scored at
/// chance), so `n_features` counts only latents that could be scored.
fn scorable(set: &ScoringSet, scorer: &str) -> bool {
    let has = |kind| set.negatives.iter().any(|(k, _)| *k == kind);
    !set.positives.is_empty()
        && match scorer {
            "embedding" => has(NegativeKind::Random),
            "embedding_hard" => has(NegativeKind::Hard),
            _ => !set.negatives.is_empty(),
        }
}

/// Mean score and bootstrap interval over the chosen latents, per explainer and scorer.
fn summarise(
    ai: &Autointerp,
    explainers: &[String],
    scorers: &[&str],
    seed: u64,
) -> Result<Vec<ScoreRow>> {
    let chosen: std::collections::HashSet<usize> = ai.latents.iter().copied().collect();
    let mut rows = Vec::new();
    for explainer in explainers {
        for scorer in scorers {
            let values: Vec<f64> = ai
                .db
                .scores(explainer, scorer)?
                .into_iter()
                .filter(|(l, _)| chosen.contains(l))
                .map(|(_, s)| s)
                .collect();
            if values.is_empty() {
                continue;
            }
            let (ci_low, ci_high) = bootstrap_mean_ci(&values, 2000, seed);
            rows.push(ScoreRow {
                explainer: explainer.clone(),
                scorer: scorer.to_string(),
                n_features: values.len(),
                accuracy: values.iter().sum::<f64>() / values.len() as f64,
                ci_low,
                ci_high,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latent_without_one_class_is_not_scored() {
        use crate::autointerp::contexts::test_context;
        let c = || test_context(&["a"], &[0.0]);
        let random_only = ScoringSet {
            positives: vec![c()],
            negatives: vec![(NegativeKind::Random, c())],
        };
        assert!(scorable(&random_only, "embedding") && scorable(&random_only, "detection"));
        assert!(!scorable(&random_only, "embedding_hard"));
        let no_positives = ScoringSet {
            positives: vec![],
            ..random_only
        };
        assert!(!scorable(&no_positives, "embedding") && !scorable(&no_positives, "fuzzing"));
    }

    #[test]
    fn stratified_choice_takes_groups_in_turn_and_skips_rare_latents() {
        // group 0: latents 0-1 (1 fires too rarely); group 1: 2-7; group 2: 8-11
        let mut latents = vec![(0, 0, 50), (1, 0, 3)];
        latents.extend((2..8).map(|i| (i, 1, 50)));
        latents.extend((8..12).map(|i| (i, 2, 50)));
        let chosen = stratified(&latents, 7, 10, 3);
        let group = |i: usize| latents[i].1;
        let per_group = |g| chosen.iter().filter(|&&i| group(i) == g).count();
        // group 0 has one eligible latent; the rest is shared out in turn
        assert_eq!((per_group(0), per_group(1), per_group(2)), (1, 3, 3));
        assert!(!chosen.contains(&1));
        assert_eq!(chosen, stratified(&latents, 7, 10, 3));
        assert_eq!(stratified(&latents, 100, 10, 3).len(), 11);
    }
}
