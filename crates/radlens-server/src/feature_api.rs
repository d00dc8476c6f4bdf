//! The feature browser's JSON API: the runs, one latent, its decoder logits, search, and
//! the steering box's side-by-side generation.

use crate::api::{blocking, body, bounded_text, tagged_json, SearchQuery, Shared};
use crate::auth::{Actor, Permission};
use crate::db::accounts::AuditAction;
use crate::error::{Result, ServerError};
use crate::features::RunInfo;
use crate::http_cache;
use crate::steering::{SteerRequest, SteerResult};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, RawPathParams, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use radlens_interp::feature_search::SearchHit;

/// Longest feature search query, in characters.
const MAX_QUERY: usize = 200;

fn param(p: &RawPathParams, key: &str) -> Result<String> {
    p.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| ServerError::Internal(format!("route without '{key}'")))
}

/// The run name and latent index of a feature route.
fn run_and_index(p: &RawPathParams) -> Result<(String, usize)> {
    let raw = param(p, "index")?;
    let index = raw.parse().map_err(|_| {
        ServerError::BadRequest(format!(
            "latent index '{}' is not a non-negative integer",
            raw.escape_debug()
        ))
    })?;
    Ok((param(p, "run")?, index))
}

/// The SAE runs the feature browser shows (`--sae-run`).
pub async fn runs(State(s): Shared) -> Json<Vec<RunInfo>> {
    Json(s.sae_runs.list())
}

/// Answered as [`radlens_interp::feature_db::Feature`], from memory while the run's
/// database is unchanged.
pub async fn feature(State(s): Shared, req: HeaderMap, p: RawPathParams) -> Result<Response> {
    let (run, index) = run_and_index(&p)?;
    let st = s.clone();
    let page = blocking(move || st.sae_runs.feature_page(&run, index)).await?;
    Ok(http_cache::conditional(
        &req,
        &page.etag,
        "application/json",
        "private, no-cache",
        page.body,
    ))
}

/// Answered as [`radlens_interp::decoder_logits::DecoderLogits`]; 409 without a model
/// the run's SAE fits.
pub async fn logits(State(s): Shared, req: HeaderMap, p: RawPathParams) -> Result<Response> {
    let (run, index) = run_and_index(&p)?;
    let st = s.clone();
    let l = blocking(move || st.sae_runs.logits(&run, index)).await?;
    tagged_json(&req, &*l)
}

/// `GET /api/features/{run}/search?q=...`.
pub async fn search(
    State(s): Shared,
    p: RawPathParams,
    q: std::result::Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<SearchHit>>> {
    let run = param(&p, "run")?;
    let Query(q) = q.map_err(|e| ServerError::BadRequest(format!("query: {}", e.body_text())))?;
    let query = bounded_text(&q.q, MAX_QUERY, "feature search query 'q'")?;
    let st = s.clone();
    Ok(Json(
        blocking(move || st.sae_runs.search(&run, &query)).await?,
    ))
}

/// `POST /api/features/{run}/{index}/steer`: baseline and steered replies side by side.
pub async fn steer(
    State(s): Shared,
    Extension(actor): Extension<Actor>,
    p: RawPathParams,
    b: std::result::Result<Json<SteerRequest>, JsonRejection>,
) -> Result<Json<SteerResult>> {
    let (run, index) = run_and_index(&p)?;
    s.authorize(&actor, Permission::Steer, None)?;
    let req = body(b)?.checked()?;
    let (lm, sae) = s.sae_runs.hooked(&run, index)?;
    let detail = format!(
        "steered {run} latent {index}: {:?} {} for {} tokens",
        req.mode, req.coef, req.max_tokens
    );
    let r = lm.steer(&sae, index, req).await?;
    s.audit(&actor, AuditAction::Steer, None, &detail)?;
    tracing::info!(run = %run, latent = index, coef = r.coef, "steered");
    Ok(Json(r))
}
