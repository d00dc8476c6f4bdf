//! The schema as numbered migrations. `PRAGMA user_version` records how many have run;
//! opening a database runs the rest in one transaction each, so a database is always at
//! a version this list names. Never edit a released migration: append a new one.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: patients, studies, inference jobs, analyses with their images, the editable
    // report with its history, signed reports and reviews.
    r#"
CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    patient_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE studies (
    id INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    study_date TEXT,
    view TEXT,
    format TEXT NOT NULL CHECK (format IN ('png', 'jpeg', 'dicom')),
    file_name TEXT NOT NULL,
    stored_name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    spacing_mm REAL,
    pixels BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX studies_by_patient ON studies(patient_id, study_date);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    stage TEXT NOT NULL,
    progress REAL NOT NULL CHECK (progress >= 0 AND progress <= 1),
    error TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX jobs_by_study ON jobs(study_id);
CREATE TABLE analyses (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    measurements TEXT NOT NULL,
    draft TEXT NOT NULL,
    ctr_lines TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (study_id, model_version)
);
CREATE TABLE analysis_images (
    analysis_id INTEGER NOT NULL REFERENCES analyses(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('mean_mask', 'sample_mask', 'structures', 'uncertainty', 'outline')),
    idx INTEGER NOT NULL,
    png BLOB NOT NULL,
    PRIMARY KEY (analysis_id, kind, idx)
);
CREATE TABLE report_sentences (
    id INTEGER PRIMARY KEY,
    analysis_id INTEGER NOT NULL REFERENCES analyses(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    section TEXT NOT NULL,
    ai_text TEXT NOT NULL,
    text TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'edited')),
    UNIQUE (analysis_id, position)
);
CREATE TABLE sentence_edits (
    id INTEGER PRIMARY KEY,
    sentence_id INTEGER NOT NULL REFERENCES report_sentences(id) ON DELETE CASCADE,
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'edit', 'reset')),
    text TEXT NOT NULL,
    author TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE signed_reports (
    id INTEGER PRIMARY KEY,
    analysis_id INTEGER NOT NULL REFERENCES analyses(id) ON DELETE CASCADE,
    author TEXT NOT NULL,
    findings TEXT NOT NULL,
    impression TEXT NOT NULL,
    signed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY,
    analysis_id INTEGER NOT NULL REFERENCES analyses(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"#,
    // 2: accounts (argon2 hashes), sessions (the token's hash, its CSRF token, expiry in
    // Unix seconds) and the audit trail of who did what.
    r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'radiologist', 'admin')),
    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    user_id INTEGER REFERENCES users(id),
    username TEXT,
    action TEXT NOT NULL,
    study_id INTEGER,
    detail TEXT NOT NULL,
    request_id INTEGER
);
CREATE INDEX audit_by_study ON audit(study_id);
"#,
    // 3: where an imported study came from (`<dataset>:<file>`), so a re-import skips it.
    r#"
ALTER TABLE studies ADD COLUMN source TEXT;
CREATE UNIQUE INDEX studies_by_source ON studies(source);
"#,
    // 4: display pixels in their own table. SQLite reads a row's columns in order, so
    // with the ~2 MiB blob inside `studies`, every read of `created_at` (the study list,
    // each page's study lookup) walked the blob's whole overflow chain.
    r#"
CREATE TABLE study_pixels (
    study_id INTEGER PRIMARY KEY REFERENCES studies(id) ON DELETE CASCADE,
    pixels BLOB NOT NULL
);
INSERT INTO study_pixels (study_id, pixels) SELECT id, pixels FROM studies;
ALTER TABLE studies DROP COLUMN pixels;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Bring `conn` up to [`SCHEMA_VERSION`]; refuse a database from a newer radlens.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Run the migrations that bring `conn` up to `target`.
fn migrate_to(conn: &mut Connection, target: usize) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let current = usize::try_from(current).map_err(|_| format!("bad schema version {current}"))?;
    if current > SCHEMA_VERSION {
        return Err(format!(
            "the database is at schema version {current}, newer than this radlens ({SCHEMA_VERSION}); use a newer radlens"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", (i + 1) as i64))
            .and_then(|_| tx.commit())
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_pixels_out_of_studies_keeps_every_study_and_its_pixels() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        migrate_to(&mut c, 3).unwrap();
        c.execute_batch(
            "INSERT INTO patients (patient_key) VALUES ('P1');
             INSERT INTO studies (patient_id, format, file_name, stored_name, width, height, pixels, source)
             VALUES (1, 'png', 'a.png', 's1', 2, 1, x'01020304', 'jsrt:a.png'),
                    (1, 'dicom', 'b.dcm', 's2', 1, 1, x'0506', NULL);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let rows: Vec<(i64, String, Vec<u8>)> = c
            .prepare(
                "SELECT s.id, s.file_name, p.pixels FROM studies s JOIN study_pixels p ON p.study_id = s.id ORDER BY s.id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "a.png".to_string(), vec![1, 2, 3, 4]),
                (2, "b.dcm".to_string(), vec![5, 6])
            ]
        );
        let source: Option<String> = c
            .query_row("SELECT source FROM studies WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(source.as_deref(), Some("jsrt:a.png"));
        // the blob column is gone from studies, and deleting a study deletes its pixels
        assert!(c.prepare("SELECT pixels FROM studies").is_err());
        c.execute("DELETE FROM studies WHERE id = 2", []).unwrap();
        let left: i64 = c
            .query_row("SELECT count(*) FROM study_pixels", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
    }
}
