//! Feature databases: per SAE latent, its firing statistics, activation histogram,
//! top-activating examples and examples drawn from activation quantiles (each with the
//! token, its neighbours in the report and the latent's activation on each), and the
//! Matryoshka group it belongs to.
//!
//! Stored as one SQLite file: a web page or the explanation step looks a latent up by id
//! through an index without loading the rest, Python reads it with its standard library,
//! and the file is built in a temporary file and renamed, so a reader never sees half a
//! database. (Parquet suits column scans, not per-latent lookups, and would add Arrow.)
//!
//! Schema (all activations in the SAE's code units):
//! - `meta(key, value)`: provenance (SAE, activations, model, layer, tokens, settings);
//! - `latents(id, matryoshka_group, fires, frequency, mean_activation, max_activation,
//!   histogram)`: `histogram` is JSON `{"edges": [..], "counts": [..]}` over (0, max];
//! - `examples(latent, kind, rank, quantile, activation, doc, position, token, context,
//!   context_activations, focus)`: `kind` is `top` (rank 0 = strongest) or `quantile`
//!   (`quantile` 0 = weakest tenth); `context` is a JSON list of token texts around the
//!   example, `context_activations` the latent's activation on each, `focus` the index of
//!   the example's token in them.

use crate::feature_db::Histogram;
use crate::{InterpError, Result};
use radlens_core::atomic::write_atomic_at;
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_sae::{ActivationStore, Sae, TokenRecord};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::Path;

/// How many examples of which kinds to keep.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureConfig {
    /// Top-activating examples per latent.
    pub top_examples: usize,
    /// Equal-count activation quantile bins per latent.
    pub quantiles: usize,
    /// Random examples per quantile bin.
    pub per_quantile: usize,
    /// Neighbouring tokens shown on each side of an example (within its report).
    pub context: usize,
    pub histogram_bins: usize,
    /// Rows encoded at a time.
    pub batch: usize,
    pub seed: u64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            top_examples: 20,
            quantiles: 10,
            per_quantile: 5,
            context: 8,
            histogram_bins: 20,
            batch: 4096,
            seed: 0,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSummary {
    pub latents: usize,
    /// Latents that fired at least once.
    pub alive: usize,
    pub tokens: usize,
    pub examples: usize,
}

/// One nonzero code.
#[derive(Clone, Copy)]
struct Entry {
    latent: u32,
    row: u32,
    value: f32,
}

/// Encodes every row of `store` with `sae` and writes the feature database to `out`,
/// reporting the shards encoded after each one.
pub fn build_feature_db(
    sae: &Sae,
    store: &ActivationStore,
    cfg: &FeatureConfig,
    provenance: &[(&str, String)],
    out: &Path,
    progress: &dyn Observer<Count>,
) -> Result<FeatureSummary> {
    if cfg.quantiles == 0 || cfg.histogram_bins == 0 || cfg.batch == 0 {
        return Err(InterpError::invalid(
            "quantiles, histogram bins and batch size must be positive",
        ));
    }
    store.check_reader(sae)?;
    let (entries, records) = encode_store(sae, store, cfg.batch, progress)?;
    if records.len() > u32::MAX as usize {
        return Err(InterpError::invalid("more than 2^32 tokens"));
    }
    // Built under a temporary name and renamed, so a reader never sees half a database.
    let mut summary = None;
    write_atomic_at(out, |tmp| {
        summary = Some(write_db(
            sae, &entries, &records, cfg, provenance, tmp, out,
        )?);
        Ok::<_, InterpError>(())
    })?;
    summary.ok_or_else(|| InterpError::invalid("feature database not written"))
}

