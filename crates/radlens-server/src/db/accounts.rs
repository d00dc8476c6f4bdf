//! Accounts, sessions and the audit trail: typed rows and their statements. Passwords
//! arrive here already hashed (`crate::auth`), session tokens as their hash.

use super::records::text_enum;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

text_enum!(
    /// What a person may do: `viewer` reads; `radiologist` also uploads, edits, reviews
    /// and signs; `admin` reads, uploads and manages accounts and the audit trail.
    Role { Viewer => "viewer", Radiologist => "radiologist", Admin => "admin" }
);

text_enum!(
    /// An audited event. `denied` is a signed-in request refused for its role or CSRF token.
    AuditAction {
        Login => "login",
        LoginFailed => "login_failed",
        Logout => "logout",
        Upload => "upload",
        Analyse => "analyse",
        SentenceEdit => "sentence_edit",
        Sign => "sign",
        Review => "review",
        Steer => "steer",
        UserAdd => "user_add",
        UserUpdate => "user_update",
        Denied => "denied",
    }
);

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "radiologist" => Ok(Self::Radiologist),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown role '{}' (viewer, radiologist, admin)",
                other.escape_debug()
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
}

fn user_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        role: r.get(2)?,
        disabled: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const USER_COLUMNS: &str = "id, username, role, disabled, created_at";

/// Insert a user; `None` when the username is taken.
pub fn insert_user(
    c: &Connection,
    username: &str,
    password_hash: &str,
    role: Role,
) -> rusqlite::Result<Option<i64>> {
    let n = c.execute(
        "INSERT INTO users (username, password_hash, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (username) DO NOTHING",
        params![username, password_hash, role],
    )?;
    Ok((n == 1).then(|| c.last_insert_rowid()))
}

pub fn users(c: &Connection) -> rusqlite::Result<Vec<User>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username"
    ))?;
    let rows = st.query_map([], user_row)?;
    rows.collect()
}

pub fn user(c: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_row)
        .optional()
}

/// The user and their password hash, by name.
pub fn credentials(c: &Connection, username: &str) -> rusqlite::Result<Option<(User, String)>> {
    c.prepare_cached(&format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"
    ))?
    .query_row([username], |r| Ok((user_row(r)?, r.get(5)?)))
    .optional()
}

/// Change a user's role and whether they may sign in; disabling ends their sessions.
pub fn update_user(
    c: &mut Connection,
    id: i64,
    role: Role,
    disabled: bool,
) -> rusqlite::Result<Option<User>> {
    let tx = c.transaction()?;
    if tx.execute(
        "UPDATE users SET role = ?2, disabled = ?3 WHERE id = ?1",
        params![id, role, disabled],
    )? == 0
    {
        return Ok(None);
    }
    if disabled {
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    }
    let u = user(&tx, id)?;
    tx.commit()?;
    Ok(u)
}

/// Start a session (and drop every expired one).
pub fn insert_session(
    c: &Connection,
    token_hash: &str,
    user: i64,
    csrf: &str,
    expires_at: i64,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
    c.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, user, csrf, expires_at],
    )?;
    Ok(())
}

/// A session as a request finds it.
pub struct SessionRow {
    pub user: User,
    pub csrf: String,
    pub expires_at: i64,
}

pub fn session(c: &Connection, token_hash: &str) -> rusqlite::Result<Option<SessionRow>> {
    c.prepare_cached(
        "SELECT u.id, u.username, u.role, u.disabled, u.created_at, s.csrf, s.expires_at
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok(SessionRow {
            user: user_row(r)?,
            csrf: r.get(5)?,
            expires_at: r.get(6)?,
        })
    })
    .optional()
}

pub fn delete_session(c: &Connection, token_hash: &str) -> rusqlite::Result<()> {
    c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
    Ok(())
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// Who acted, when known (a failed login names the username tried).
    pub username: Option<String>,
    pub action: AuditAction,
    pub study_id: Option<i64>,
    pub detail: String,
    /// The `x-request-id` of the request, to find it in the server log.
    pub request_id: Option<i64>,
}

/// An event to record.
pub struct NewAudit<'a> {
    pub user_id: Option<i64>,
    pub username: Option<&'a str>,
    pub action: AuditAction,
    pub study_id: Option<i64>,
    pub detail: &'a str,
    pub request_id: u64,
}

pub fn insert_audit(c: &Connection, a: &NewAudit) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO audit (user_id, username, action, study_id, detail, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            a.user_id,
            a.username,
            a.action,
            a.study_id,
            a.detail,
            a.request_id as i64
        ],
    )?;
    Ok(())
}

/// The newest `limit` events, newest first, of one study or of all.
pub fn audit(c: &Connection, study: Option<i64>, limit: i64) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut st = c.prepare_cached(
        "SELECT id, at, username, action, study_id, detail, request_id FROM audit
         WHERE ?1 IS NULL OR study_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![study, limit], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            username: r.get(2)?,
            action: r.get(3)?,
            study_id: r.get(4)?,
            detail: r.get(5)?,
            request_id: r.get(6)?,
        })
    })?;
    rows.collect()
}
