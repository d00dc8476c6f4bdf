//! Reading a feature database ([`crate::features`] writes it, [`crate::concepts`] adds its
//! `concepts` table, [`crate::autointerp`] its explanations and scores): one latent at a
//! time, through the database's indexes, as a typed [`Feature`] for a feature page.

use crate::autointerp::db::read_explanations;
pub use crate::autointerp::db::{Explanation, ExplanationScore};
use crate::{InterpError, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A latent's activation histogram: `counts[i]` firings in `(edges[i], edges[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// One stored example: a token where the latent fired, with its neighbours in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// 0 = strongest of its kind (and quantile bin).
    pub rank: usize,
    /// The equal-count activation bin it was drawn from (0 = weakest), for quantile
    /// examples.
    pub quantile: Option<usize>,
    pub activation: f64,
    /// The report it comes from.
    pub doc: String,
    pub position: usize,
    pub token: String,
    /// Token texts around the example, and the latent's activation on each.
    pub context: Vec<String>,
    pub context_activations: Vec<f64>,
    /// Index of the example's token in `context`.
    pub focus: usize,
}

/// A concept probe that ranked this latent among the best for a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptScore {
    pub finding: String,
    /// 0 = the finding's best feature on the training reports.
    pub rank: usize,
    /// `fires` or `silent` (see [`crate::concepts::Direction`]); the AUROCs are in it.
    pub direction: String,
    pub train_auroc: f64,
    pub heldout_auroc: f64,
    /// 95% bootstrap interval of the held-out AUROC (stored for rank 0 only).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// Everything the database holds about one latent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub index: usize,
    pub matryoshka_group: usize,
    /// Tokens it fired on, and that count over all tokens.
    pub fires: u64,
    pub frequency: f64,
    /// Over the tokens it fired on.
    pub mean_activation: Option<f64>,
    pub max_activation: Option<f64>,
    pub histogram: Histogram,
    pub top: Vec<Example>,
    /// By quantile bin, strongest first within a bin.
    pub quantiles: Vec<Example>,
    pub concepts: Vec<ConceptScore>,
    /// Automated explanations with their scores (`radlens sae explain` / `score`).
    pub explanations: Vec<Explanation>,
}

/// The query of one latent's concept rows, reading the direction from `direction` (a
/// column, or a literal for tables that lack it).
fn concepts_query(direction: &str) -> String {
    format!(
        "SELECT finding, rank, {direction}, train_auroc, heldout_auroc, ci_low, ci_high
         FROM concepts WHERE latent = ?1 ORDER BY heldout_auroc DESC"
    )
}

/// An open feature database (read-only).
pub struct FeatureDb {
    conn: Connection,
    path: PathBuf,
    latents: usize,
    /// The `concepts` table's query, if the database has one.
    concepts_query: Option<String>,
}

impl FeatureDb {
    pub fn open(path: &Path) -> Result<Self> {
        let sql = |source| InterpError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if !path.is_file() {
            return Err(InterpError::invalid(format!(
                "{}: no feature database (build it with `radlens sae features`)",
                path.display()
            )));
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
        let table = |name: &str| {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(sql)
        };
        if !(table("latents")? && table("examples")?) {
            return Err(InterpError::invalid(format!(
                "{}: not a feature database (no latents and examples tables)",
                path.display()
            )));
        }
        let concepts_query = if !table("concepts")? {
            None
        } else if conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('concepts') WHERE name = 'direction'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql)?
            > 0
        {
            Some(concepts_query("direction"))
        } else {
            // Tables written before probes had a direction ranked firing features only.
            Some(concepts_query("'fires'"))
        };
        let latents: i64 = conn
            .query_row("SELECT count(*) FROM latents", [], |r| r.get(0))
            .map_err(sql)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            latents: latents as usize,
            concepts_query,
        })
    }

    /// How many latents the SAE has.
    pub fn latents(&self) -> usize {
        self.latents
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn sql(&self, source: rusqlite::Error) -> InterpError {
        InterpError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Latent `index`, or `None` past the SAE's width.
    pub fn feature(&self, index: usize) -> Result<Option<Feature>> {
        let Some(mut f) = self
            .conn
            .query_row(
                "SELECT id, matryoshka_group, fires, frequency, mean_activation, max_activation, histogram
                 FROM latents WHERE id = ?1",
                [index as i64],
                |r| {
                    Ok((
                        Feature {
                            index: r.get::<_, i64>(0)? as usize,
                            matryoshka_group: r.get::<_, i64>(1)? as usize,
                            fires: r.get::<_, i64>(2)? as u64,
                            frequency: r.get(3)?,
                            mean_activation: r.get(4)?,
                            max_activation: r.get(5)?,
                            histogram: Histogram {
                                edges: Vec::new(),
                                counts: Vec::new(),
                            },
                            top: Vec::new(),
                            quantiles: Vec::new(),
                            concepts: Vec::new(),
                            explanations: Vec::new(),
                        },
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .map(|(f, hist)| self.parse(&hist, "histogram", index).map(|h| Feature { histogram: h, ..f }))
            .transpose()?
        else {
            return Ok(None);
        };
        let mut st = self
            .conn
            .prepare(
                "SELECT kind, rank, quantile, activation, doc, position, token, context, context_activations, focus
                 FROM examples WHERE latent = ?1 ORDER BY kind, quantile, rank",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([index as i64], example_row)
            .map_err(|e| self.sql(e))?;
        for row in rows {
            let (kind, ex, context, acts) = row.map_err(|e| self.sql(e))?;
            let ex = Example {
                context: self.parse(&context, "example context", index)?,
                context_activations: self.parse(&acts, "example activations", index)?,
                ..ex
            };
            match kind.as_str() {
                "top" => f.top.push(ex),
                _ => f.quantiles.push(ex),
            }
        }
        if let Some(query) = &self.concepts_query {
            let mut st = self.conn.prepare(query).map_err(|e| self.sql(e))?;
            f.concepts = st
                .query_map([index as i64], |r| {
                    Ok(ConceptScore {
                        finding: r.get(0)?,
                        rank: r.get::<_, i64>(1)? as usize,
                        direction: r.get(2)?,
                        train_auroc: r.get(3)?,
                        heldout_auroc: r.get(4)?,
                        ci_low: r.get(5)?,
                        ci_high: r.get(6)?,
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.sql(e))?;
        }
        f.explanations = read_explanations(&self.conn, index).map_err(|e| self.sql(e))?;
        Ok(Some(f))
    }

    /// A JSON column of latent `index`, typed.
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        json: &str,
        what: &str,
        index: usize,
    ) -> Result<T> {
        serde_json::from_str(json).map_err(|e| {
            InterpError::invalid(format!(
                "{}: latent {index}: bad {what}: {e}",
                self.path.display()
            ))
        })
    }
}

/// An example row: its kind, the example without its JSON columns, and those columns.
fn example_row(r: &Row) -> rusqlite::Result<(String, Example, String, String)> {
    Ok((
        r.get(0)?,
        Example {
            rank: r.get::<_, i64>(1)? as usize,
            quantile: r.get::<_, Option<i64>>(2)?.map(|q| q as usize),
            activation: r.get(3)?,
            doc: r.get(4)?,
            position: r.get::<_, i64>(5)? as usize,
            token: r.get(6)?,
            context: Vec::new(),
            context_activations: Vec::new(),
            focus: r.get::<_, i64>(9)? as usize,
        },
        r.get(7)?,
        r.get(8)?,
    ))
}
