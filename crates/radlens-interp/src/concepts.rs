//! Clinical concept probes: which SAE features separate reports with a finding from
//! reports without it.
//!
//! Each report is summarised by the maximum activation of every feature over its kept
//! tokens (the SAE's own token filter). For each finding, features are ranked by their
//! AUROC on the *training* store's reports, in either [`Direction`] unless the probe is
//! restricted to features that fire with the finding; the best ones are then scored, in
//! the direction chosen on the training reports, on the held-out reports, with a
//! stratified bootstrap interval. A finding defined by absence (`normal`: no abnormality)
//! has no token of its own to fire on; a feature silent in its reports is its detector.
//! Choosing the feature on the held-out reports themselves would report the maximum of
//! thousands of noisy AUROCs, which is biased upwards. Findings come from the corpus'
//! curated tags
//! ([`radlens_report::FINDINGS`]); the table is also stored in the feature database
//! (table `concepts`, replaced in one transaction).

use crate::harvest::HarvestConfig;
use crate::{InterpError, Result};
use radlens_core::results::write_json;
use radlens_eval::{auroc, bootstrap_auroc_ci};
use radlens_report::{read_iu_xray_tags, CorpusSpec, Finding, Report, ReportTags, FINDINGS};
use radlens_sae::tokens::{TokenClass, TokenFilter};
use radlens_sae::{ActivationStore, Sae};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file a probe run writes in its output directory.
pub const REPORT: &str = "concepts.json";

/// Settings of a probe run.
#[derive(Debug, Clone)]
pub struct ConceptConfig {
    /// Features kept per finding (ranked on the training reports).
    pub top_features: usize,
    /// Bootstrap resamples of the held-out AUROC.
    pub resamples: usize,
    pub seed: u64,
    /// Rank only features whose activation is higher with the finding.
    pub fires_only: bool,
}

impl Default for ConceptConfig {
    fn default() -> Self {
        Self {
            top_features: 5,
            resamples: 1000,
            seed: 0,
            fires_only: false,
        }
    }
}

/// Which way a feature's report maximum separates a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher in reports with the finding: the feature detects it.
    Fires,
    /// Lower in reports with the finding: the feature detects what the finding excludes
    /// (for `normal`, mentions of abnormalities).
    Silent,
}

impl Direction {
    /// The direction in which a training AUROC (of higher-with-the-finding) is >= 0.5.
    fn of(train_auroc: f64) -> Self {
        if train_auroc >= 0.5 {
            Self::Fires
        } else {
            Self::Silent
        }
    }

    /// Report maxima oriented so that higher means the finding is more likely.
    fn orient(self, column: Vec<f64>) -> Vec<f64> {
        match self {
            Self::Fires => column,
            Self::Silent => column.into_iter().map(|v| -v).collect(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fires => "fires",
            Self::Silent => "silent",
        }
    }
}

/// One feature's separation of a finding; both AUROCs are in `direction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedFeature {
    pub feature: usize,
    pub direction: Direction,
    pub train_auroc: f64,
    pub heldout_auroc: f64,
}

/// One row of `concepts.json`: the finding, its held-out counts, the feature ranked best
/// on the training reports and its held-out AUROC with a 95% bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptRow {
    pub finding: String,
    /// Held-out reports with and without the finding.
    pub n_positive: usize,
    pub n_negative: usize,
    pub n_positive_train: usize,
    pub best_feature: usize,
    /// How `best_feature` separates the finding; `auroc` and its interval are in it.
    pub direction: Direction,
    pub auroc: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The top features on the training reports, best first.
    pub top: Vec<RankedFeature>,
}

/// Report-level maximum activation of every feature.
struct ReportMaxima {
    uids: Vec<String>,
    /// (reports, features), row-major.
    maxima: Vec<f32>,
    features: usize,
}

impl ReportMaxima {
    fn column(&self, feature: usize) -> Vec<f64> {
        (0..self.uids.len())
            .map(|r| self.maxima[r * self.features + feature] as f64)
            .collect()
    }
}

