//! The radlens workbench server (`radlens serve`): an embedded SQLite database of
//! patients, studies and their analyses; inference as background jobs; the JSON API
//! (`api`); and the clinician pages, whose assets are built into the binary (`assets`).
//!
//! Everything derived from an image (masks, overlays, measurements, the draft) is cached
//! per study and model version (`engine::Engine::version`).

pub mod admin;
pub mod api;
pub mod assets;
pub mod auth;
pub mod db;
pub mod engine;
pub mod error;
pub mod feature_api;
pub mod features;
pub mod fhir;
pub mod http_cache;
pub mod import;
pub mod jobs;
pub mod overlay;
pub mod results;
pub mod steering;
pub mod timeline;
pub mod upload;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;
use db::Db;
use engine::Engine;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// What `radlens serve` is given.
#[derive(Debug, Clone)]
pub struct Config {
    pub db: PathBuf,
    pub bind: SocketAddr,
    /// Uploaded files live in `<data_dir>/studies/` under server-chosen names.
    pub data_dir: PathBuf,
    /// The anatomy model's run folder.
    pub model: PathBuf,
    /// SSN samples per image (intervals, uncertainty map).
    pub samples: usize,
    pub seed: u64,
    /// Largest upload in bytes.
    pub max_upload: usize,
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Longest time a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Mark the session cookie `Secure` (when served over HTTPS, e.g. behind a proxy).
    pub secure_cookie: bool,
    /// SAE run folders for the feature browser, each with its `features.sqlite`.
    pub sae_runs: Vec<PathBuf>,
    /// The language model (GGUF) the runs' SAEs read, for steering and decoder logits.
    pub lm_model: Option<PathBuf>,
}

/// Study pixels kept in memory: 128 films of 1024x1024.
const PIXEL_CACHE_BYTES: usize = 256 << 20;

/// Shared by every request and the inference worker.
pub struct AppState {
    pub db: Db,
    /// Display pixels by study id.
    pub pixels: http_cache::BlobCache,
    pub sae_runs: features::SaeRuns,
    pub engine: Engine,
    pub studies_dir: PathBuf,
    pub jobs: mpsc::UnboundedSender<i64>,
    pub max_upload: usize,
    pub session_ttl: Duration,
    pub request_timeout: Duration,
    pub secure_cookie: bool,
}

