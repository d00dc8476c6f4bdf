//! The automated-interpretation tables of a feature database, added to a database that
//! `radlens sae features` built, and read back for a feature page.
//!
//! - `explanations(latent, explainer, text, examples)`: one explanation per latent and
//!   explainer; `examples` is the JSON list of the `(doc, position)` tokens shown to the
//!   explainer;
//! - `scores(latent, explainer, scorer, score, n_positive, n_negative, details)`: how
//!   well an explanation predicted held-back examples; `score` is an AUROC (embedding
//!   scorer) or a balanced accuracy (LLM judges); `details` is the JSON list of the
//!   examples scored, their labels and the scorer's prediction for each.
//!
//! Both tables are created together in one transaction the first time a database is
//! opened for writing; every explanation or score is written in its own transaction, so
//! an interrupted run leaves whole rows only, and a later run skips what is there.
//! Replacing an explanation deletes its scores in the same transaction (they scored the
//! old text).

use crate::{InterpError, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// An explanation of a latent, and its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Which explainer wrote it: `ngram`, or `llm:<model>`.
    pub explainer: String,
    pub text: String,
    /// By scorer name.
    pub scores: Vec<ExplanationScore>,
}

/// One scorer's verdict on an explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationScore {
    /// `embedding`, `detection` or `fuzzing`.
    pub scorer: String,
    /// AUROC (embedding) or balanced accuracy (detection, fuzzing); 0.5 is chance.
    pub score: f64,
    pub n_positive: usize,
    pub n_negative: usize,
}