/// The maximum activation of each feature over each report's kept tokens in `store`.
fn report_maxima(sae: &Sae, store: &ActivationStore, filter: &TokenFilter) -> Result<ReportMaxima> {
    store.check_reader(sae)?;
    let features = sae.config().d_sae;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out = ReportMaxima {
        uids: Vec::new(),
        maxima: Vec::new(),
        features,
    };
    for s in 0..store.shards().len() {
        let (x, records) = store.read_shard_with_tokens(s)?;
        let positions: Vec<u32> = records.iter().map(|r| r.position).collect();
        let classes = filter.classes(&x, &positions)?;
        let codes = sae.encode(&x)?;
        let values = codes.values.to_vec1::<f32>()?;
        let rows = codes
            .index
            .entry_rows()
            .iter()
            .zip(codes.index.entry_cols());
        let report_of: Vec<usize> = records
            .iter()
            .map(|r| {
                *index.entry(r.doc.clone()).or_insert_with(|| {
                    out.uids.push(r.doc.clone());
                    out.maxima.extend(std::iter::repeat_n(0.0, features));
                    out.uids.len() - 1
                })
            })
            .collect();
        for ((&row, &col), &v) in rows.zip(&values) {
            if classes[row as usize] == TokenClass::Kept {
                let cell = &mut out.maxima[report_of[row as usize] * features + col as usize];
                *cell = cell.max(v);
            }
        }
    }
    Ok(out)
}

/// Whether each report of `maxima` has `finding`.
fn labels(
    finding: &Finding,
    maxima: &ReportMaxima,
    reports: &HashMap<String, Report>,
    tags: &HashMap<String, ReportTags>,
    store: &Path,
) -> Result<Vec<bool>> {
    maxima
        .uids
        .iter()
        .map(|uid| {
            let report = reports.get(uid).ok_or_else(|| {
                InterpError::invalid(format!(
                    "{}: report {uid} is not in the corpus",
                    store.display()
                ))
            })?;
            let none = ReportTags::default();
            Ok(finding.present(report, tags.get(uid).unwrap_or(&none)))
        })
        .collect()
}

/// What to probe: the SAE, its training store (for ranking) and a held-out store (for
/// scoring), both harvested from `corpus` (default: the one the stores record).
#[derive(Debug, Clone)]
pub struct ConceptRequest {
    pub sae: PathBuf,
    pub train: PathBuf,
    pub heldout: PathBuf,
    pub corpus: Option<CorpusSpec>,
    /// A feature database of this SAE to store the table in.
    pub feature_db: Option<PathBuf>,
    pub out: PathBuf,
}

/// Probes every finding with positive and negative reports in both stores, writes
/// `concepts.json` (and the database table) and returns the rows.
pub fn probe_concepts(request: &ConceptRequest, cfg: &ConceptConfig) -> Result<Vec<ConceptRow>> {
    let sae = radlens_sae::formats::load_sae(&request.sae)?;
    let filter = TokenFilter::load(&request.sae)?.ok_or_else(|| {
        InterpError::invalid(format!(
            "{}: no {} (train the SAE with `radlens sae train`, which saves the tokens it \
             was trained on)",
            request.sae.display(),
            radlens_sae::tokens::FILTER_FILE
        ))
    })?;
    let train_store = ActivationStore::open(&request.train)?;
    let held_store = ActivationStore::open(&request.heldout)?;
    let corpus = match &request.corpus {
        Some(c) => c.clone(),
        None => HarvestConfig::of_store(&held_store)?.corpus.parse()?,
    };
    let reports: HashMap<String, Report> = corpus
        .read()?
        .into_iter()
        .map(|r| (r.uid.clone(), r))
        .collect();
    let tags = read_iu_xray_tags(&corpus.dir)?;
    let train = report_maxima(&sae, &train_store, &filter)?;
    let held = report_maxima(&sae, &held_store, &filter)?;
    if let Some(uid) = held.uids.iter().find(|u| train.uids.contains(u)) {
        return Err(InterpError::invalid(format!(
            "report {uid} is in both {} and {}: the held-out store must not overlap training",
            request.train.display(),
            request.heldout.display()
        )));
    }
    let mut rows = Vec::new();
    for finding in &FINDINGS {
        let y_train = labels(finding, &train, &reports, &tags, &request.train)?;
        let y_held = labels(finding, &held, &reports, &tags, &request.heldout)?;
        if let Some(row) = probe_one(finding, &train, &y_train, &held, &y_held, cfg) {
            rows.push(row);
        }
    }
    write_json(&request.out.join(REPORT), &rows)?;
    if let Some(db) = &request.feature_db {
        store_in_db(db, &rows)?;
    }
    Ok(rows)
}

