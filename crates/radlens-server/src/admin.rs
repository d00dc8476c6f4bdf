//! The administrator's API: accounts and the audit trail.

use crate::api::{path_id, Shared};
use crate::auth::{self, Actor, Permission};
use crate::db::accounts::{self, AuditAction, AuditEntry, Role, User};
use crate::error::{Result, ServerError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, RawPathParams};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

pub async fn list_users(s: Shared, Extension(a): Extension<Actor>) -> Result<Json<Vec<User>>> {
    s.authorize(&a, Permission::Admin, None)?;
    Ok(Json(accounts::users(&s.db.read())?))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUserRequest {
    pub username: String,
    pub password: String,
    pub role: Role,
}

pub async fn create_user(
    s: Shared,
    Extension(a): Extension<Actor>,
    b: std::result::Result<Json<NewUserRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<User>)> {
    s.authorize(&a, Permission::Admin, None)?;
    let req = crate::api::body(b)?;
    let st = s.0.clone();
    let user = tokio::task::spawn_blocking(move || {
        auth::add_user(&st.db, &req.username, &req.password, req.role)
    })
    .await
    .map_err(|e| ServerError::Internal(format!("worker thread: {e}")))?
    .map_err(|e| {
        if e.contains("already exists") {
            ServerError::Conflict(e)
        } else {
            ServerError::BadRequest(e)
        }
    })?;
    let detail = format!("added {} as {}", user.username, user.role.as_str());
    s.audit(&a, AuditAction::UserAdd, None, &detail)?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateUserRequest {
    pub role: Role,
    pub disabled: bool,
}

/// Change a user's role or disable them (which ends their sessions). An administrator
/// cannot demote or disable themselves, so an instance always keeps one.
pub async fn update_user(
    s: Shared,
    Extension(a): Extension<Actor>,
    p: RawPathParams,
    b: std::result::Result<Json<UpdateUserRequest>, JsonRejection>,
) -> Result<Json<User>> {
    s.authorize(&a, Permission::Admin, None)?;
    let id = path_id(&p, "id", "user")?;
    let req = crate::api::body(b)?;
    if id == a.user.id && (req.role != Role::Admin || req.disabled) {
        return Err(ServerError::Conflict(
            "administrators cannot demote or disable themselves".into(),
        ));
    }
    let user = accounts::update_user(&mut s.db.lock(), id, req.role, req.disabled)?
        .ok_or_else(|| ServerError::NotFound(format!("no user {id}")))?;
    let detail = format!(
        "{} is now {}{}",
        user.username,
        user.role.as_str(),
        if user.disabled { ", disabled" } else { "" }
    );
    s.audit(&a, AuditAction::UserUpdate, None, &detail)?;
    Ok(Json(user))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditQuery {
    pub study: Option<i64>,
    /// At most this many events, newest first (1 to 1000; 200 when absent).
    pub limit: Option<i64>,
}

pub async fn audit_log(
    s: Shared,
    Extension(a): Extension<Actor>,
    q: std::result::Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>> {
    s.authorize(&a, Permission::Admin, None)?;
    let Query(q) = q.map_err(|e| ServerError::BadRequest(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ServerError::BadRequest(format!(
            "limit must be 1 to 1000 (got {limit})"
        )));
    }
    Ok(Json(accounts::audit(&s.db.read(), q.study, limit)?))
}