fn router(state: Arc<AppState>) -> Router {
    let upload_limit = DefaultBodyLimit::max(state.max_upload.saturating_add(64 * 1024));
    let signed_in = Router::new()
        .route("/api/logout", post(auth::logout))
        .route(
            "/api/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route("/api/users/{id}", post(admin::update_user))
        .route("/api/audit", get(admin::audit_log))
        .route("/api/patients", get(api::list_patients))
        .route("/api/patients/{id}/history", get(api::patient_history))
        .route(
            "/api/studies",
            get(api::list_studies)
                .post(api::create_study)
                .layer(upload_limit),
        )
        .route("/api/studies/{id}", get(api::get_study))
        .route("/api/studies/{id}/analyse", post(api::analyse))
        .route("/api/studies/{id}/pixels", get(api::pixels))
        .route("/api/studies/{id}/overlays/{name}", get(api::overlay))
        .route("/api/studies/{id}/draft", get(api::get_draft))
        .route(
            "/api/studies/{id}/sentences/{sid}",
            post(api::edit_sentence),
        )
        .route("/api/studies/{id}/edits", get(api::edits))
        .route("/api/studies/{id}/sign", post(api::sign))
        .route("/api/studies/{id}/fhir", get(api::fhir_report))
        .route("/api/studies/{id}/review", post(api::review))
        .route("/api/studies/{id}/search", get(api::search))
        .route("/api/jobs/{id}", get(api::get_job))
        .route("/api/features", get(feature_api::runs))
        .route("/api/features/{run}/search", get(feature_api::search))
        .route("/api/features/{run}/{index}", get(feature_api::feature))
        .route(
            "/api/features/{run}/{index}/logits",
            get(feature_api::logits),
        )
        .route(
            "/api/features/{run}/{index}/steer",
            post(feature_api::steer),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/", get(assets::index))
        .route("/login", get(assets::login_page))
        .route("/admin", get(assets::admin_page))
        .route("/studies/{id}", get(assets::study_page))
        .route("/patients/{id}", get(assets::patient_page))
        .route("/features/{run}/{index}", get(assets::feature_page))
        .route("/assets/{name}", get(assets::asset))
        .route("/healthz", get(api::healthz))
        .route("/api/login", post(auth::login))
        .route("/api/me", get(auth::me))
        .route("/api/openapi.json", get(assets::openapi))
        .merge(signed_in)
        .fallback(assets::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_limit,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Log every request with an id (also sent back as `x-request-id` and kept in the audit
/// trail), the signed-in user, status and duration.
async fn log_request(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    req.extensions_mut().insert(auth::RequestId(id));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", id, %method, %path, user = tracing::field::Empty);
    let mut res = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "served"
        )
    });
    res.headers_mut().insert("x-request-id", id.into());
    // A refusal may leave the request's body unread, after which the server drops the
    // connection; saying so keeps a client from sending its next request down it.
    if has_body && (res.status().is_client_error() || res.status().is_server_error()) {
        res.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    res
}

/// Answer 503 to a request still unanswered after `request_timeout` (work already on a
/// blocking thread finishes, but nobody waits for it).
async fn time_limit(
    axum::extract::State(s): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = s.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error::ServerError::Timeout(format!(
            "the request took longer than {} s",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}

/// A server bound to its address, not yet serving.
pub struct Bound {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    rx: mpsc::UnboundedReceiver<i64>,
}

impl Bound {
    /// Open the database, load the model, bind the address, and queue the jobs a
    /// previous run left unfinished.
    pub async fn new(cfg: &Config) -> Result<Self, String> {
        let studies_dir = cfg.data_dir.join("studies");
        std::fs::create_dir_all(&studies_dir)
            .map_err(|e| format!("--data-dir {}: {e}", studies_dir.display()))?;
        if cfg.max_upload == 0 {
            return Err("--max-upload-mb must be at least 1".into());
        }
        let db = Db::open(&cfg.db)?;
        let lm = cfg
            .lm_model
            .as_deref()
            .map(steering::Lm::load)
            .transpose()?;
        let sae_runs = features::SaeRuns::open(&cfg.sae_runs, lm)?;
        let engine = Engine::load(&cfg.model, cfg.samples, cfg.seed)
            .map_err(|e| format!("--model {}: {e}", cfg.model.display()))?;
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|e| format!("--bind {}: {e}", cfg.bind))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let unfinished = db::records::unfinished_jobs(&db.lock()).map_err(|e| e.to_string())?;
        for id in unfinished {
            let _ = tx.send(id);
        }
        let state = Arc::new(AppState {
            db,
            pixels: http_cache::BlobCache::new(PIXEL_CACHE_BYTES),
            sae_runs,
            engine,
            studies_dir,
            jobs: tx,
            max_upload: cfg.max_upload,
            session_ttl: cfg.session_ttl,
            request_timeout: cfg.request_timeout,
            secure_cookie: cfg.secure_cookie,
        });
        Ok(Self {
            listener,
            state,
            rx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn model_version(&self) -> &str {
        &self.state.engine.version
    }

    /// Serve until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let worker = tokio::spawn(jobs::worker(self.state.clone(), self.rx));
        let app = router(self.state);
        let r = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("server: {e}"));
        worker.abort();
        r
    }
}

/// Serve `cfg` until Ctrl-C; `on_ready` hears the address and model version once bound.
pub fn serve(cfg: &Config, on_ready: impl FnOnce(SocketAddr, &str)) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        let bound = Bound::new(cfg).await?;
        on_ready(bound.local_addr(), bound.model_version());
        bound
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

/// A server running on its own thread and runtime (tests, examples); stops on drop.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Running {
    pub fn start(cfg: Config) -> Result<Self, String> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            rt.block_on(async move {
                let bound = match Bound::new(&cfg).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(bound.local_addr()));
                bound
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
            })
        });
        let addr = ready_rx
            .recv()
            .map_err(|_| "the server thread stopped before binding".to_string())??;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
