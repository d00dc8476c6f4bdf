//! Sign-in and the checks every API request passes. Passwords are stored as argon2id
//! hashes; a session is a random token in an HttpOnly, SameSite=Strict cookie, stored
//! only as its BLAKE2 hash, with an absolute expiry. Every state-changing request must
//! also carry the session's CSRF token in `x-csrf-token` (a page reads it from
//! `GET /api/me`; a cross-site form cannot) and, when the browser sends `Origin`, come
//! from this server's own origin. Roles are checked per handler (`AppState::authorize`);
//! refusals of a signed-in person are written to the audit trail.

use crate::db::accounts::{self, AuditAction, NewAudit, Role, User};
use crate::db::Db;
use crate::error::{Result, ServerError};
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use blake2::{Blake2s256, Digest};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

pub const SESSION_COOKIE: &str = "radlens_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The id `log_request` gives each request (sent back as `x-request-id`, kept in the audit).
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub u64);

/// The signed-in person behind a request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: User,
    pub request_id: u64,
    csrf: String,
    token_hash: String,
    expires_at: i64,
}

/// What a request asks to do; `Permission::allows` is the whole role table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See studies, drafts, reports, timelines.
    Read,
    /// Upload studies and queue analyses.
    Upload,
    /// Edit, review and sign reports.
    Report,
    /// Manage accounts and read the audit trail.
    Admin,
    /// Run steering generations with the language model.
    Steer,
}

impl Permission {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Self::Read => true,
            Self::Upload => matches!(role, Role::Radiologist | Role::Admin),
            Self::Report => role == Role::Radiologist,
            Self::Admin => role == Role::Admin,
            Self::Steer => matches!(role, Role::Radiologist | Role::Admin),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Upload => "upload studies",
            Self::Report => "edit, review or sign reports",
            Self::Admin => "manage users or read the audit trail",
            Self::Steer => "run steering generations",
        }
    }
}

impl AppState {
    /// Record an event of `actor`'s.
    pub fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        study: Option<i64>,
        detail: &str,
    ) -> Result<()> {
        accounts::insert_audit(
            &self.db.lock(),
            &NewAudit {
                user_id: Some(actor.user.id),
                username: Some(&actor.user.username),
                action,
                study_id: study,
                detail,
                request_id: actor.request_id,
            },
        )?;
        Ok(())
    }

    /// Refuse (and audit) a request the actor's role does not allow.
    pub fn authorize(&self, actor: &Actor, p: Permission, study: Option<i64>) -> Result<()> {
        if p.allows(actor.user.role) {
            return Ok(());
        }
        let msg = format!(
            "{} ({}) may not {}",
            actor.user.username,
            actor.user.role.as_str(),
            p.describe()
        );
        self.audit(actor, AuditAction::Denied, study, &msg)?;
        Err(ServerError::Forbidden(msg))
    }
}

/// A username: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_username(raw: &str) -> std::result::Result<String, String> {
    let u = raw.trim();
    let ok = (1..=64).contains(&u.chars().count())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(u.to_string())
    } else {
        Err(format!(
            "username '{}' must be 1 to 64 letters, digits, '.', '_', '-' or '@'",
            u.escape_debug()
        ))
    }
}

/// Passwords of 10 to 1024 characters (long passphrases welcome; argon2 bounds the cost).
pub fn check_password(p: &str) -> std::result::Result<(), String> {
    let n = p.chars().count();
    if (10..=1024).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "the password must be 10 to 1024 characters (got {n})"
        ))
    }
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt, in PHC form.
pub fn hash_password(password: &str) -> std::result::Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .and_then(|h| Argon2::default().verify_password(password.as_bytes(), &h))
        .is_ok()
}