/// A token of the activation store, named by its report and position there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenRef {
    pub doc: String,
    pub position: u32,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS explanations (
    latent INTEGER NOT NULL REFERENCES latents(id),
    explainer TEXT NOT NULL,
    text TEXT NOT NULL,
    examples TEXT NOT NULL,
    PRIMARY KEY (latent, explainer)
);
CREATE TABLE IF NOT EXISTS scores (
    latent INTEGER NOT NULL,
    explainer TEXT NOT NULL,
    scorer TEXT NOT NULL,
    score REAL NOT NULL,
    n_positive INTEGER NOT NULL,
    n_negative INTEGER NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (latent, explainer, scorer),
    FOREIGN KEY (latent, explainer) REFERENCES explanations (latent, explainer)
);
";

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The explanations of latent `index` with their scores, explainers in name order; none
/// when the database has no explanation tables yet.
pub(crate) fn read_explanations(
    conn: &Connection,
    index: usize,
) -> rusqlite::Result<Vec<Explanation>> {
    if !has_table(conn, "explanations")? {
        return Ok(Vec::new());
    }
    let mut st = conn
        .prepare("SELECT explainer, text FROM explanations WHERE latent = ?1 ORDER BY explainer")?;
    let mut out: Vec<Explanation> = st
        .query_map([index as i64], |r| {
            Ok(Explanation {
                explainer: r.get(0)?,
                text: r.get(1)?,
                scores: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare(
        "SELECT scorer, score, n_positive, n_negative FROM scores
         WHERE latent = ?1 AND explainer = ?2 ORDER BY scorer",
    )?;
    for e in &mut out {
        e.scores = st
            .query_map(params![index as i64, e.explainer], |r| {
                Ok(ExplanationScore {
                    scorer: r.get(0)?,
                    score: r.get(1)?,
                    n_positive: r.get::<_, i64>(2)? as usize,
                    n_negative: r.get::<_, i64>(3)? as usize,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

/// A feature database opened for adding explanations and scores.
pub struct AutointerpDb {
    conn: Connection,
    path: PathBuf,
}

impl AutointerpDb {
    /// Opens the feature database at `path` (it must exist) and adds the tables if missing.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(InterpError::invalid(format!(
                "{}: no feature database (build it with `radlens sae features`)",
                path.display()
            )));
        }
        let sql = |source| InterpError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sql)?;
        if !(has_table(&conn, "latents").map_err(sql)?
            && has_table(&conn, "examples").map_err(sql)?)
        {
            return Err(InterpError::invalid(format!(
                "{}: not a feature database (no latents and examples tables)",
                path.display()
            )));
        }
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(SCHEMA).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    fn sql(&self, source: rusqlite::Error) -> InterpError {
        InterpError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// A `meta` value of the database.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Latents `explainer` has explained.
    pub fn explained(&self, explainer: &str) -> Result<HashSet<usize>> {
        self.latent_set(
            "SELECT latent FROM explanations WHERE explainer = ?1",
            params![explainer],
        )
    }

    /// The explainers with at least one explanation, by name.
    pub fn explainers(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT explainer FROM explanations ORDER BY explainer")
            .map_err(|e| self.sql(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))
    }

    /// Latents whose `explainer` explanation `scorer` has scored.
    pub fn scored(&self, explainer: &str, scorer: &str) -> Result<HashSet<usize>> {
        self.latent_set(
            "SELECT latent FROM scores WHERE explainer = ?1 AND scorer = ?2",
            params![explainer, scorer],
        )
    }

    fn latent_set(&self, query: &str, args: impl rusqlite::Params) -> Result<HashSet<usize>> {
        let mut st = self.conn.prepare(query).map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(args, |r| r.get::<_, i64>(0).map(|v| v as usize))
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))
    }

    /// The `explainer` explanation of `latent`, if there is one.
    pub fn explanation(&self, latent: usize, explainer: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT text FROM explanations WHERE latent = ?1 AND explainer = ?2",
                params![latent as i64, explainer],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Stores (or replaces) an explanation with the tokens it was written from, dropping
    /// the replaced one's scores, in one transaction.
    pub fn put_explanation(
        &mut self,
        latent: usize,
        explainer: &str,
        text: &str,
        examples: &[TokenRef],
    ) -> Result<()> {
        let examples = json(examples)?;
        self.write(|tx| {
            tx.execute(
                "DELETE FROM scores WHERE latent = ?1 AND explainer = ?2",
                params![latent as i64, explainer],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO explanations VALUES (?1, ?2, ?3, ?4)",
                params![latent as i64, explainer, text, examples],
            )?;
            Ok(())
        })
    }

    /// Stores (or replaces) a score, with the per-example `details`, in one transaction.
    pub fn put_score<D: Serialize>(
        &mut self,
        latent: usize,
        explainer: &str,
        score: &ExplanationScore,
        details: &D,
    ) -> Result<()> {
        let details = json(details)?;
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO scores VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    latent as i64,
                    explainer,
                    score.scorer,
                    score.score,
                    score.n_positive as i64,
                    score.n_negative as i64,
                    details
                ],
            )?;
            Ok(())
        })
    }

    /// Every stored score of `explainer` by `scorer`, by latent.
    pub fn scores(&self, explainer: &str, scorer: &str) -> Result<Vec<(usize, f64)>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT latent, score FROM scores WHERE explainer = ?1 AND scorer = ?2
                 ORDER BY latent",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map(params![explainer, scorer], |r| {
                Ok((r.get::<_, i64>(0)? as usize, r.get(1)?))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))
    }

    fn write(&mut self, f: impl FnOnce(&Transaction) -> rusqlite::Result<()>) -> Result<()> {
        let path = self.path.clone();
        let sql = |source| InterpError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&sql)?;
        f(&tx).map_err(&sql)?;
        tx.commit().map_err(sql)
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| InterpError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_db::FeatureDb;

    /// A feature database with two latents and no examples.
    fn tiny_db(dir: &Path) -> PathBuf {
        let path = dir.join("features.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE latents (id INTEGER PRIMARY KEY, matryoshka_group INTEGER NOT NULL,
                fires INTEGER NOT NULL, frequency REAL NOT NULL, mean_activation REAL,
                max_activation REAL, histogram TEXT NOT NULL);
             CREATE TABLE examples (latent INTEGER, kind TEXT, rank INTEGER, quantile INTEGER,
                activation REAL, doc TEXT, position INTEGER, token TEXT, context TEXT,
                context_activations TEXT, focus INTEGER);
             INSERT INTO latents VALUES (0, 0, 0, 0.0, NULL, NULL, '{\"edges\":[],\"counts\":[]}');
             INSERT INTO latents VALUES (1, 0, 0, 0.0, NULL, NULL, '{\"edges\":[],\"counts\":[]}');",
        )
        .unwrap();
        path
    }

    fn score(scorer: &str, score: f64) -> ExplanationScore {
        ExplanationScore {
            scorer: scorer.into(),
            score,
            n_positive: 4,
            n_negative: 4,
        }
    }

    #[test]
    fn explanations_and_scores_reach_the_feature_page_and_a_new_text_drops_old_scores() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_db(dir.path());
        // a database without the tables reads as having no explanations
        let page = FeatureDb::open(&path).unwrap().feature(1).unwrap().unwrap();
        assert!(page.explanations.is_empty());

        let mut db = AutointerpDb::open(&path).unwrap();
        let shown = [TokenRef {
            doc: "r1".into(),
            position: 3,
        }];
        db.put_explanation(1, "ngram", "\"effusion\"", &shown)
            .unwrap();
        db.put_explanation(1, "llm:m", "fluid words", &shown)
            .unwrap();
        db.put_score(1, "ngram", &score("embedding", 0.8), &[1, 0])
            .unwrap();
        db.put_score(1, "ngram", &score("detection", 0.75), &())
            .unwrap();
        assert_eq!(db.explained("ngram").unwrap(), HashSet::from([1]));
        assert_eq!(db.scored("ngram", "embedding").unwrap(), HashSet::from([1]));
        assert_eq!(db.scores("ngram", "detection").unwrap(), [(1, 0.75)]);

        let page = FeatureDb::open(&path).unwrap().feature(1).unwrap().unwrap();
        let names: Vec<&str> = page
            .explanations
            .iter()
            .map(|e| e.explainer.as_str())
            .collect();
        assert_eq!(names, ["llm:m", "ngram"]);
        assert_eq!(
            page.explanations[1].scores,
            [score("detection", 0.75), score("embedding", 0.8)]
        );
        assert!(FeatureDb::open(&path)
            .unwrap()
            .feature(0)
            .unwrap()
            .unwrap()
            .explanations
            .is_empty());

        // replacing the text drops the scores of the old one
        db.put_explanation(1, "ngram", "\"fluid\"", &shown).unwrap();
        assert!(db.scored("ngram", "embedding").unwrap().is_empty());
        assert_eq!(
            db.explanation(1, "ngram").unwrap().as_deref(),
            Some("\"fluid\"")
        );
        // opening again keeps what is there
        let db = AutointerpDb::open(&path).unwrap();
        assert_eq!(db.explained("llm:m").unwrap(), HashSet::from([1]));
    }

    #[test]
    fn refuses_a_missing_file_and_a_database_that_is_not_a_feature_database() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sqlite");
        let err = AutointerpDb::open(&missing).err().unwrap().to_string();
        assert!(err.contains("no feature database"), "{err}");
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = AutointerpDb::open(&other).err().unwrap().to_string();
        assert!(err.contains("not a feature database"), "{err}");
    }
}
