//! The pages and their scripts, built into the binary: plain HTML, CSS and ES modules
//! with no build step, so a fresh clone needs only cargo (see ARCHITECTURE.md for why
//! the viewer is a small canvas renderer rather than Cornerstone3D).

use crate::error::ServerError;
use axum::extract::RawPathParams;
use axum::http::{header, Uri};
use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("../assets/index.html");
const STUDY: &str = include_str!("../assets/study.html");
const PATIENT: &str = include_str!("../assets/patient.html");
const LOGIN: &str = include_str!("../assets/login.html");
const ADMIN: &str = include_str!("../assets/admin.html");
const FEATURE: &str = include_str!("../assets/feature.html");

/// (name, content type, body) of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/api.js"),
    ),
    (
        "index.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/index.js"),
    ),
    (
        "viewer.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/viewer.js"),
    ),
    (
        "study.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/study.js"),
    ),
    (
        "patient.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/patient.js"),
    ),
    (
        "feature.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/feature.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/login.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/admin.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// The study page; the script reads the id from the URL and asks the API, which
/// answers 404 for an unknown study.
pub async fn study_page() -> Html<&'static str> {
    Html(STUDY)
}

/// The patient timeline page (its script asks the API, as the study page does).
pub async fn patient_page() -> Html<&'static str> {
    Html(PATIENT)
}

/// The OpenAPI 3.1 document of the JSON API (checked against the router by a test).
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A latent of an SAE run (its script asks the API, which answers 404 for an unknown one).
pub async fn feature_page() -> Html<&'static str> {
    Html(FEATURE)
}

pub async fn login_page() -> Html<&'static str> {
    Html(LOGIN)
}

/// Accounts and the audit trail (the API refuses anyone but an administrator).
pub async fn admin_page() -> Html<&'static str> {
    Html(ADMIN)
}

pub async fn asset(p: RawPathParams) -> Response {
    let name = p.iter().next().map(|(_, v)| v).unwrap_or("");
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => {
            ServerError::NotFound(format!("no asset '{}'", name.escape_debug())).into_response()
        }
    }
}

pub async fn not_found(uri: Uri) -> Response {
    ServerError::NotFound(format!("no route {}", uri.path())).into_response()
}