/// All nonzero codes sorted by (latent, row), and the token record of every row.
fn encode_store(
    sae: &Sae,
    store: &ActivationStore,
    batch: usize,
    progress: &dyn Observer<Count>,
) -> Result<(Vec<Entry>, Vec<TokenRecord>)> {
    let mut entries = Vec::new();
    let mut records: Vec<TokenRecord> = Vec::new();
    let shards = store.shards().len();
    for s in 0..shards {
        let (acts, tokens) = store.read_shard_with_tokens(s)?;
        let n = acts.dim(0)?;
        for start in (0..n).step_by(batch) {
            let x = acts.narrow(0, start, batch.min(n - start))?;
            let codes = sae.encode(&x)?;
            let values = codes.values.to_vec1::<f32>()?;
            let (rows, cols) = (codes.index.entry_rows(), codes.index.entry_cols());
            for ((&r, &c), &v) in rows.iter().zip(cols).zip(&values) {
                if v > 0.0 {
                    entries.push(Entry {
                        latent: c,
                        row: (records.len() + start) as u32 + r,
                        value: v,
                    });
                }
            }
        }
        records.extend(tokens);
        progress.observe(&Count {
            done: s as u64 + 1,
            total: shards as u64,
        });
    }
    entries.sort_unstable_by_key(|e| (e.latent, e.row));
    Ok((entries, records))
}

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE latents (
    id INTEGER PRIMARY KEY,
    matryoshka_group INTEGER NOT NULL,
    fires INTEGER NOT NULL,
    frequency REAL NOT NULL,
    mean_activation REAL,
    max_activation REAL,
    histogram TEXT NOT NULL
);
CREATE TABLE examples (
    latent INTEGER NOT NULL REFERENCES latents(id),
    kind TEXT NOT NULL CHECK (kind IN ('top', 'quantile')),
    rank INTEGER NOT NULL,
    quantile INTEGER,
    activation REAL NOT NULL,
    doc TEXT NOT NULL,
    position INTEGER NOT NULL,
    token TEXT NOT NULL,
    context TEXT NOT NULL,
    context_activations TEXT NOT NULL,
    focus INTEGER NOT NULL
);
CREATE INDEX examples_by_latent ON examples (latent, kind, rank);
";

