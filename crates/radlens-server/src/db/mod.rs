//! The embedded SQLite database: opened in WAL mode with foreign keys on, migrated to the
//! current schema, shared behind one mutex (requests hold it for single statements; the
//! inference worker only for its final transaction).

pub mod accounts;
mod migrations;
pub mod records;

pub use migrations::SCHEMA_VERSION;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Open (or create) the database at `path` and migrate it.
    pub fn open(path: &Path) -> Result<Self, String> {
        let fail = |e: &dyn std::fmt::Display| format!("database {}: {e}", path.display());
        let mut conn = Connection::open(path).map_err(|e| fail(&e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(&e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| fail(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(&format!("cannot switch to WAL (journal mode {mode})")));
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(|e| fail(&e))?;
        migrations::migrate(&mut conn).map_err(|e| fail(&e))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// The connection, for one statement or one transaction.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // a panic while holding the lock leaves SQLite consistent (statements are
        // atomic), so a poisoned lock is still usable
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_foreign_keys_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let db = Db::open(&path).unwrap();
        {
            let c = db.lock();
            let fk: i64 = c
                .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                .unwrap();
            assert_eq!(fk, 1);
            let v: i64 = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v as usize, SCHEMA_VERSION);
            // a study must name an existing patient
            let e = c.execute(
                "INSERT INTO studies (patient_id, format, file_name, stored_name, width, height, pixels) VALUES (99, 'png', 'a', 'b', 1, 1, x'00')",
                [],
            );
            assert!(e.is_err(), "foreign key not enforced");
        }
        drop(db);
        // reopening runs nothing again and keeps the data
        let db = Db::open(&path).unwrap();
        let v: i64 = db
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, SCHEMA_VERSION);
        // a database from a newer radlens is refused, not downgraded
        db.lock()
            .pragma_update(None, "user_version", (SCHEMA_VERSION + 1) as i64)
            .unwrap();
        drop(db);
        let e = Db::open(&path).err().unwrap();
        assert!(e.contains("newer than this radlens"), "{e}");
    }
}
