//! Finding latents in a feature database by what they mean: their automated explanations
//! (`radlens sae explain`), the clinical findings whose concept probes ranked them, and the
//! tokens their top examples fire on; and reading the
//! database's provenance (`meta`). Queries are matched as literal substrings (case
//! insensitive for ASCII), always bound as parameters.

use crate::feature_db::FeatureDb;
use crate::Result;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

/// What a search hit matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// An explanation's text; `score` is its best score, if it was scored.
    Explanation,
    /// A finding whose concept probe ranked the latent; `score` is its held-out AUROC.
    Concept,
    /// A token of the latent's top examples; `score` is how many of them it is.
    Token,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub index: usize,
    pub kind: MatchKind,
    /// The explanation, finding or token that matched.
    pub text: String,
    pub score: Option<f64>,
}

/// `query` as a LIKE pattern that matches it literally anywhere (`\` escapes).
fn contains_pattern(query: &str) -> String {
    let mut p = String::with_capacity(query.len() + 2);
    p.push('%');
    for c in query.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl FeatureDb {
    /// The provenance value `key` (`model`, `layer`, `sae`, ...), if recorded.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        if !self.has_table("meta")? {
            return Ok(None);
        }
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// A number that changes whenever another connection (`radlens sae explain`, `sae
    /// concepts`) commits to the database, so a reader knows its cached pages are stale.
    pub fn data_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    fn has_table(&self, name: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.sql(e))
    }

    /// Latents whose explanations, concept findings or top-example tokens contain `query`:
    /// explanation hits first (best scored first), then concept hits (best held-out AUROC
    /// first), then token hits (most top examples first), at most `limit` of each kind.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        const QUERIES: [(&str, MatchKind, &str); 3] = [
            (
                "explanations",
                MatchKind::Explanation,
                "SELECT e.latent, e.text,
                    (SELECT max(s.score) FROM scores s
                     WHERE s.latent = e.latent AND s.explainer = e.explainer) AS best
                 FROM explanations e WHERE e.text LIKE ?1 ESCAPE '\\'
                 ORDER BY best IS NULL, best DESC, e.latent LIMIT ?2",
            ),
            (
                "concepts",
                MatchKind::Concept,
                "SELECT latent, finding, max(heldout_auroc) AS auroc FROM concepts
                 WHERE finding LIKE ?1 ESCAPE '\\'
                 GROUP BY latent, finding ORDER BY auroc DESC, latent LIMIT ?2",
            ),
            (
                "examples",
                MatchKind::Token,
                "SELECT latent, token, count(*) AS n FROM examples
                 WHERE kind = 'top' AND token LIKE ?1 ESCAPE '\\'
                 GROUP BY latent, token ORDER BY n DESC, max(activation) DESC, latent LIMIT ?2",
            ),
        ];
        let pattern = contains_pattern(query);
        let mut hits = Vec::new();
        for (table, kind, sql) in QUERIES {
            if !self.has_table(table)? {
                continue;
            }
            let mut st = self.conn().prepare(sql).map_err(|e| self.sql(e))?;
            let rows = st
                .query_map(rusqlite::params![pattern, limit as i64], |r| {
                    Ok(SearchHit {
                        index: r.get::<_, i64>(0)? as usize,
                        kind,
                        text: r.get(1)?,
                        score: r.get(2)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.sql(e))?;
            hits.extend(rows);
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(contains_pattern("heart"), "%heart%");
        assert_eq!(contains_pattern("5%_a\\b"), "%5\\%\\_a\\\\b%");
        assert_eq!(contains_pattern("'; DROP"), "%'; DROP%");
    }
}