/// Create an account (the CLI's `radlens user add` and the admin API).
pub fn add_user(
    db: &Db,
    username: &str,
    password: &str,
    role: Role,
) -> std::result::Result<User, String> {
    let username = check_username(username)?;
    check_password(password)?;
    let hash = hash_password(password)?;
    let c = db.lock();
    let id = accounts::insert_user(&c, &username, &hash, role)
        .map_err(|e| format!("database: {e}"))?
        .ok_or_else(|| format!("user '{username}' already exists"))?;
    accounts::user(&c, id)
        .map_err(|e| format!("database: {e}"))?
        .ok_or_else(|| format!("user {id} vanished"))
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn token_hash(token: &str) -> String {
    Blake2s256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Compare without an early exit, so the time taken does not reveal a matching prefix.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

/// A browser's `Origin`, when sent, must be this server (`Host`).
fn check_origin(headers: &HeaderMap) -> Result<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if host.is_some() && authority == host {
        Ok(())
    } else {
        Err(ServerError::Forbidden(format!(
            "cross-origin request from '{}' refused",
            origin.escape_debug()
        )))
    }
}

/// Middleware of every API route but login: find the session, check its expiry, and
/// for state-changing methods its origin and CSRF token.
pub async fn require_session(
    State(s): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match authenticate(&s, &req) {
        Ok(actor) => {
            tracing::Span::current().record("user", actor.user.username.as_str());
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn authenticate(s: &AppState, req: &Request) -> Result<Actor> {
    let request_id = req.extensions().get::<RequestId>().map_or(0, |r| r.0);
    let token = session_cookie(req.headers())
        .ok_or_else(|| ServerError::Unauthorized("sign in first: no session cookie".into()))?;
    let hash = token_hash(token);
    let row = accounts::session(&s.db.read(), &hash)?.ok_or_else(|| {
        ServerError::Unauthorized("the session is unknown or has ended; sign in again".into())
    })?;
    if row.expires_at <= now() {
        accounts::delete_session(&s.db.lock(), &hash)?;
        return Err(ServerError::Unauthorized(
            "the session has expired; sign in again".into(),
        ));
    }
    if row.user.disabled {
        return Err(ServerError::Unauthorized(format!(
            "the account '{}' is disabled",
            row.user.username
        )));
    }
    let actor = Actor {
        user: row.user,
        request_id,
        csrf: row.csrf,
        token_hash: hash,
        expires_at: row.expires_at,
    };
    if !req.method().is_safe() {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let refusal = match (check_origin(req.headers()), sent) {
            (Err(e), _) => Some(e),
            (Ok(()), Some(t)) if same_secret(t, &actor.csrf) => None,
            (Ok(()), _) => Some(ServerError::Forbidden(format!(
                "missing or wrong {CSRF_HEADER} header on {} {}",
                req.method(),
                req.uri().path()
            ))),
        };
        if let Some(e) = refusal {
            s.audit(&actor, AuditAction::Denied, None, &e.to_string())?;
            return Err(e);
        }
    }
    Ok(actor)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// The signed-in person, with the CSRF token their pages send back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `POST /api/login`: a session cookie for a right username and password.
pub async fn login(
    State(s): State<Arc<AppState>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    b: std::result::Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response> {
    check_origin(&headers)?;
    let Json(req) =
        b.map_err(|e| ServerError::BadRequest(format!("request body: {}", e.body_text())))?;
    let username: String = req.username.trim().chars().take(64).collect();
    let found = accounts::credentials(&s.db.lock(), &username)?;
    let password = req.password;
    let user = tokio::task::spawn_blocking(move || {
        // an unknown name costs the same hash as a known one
        static DUMMY: OnceLock<String> = OnceLock::new();
        let dummy =
            DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default());
        match found {
            Some((u, hash)) if verify_password(&hash, &password) && !u.disabled => Some(u),
            _ => {
                verify_password(dummy, &password);
                None
            }
        }
    })
    .await
    .map_err(|e| ServerError::Internal(format!("worker thread: {e}")))?;
    let Some(user) = user else {
        accounts::insert_audit(
            &s.db.lock(),
            &NewAudit {
                user_id: None,
                username: Some(&username),
                action: AuditAction::LoginFailed,
                study_id: None,
                detail: "wrong username or password, or account disabled",
                request_id,
            },
        )?;
        return Err(ServerError::Unauthorized(
            "wrong username or password".into(),
        ));
    };
    let (token, csrf) = (random_token(), random_token());
    let ttl = s.session_ttl.as_secs() as i64;
    let expires_at = now() + ttl;
    accounts::insert_session(
        &s.db.lock(),
        &token_hash(&token),
        user.id,
        &csrf,
        expires_at,
        now(),
    )?;
    let actor = Actor {
        user,
        request_id,
        csrf,
        token_hash: String::new(),
        expires_at,
    };
    s.audit(&actor, AuditAction::Login, None, "signed in")?;
    tracing::info!(user = %actor.user.username, "signed in");
    let secure = if s.secure_cookie { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}"
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|e| ServerError::Internal(format!("cookie: {e}")))?;
    Ok(([(header::SET_COOKIE, cookie)], Json(me_of(&actor))).into_response())
}

fn me_of(a: &Actor) -> Me {
    Me {
        username: a.user.username.clone(),
        role: a.user.role,
        csrf_token: a.csrf.clone(),
        expires_at: a.expires_at,
    }
}

/// `GET /api/me`: the signed-in user, or `null` (not an error, so that a page can find
/// out whether to show the sign-in form without logging a failed request).
pub async fn me(State(s): State<Arc<AppState>>, req: Request) -> Result<Json<Option<Me>>> {
    match authenticate(&s, &req) {
        Ok(a) => Ok(Json(Some(me_of(&a)))),
        Err(ServerError::Unauthorized(_)) => Ok(Json(None)),
        Err(e) => Err(e),
    }
}

/// `POST /api/logout`: end the session and clear the cookie.
pub async fn logout(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Actor>,
) -> Result<Response> {
    accounts::delete_session(&s.db.lock(), &a.token_hash)?;
    s.audit(&a, AuditAction::Logout, None, "signed out")?;
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    let clear =
        HeaderValue::from_str(&clear).map_err(|e| ServerError::Internal(format!("cookie: {e}")))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterz"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        // a fresh salt each time
        assert_ne!(h, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn names_passwords_cookies_and_origins_are_checked() {
        assert_eq!(check_username(" dr.smith ").unwrap(), "dr.smith");
        for bad in ["", "a b", "x'; DROP TABLE users; --", &"a".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pass").is_ok());

        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; radlens_session=tok; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some("tok"));
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(
            check_origin(&h).is_ok(),
            "no Origin: not a browser's cross-site request"
        );
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(check_origin(&h).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(check_origin(&h).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(check_origin(&h).is_err());

        assert!(
            same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab")
        );
        assert_ne!(token_hash("a"), token_hash("b"));
        assert_eq!(token_hash("a").len(), 64);
    }

    #[test]
    fn roles_allow_what_the_table_says() {
        use Permission::*;
        let table = [
            (Role::Viewer, [true, false, false, false, false]),
            (Role::Radiologist, [true, true, true, false, true]),
            (Role::Admin, [true, true, false, true, true]),
        ];
        for (role, want) in table {
            let got = [Read, Upload, Report, Admin, Steer].map(|p| p.allows(role));
            assert_eq!(got, want, "{role:?}");
        }
    }
}