/// The row of one finding; `None` if either store lacks positives or negatives.
fn probe_one(
    finding: &Finding,
    train: &ReportMaxima,
    y_train: &[bool],
    held: &ReportMaxima,
    y_held: &[bool],
    cfg: &ConceptConfig,
) -> Option<ConceptRow> {
    let mut ranked: Vec<(usize, Direction, f64)> = (0..train.features)
        .filter_map(|f| auroc(&train.column(f), y_train).map(|a| (f, Direction::of(a), a)))
        .filter(|&(_, d, _)| !cfg.fires_only || d == Direction::Fires)
        .map(|(f, d, a)| (f, d, a.max(1.0 - a)))
        .collect();
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let top: Vec<RankedFeature> = ranked
        .iter()
        .take(cfg.top_features.max(1))
        .map(|&(feature, direction, train_auroc)| {
            Some(RankedFeature {
                feature,
                direction,
                train_auroc,
                heldout_auroc: auroc(&direction.orient(held.column(feature)), y_held)?,
            })
        })
        .collect::<Option<_>>()?;
    let best = top.first()?.clone();
    let (ci_low, ci_high) = bootstrap_auroc_ci(
        &best.direction.orient(held.column(best.feature)),
        y_held,
        cfg.resamples,
        cfg.seed,
    )?;
    let n_positive = y_held.iter().filter(|&&y| y).count();
    Some(ConceptRow {
        finding: finding.name.to_string(),
        n_positive,
        n_negative: y_held.len() - n_positive,
        n_positive_train: y_train.iter().filter(|&&y| y).count(),
        best_feature: best.feature,
        direction: best.direction,
        auroc: best.heldout_auroc,
        ci_low,
        ci_high,
        top,
    })
}

/// Replaces the `concepts` table of the feature database at `path` in one transaction.
pub fn store_in_db(path: &Path, rows: &[ConceptRow]) -> Result<()> {
    let sql = |source| InterpError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Err(InterpError::invalid(format!(
            "{}: no feature database (build it with `radlens sae features`)",
            path.display()
        )));
    }
    let mut conn = Connection::open(path).map_err(sql)?;
    let tx = conn.transaction().map_err(sql)?;
    // Replaced whole, so that a table of an older layout (without `direction`) goes too.
    tx.execute_batch(
        "DROP TABLE IF EXISTS concepts;
         CREATE TABLE concepts (
            finding TEXT NOT NULL, rank INTEGER NOT NULL, latent INTEGER NOT NULL,
            direction TEXT NOT NULL, train_auroc REAL NOT NULL, heldout_auroc REAL NOT NULL,
            ci_low REAL, ci_high REAL, n_positive INTEGER NOT NULL, n_negative INTEGER NOT NULL,
            PRIMARY KEY (finding, rank));",
    )
    .map_err(sql)?;
    {
        let mut insert = tx
            .prepare("INSERT INTO concepts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
            .map_err(sql)?;
        for row in rows {
            for (rank, f) in row.top.iter().enumerate() {
                // The interval is of the best feature only.
                let ci = (rank == 0).then_some((row.ci_low, row.ci_high));
                insert
                    .execute(params![
                        row.finding,
                        rank as i64,
                        f.feature as i64,
                        f.direction.as_str(),
                        f.train_auroc,
                        f.heldout_auroc,
                        ci.map(|c| c.0),
                        ci.map(|c| c.1),
                        row.n_positive as i64,
                        row.n_negative as i64
                    ])
                    .map_err(sql)?;
            }
        }
    }
    tx.commit().map_err(sql)
}
