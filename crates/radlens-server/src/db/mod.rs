//! The embedded SQLite database: opened in WAL mode with foreign keys on and migrated to
//! the current schema. One connection writes, behind a mutex (requests hold it for single
//! statements or one transaction; the inference worker only for its final transaction);
//! reads go to a small pool of read-only connections, which WAL lets run beside the
//! writer, so a page view never waits for a write or for another page's read.

pub mod accounts;
mod migrations;
pub mod records;

pub use migrations::SCHEMA_VERSION;
use rusqlite::Connection;
use rusqlite::OpenFlags;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// Read-only connections: enough that the server's threads rarely queue for one.
const READERS: usize = 4;

/// Prepared statements kept per connection (`prepare_cached`): every statement the
/// server runs, so a request never parses and plans SQL again (which cost more than
/// running it).
const STATEMENT_CACHE: usize = 64;

pub struct Db {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    /// Where the next reader search starts, so readers are used in turn.
    next_reader: AtomicUsize,
}

/// A poisoned lock is still usable: a panic while holding it leaves SQLite consistent
/// (statements are atomic).
fn unpoison<T>(r: std::sync::LockResult<T>) -> T {
    r.unwrap_or_else(|p| p.into_inner())
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
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let readers = (0..READERS)
            .map(|_| {
                let r = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                r.busy_timeout(Duration::from_secs(5))?;
                r.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(Mutex::new(r))
            })
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| fail(&e))?;
        Ok(Self {
            writer: Mutex::new(conn),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// The writing connection, for one statement or one transaction.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        unpoison(self.writer.lock())
    }

    /// A read-only connection: the first free one, else wait for one in turn. It sees
    /// every transaction committed before the statement starts.
    pub fn read(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        for k in 0..n {
            match self.readers[(start + k) % n].try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        unpoison(self.readers[start % n].lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_committed_writes_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        db.lock()
            .execute("INSERT INTO patients (patient_key) VALUES ('P1')", [])
            .unwrap();
        // every reader, including one taken while another is held
        let held = db.read();
        for _ in 0..READERS {
            let r = db.read();
            let n: i64 = r
                .query_row("SELECT count(*) FROM patients", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1);
            let e = r.execute("INSERT INTO patients (patient_key) VALUES ('P2')", []);
            assert!(e.is_err(), "a reader wrote");
        }
        drop(held);
    }

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
                "INSERT INTO studies (patient_id, format, file_name, stored_name, width, height) VALUES (99, 'png', 'a', 'b', 1, 1)",
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