/// Writes the database at `path`; errors name `reported_as`, the file the user asked for.
fn write_db(
    sae: &Sae,
    entries: &[Entry],
    records: &[TokenRecord],
    cfg: &FeatureConfig,
    provenance: &[(&str, String)],
    path: &Path,
    reported_as: &Path,
) -> Result<FeatureSummary> {
    let sql = |source| InterpError::Sqlite {
        path: reported_as.to_path_buf(),
        source,
    };
    let mut db = Connection::open(path).map_err(sql)?;
    db.execute_batch(SCHEMA).map_err(sql)?;
    let tx = db.transaction().map_err(sql)?;
    let settings = serde_json::to_string(cfg).map_err(|e| InterpError::invalid(e.to_string()))?;
    let mut meta: Vec<(&str, String)> = provenance.to_vec();
    meta.push(("tokens", records.len().to_string()));
    meta.push(("feature_settings", settings));
    for (k, v) in &meta {
        tx.execute("INSERT INTO meta VALUES (?1, ?2)", params![k, v])
            .map_err(sql)?;
    }
    let mut summary = FeatureSummary {
        latents: sae.config().d_sae,
        alive: 0,
        tokens: records.len(),
        examples: 0,
    };
    let groups = sae.config().group_ranges();
    {
        let mut latent_stmt = tx
            .prepare("INSERT INTO latents VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .map_err(sql)?;
        let mut example_stmt = tx
            .prepare("INSERT INTO examples VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")
            .map_err(sql)?;
        let mut rest = entries;
        for latent in 0..sae.config().d_sae {
            let n = rest
                .iter()
                .take_while(|e| e.latent as usize == latent)
                .count();
            let (mine, tail) = rest.split_at(n);
            rest = tail;
            let group = groups.iter().position(|g| g.contains(&latent)).unwrap_or(0);
            let stats = LatentStats::of(mine, records.len(), cfg.histogram_bins);
            latent_stmt
                .execute(params![
                    latent as i64,
                    group as i64,
                    n as i64,
                    stats.frequency,
                    stats.mean,
                    stats.max,
                    stats.histogram
                ])
                .map_err(sql)?;
            if n == 0 {
                continue;
            }
            summary.alive += 1;
            for ex in examples(mine, cfg, latent) {
                let ctx = Context::around(ex.entry.row as usize, cfg.context, records, mine);
                let rec = &records[ex.entry.row as usize];
                example_stmt
                    .execute(params![
                        latent as i64,
                        ex.kind,
                        ex.rank as i64,
                        ex.quantile.map(|q| q as i64),
                        ex.entry.value,
                        rec.doc,
                        rec.position as i64,
                        rec.text,
                        ctx.tokens,
                        ctx.activations,
                        ctx.focus as i64
                    ])
                    .map_err(sql)?;
                summary.examples += 1;
            }
        }
    }
    tx.commit().map_err(sql)?;
    db.close().map_err(|(_, e)| sql(e))?;
    Ok(summary)
}

/// Firing statistics of one latent.
struct LatentStats {
    frequency: f64,
    mean: Option<f64>,
    max: Option<f64>,
    /// JSON histogram over (0, max].
    histogram: String,
}

impl LatentStats {
    fn of(entries: &[Entry], tokens: usize, bins: usize) -> Self {
        let n = entries.len();
        let max = entries.iter().map(|e| e.value as f64).fold(0.0, f64::max);
        let mut counts = vec![0u64; bins];
        for e in entries {
            let b = ((e.value as f64 / max) * bins as f64).ceil() as usize;
            counts[b.clamp(1, bins) - 1] += 1;
        }
        let edges: Vec<f64> = (0..=bins).map(|i| max * i as f64 / bins as f64).collect();
        Self {
            frequency: n as f64 / tokens.max(1) as f64,
            mean: (n > 0).then(|| entries.iter().map(|e| e.value as f64).sum::<f64>() / n as f64),
            max: (n > 0).then_some(max),
            histogram: serde_json::to_string(&Histogram { edges, counts })
                .expect("numbers serialise"),
        }
    }
}

/// A chosen example of a latent.
struct Example {
    entry: Entry,
    kind: &'static str,
    rank: usize,
    quantile: Option<usize>,
}

/// The top examples, then `per_quantile` random ones from each equal-count activation bin
/// (seeded per latent).
fn examples(entries: &[Entry], cfg: &FeatureConfig, latent: usize) -> Vec<Example> {
    let mut by_value: Vec<Entry> = entries.to_vec();
    by_value.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.row.cmp(&b.row)));
    let mut out: Vec<Example> = by_value
        .iter()
        .take(cfg.top_examples)
        .enumerate()
        .map(|(rank, &entry)| Example {
            entry,
            kind: "top",
            rank,
            quantile: None,
        })
        .collect();
    by_value.reverse();
    let n = by_value.len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ (latent as u64) << 20);
    for q in 0..cfg.quantiles {
        let bin = &by_value[q * n / cfg.quantiles..(q + 1) * n / cfg.quantiles];
        let picks = bin.choose_multiple(&mut rng, cfg.per_quantile.min(bin.len()));
        let mut picks: Vec<Entry> = picks.copied().collect();
        picks.sort_by(|a, b| b.value.total_cmp(&a.value));
        out.extend(picks.into_iter().enumerate().map(|(rank, entry)| Example {
            entry,
            kind: "quantile",
            rank,
            quantile: Some(q),
        }));
    }
    out
}

/// The tokens around a row within its report, with the latent's activation on each.
struct Context {
    tokens: String,
    activations: String,
    focus: usize,
}

impl Context {
    /// `latent_entries` are the latent's codes sorted by row.
    fn around(
        row: usize,
        radius: usize,
        records: &[TokenRecord],
        latent_entries: &[Entry],
    ) -> Self {
        let doc = &records[row].doc;
        let same = |r: usize| records[r].doc == *doc;
        let mut start = row;
        while start > 0 && row - start < radius && same(start - 1) {
            start -= 1;
        }
        let mut end = row + 1;
        while end < records.len() && end - row <= radius && same(end) {
            end += 1;
        }
        let act = |r: usize| {
            latent_entries
                .binary_search_by_key(&(r as u32), |e| e.row)
                .map_or(0.0, |i| latent_entries[i].value)
        };
        let tokens: Vec<&str> = (start..end).map(|r| records[r].text.as_str()).collect();
        let acts: Vec<f32> = (start..end).map(act).collect();
        Self {
            tokens: serde_json::json!(tokens).to_string(),
            activations: serde_json::json!(acts).to_string(),
            focus: row - start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(latent: u32, row: u32, value: f32) -> Entry {
        Entry { latent, row, value }
    }

    #[test]
    fn histogram_counts_every_firing_in_its_bin() {
        let e = [
            entry(0, 0, 1.0),
            entry(0, 1, 2.0),
            entry(0, 2, 4.0),
            entry(0, 3, 0.1),
        ];
        let s = LatentStats::of(&e, 8, 4);
        assert_eq!(s.frequency, 0.5);
        assert_eq!(s.max, Some(4.0));
        let mean = s.mean.unwrap();
        assert!((mean - 7.1 / 4.0).abs() < 1e-6, "{mean}");
        let h: Histogram = serde_json::from_str(&s.histogram).unwrap();
        // bins (0,1], (1,2], (2,3], (3,4]
        assert_eq!(h.counts, [2, 1, 0, 1]);
        assert_eq!(h.edges, [0.0, 1.0, 2.0, 3.0, 4.0]);
        let none = LatentStats::of(&[], 8, 4);
        assert_eq!((none.frequency, none.max), (0.0, None));
    }

    #[test]
    fn examples_are_top_ranked_and_drawn_from_each_quantile() {
        let entries: Vec<Entry> = (0..100).map(|i| entry(3, i, i as f32 + 1.0)).collect();
        let cfg = FeatureConfig {
            top_examples: 3,
            quantiles: 4,
            per_quantile: 2,
            ..FeatureConfig::default()
        };
        let ex = examples(&entries, &cfg, 3);
        let top: Vec<f32> = ex
            .iter()
            .filter(|e| e.kind == "top")
            .map(|e| e.entry.value)
            .collect();
        assert_eq!(top, [100.0, 99.0, 98.0]);
        for q in 0..4 {
            let vals: Vec<f32> = ex
                .iter()
                .filter(|e| e.quantile == Some(q))
                .map(|e| e.entry.value)
                .collect();
            assert_eq!(vals.len(), 2);
            let lo = 25.0 * q as f32 + 1.0;
            assert!(
                vals.iter().all(|&v| (lo..lo + 25.0).contains(&v)),
                "{q}: {vals:?}"
            );
        }
    }

    #[test]
    fn context_stays_within_the_report() {
        let rec = |doc: &str, i: u32| TokenRecord {
            doc: doc.into(),
            position: i,
            token_id: i,
            text: format!("t{i}"),
        };
        let records = vec![
            rec("a", 0),
            rec("a", 1),
            rec("b", 0),
            rec("b", 1),
            rec("b", 2),
        ];
        let mine = [entry(0, 2, 5.0), entry(0, 4, 1.5)];
        let c = Context::around(3, 1, &records, &mine);
        assert_eq!(c.tokens, r#"["t0","t1","t2"]"#);
        assert_eq!(c.activations, "[5.0,0.0,1.5]");
        assert_eq!(c.focus, 1);
        let c = Context::around(2, 5, &records, &mine);
        assert_eq!(c.focus, 0);
        assert_eq!(c.tokens, r#"["t0","t1","t2"]"#);
    }
}
