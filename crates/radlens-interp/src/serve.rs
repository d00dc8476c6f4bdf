//! `radlens lm serve`: an OpenAI-compatible chat-completions server over one loaded
//! radlens-lm model (`GET /v1/models`, `POST /v1/chat/completions`, streamed as
//! server-sent events or not), with per-request steering or SAE splicing through the
//! `radlens` extension field when the server was started with an SAE.
//!
//! Concurrency: the model is immutable and every request owns its KV cache, so requests
//! generate in parallel on blocking threads, at most `parallel` at once (a semaphore;
//! the rest wait in arrival order). Generations are not batched: on a CPU a batch of
//! sequences costs about as much as running them side by side.
//!
//! Limits: request body size, number of messages, `max_tokens` (capped; a larger request
//! is refused, not silently cut), prompt + `max_tokens` within the model's context. Every
//! failure is an OpenAI-style JSON error with the HTTP status it calls for. A streaming
//! client that disconnects stops its generation at the next token.

use crate::steer::HookedSae;
use crate::{InterpError, Result};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use radlens_lm::openai::{
    ApiError, AssistantMessage, ChatChunk, ChatCompletion, ChatRequest, Choice, ChunkChoice, Delta,
    ErrorBody, Intervention, ModelInfo, ModelList, Usage,
};
use radlens_lm::{GenerationConfig, HookPoint, Hooks, LanguageModel, Message, Sampler, StopReason};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Semaphore};

/// Limits and names of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The model id `/v1/models` lists and requests must name.
    pub model_id: String,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_limit: usize,
    /// `max_tokens` of a request that gives none.
    pub default_max_tokens: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most messages in one request.
    pub max_messages: usize,
    /// Generations running at once.
    pub parallel: usize,
}

impl ServeConfig {
    pub fn new(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            max_tokens_limit: 1024,
            default_max_tokens: 256,
            max_body_bytes: 1 << 20,
            max_messages: 64,
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The loaded model, the optional SAE and the limits, shared by every request.
pub struct Server {
    lm: Arc<LanguageModel>,
    sae: Option<HookedSae>,
    cfg: ServeConfig,
    permits: Arc<Semaphore>,
    created: u64,
    next_id: AtomicU64,
}

impl Server {
    /// A server for `lm`; `sae` enables the `radlens` extension.
    pub fn new(lm: Arc<LanguageModel>, sae: Option<HookedSae>, cfg: ServeConfig) -> Result<Self> {
        if cfg.parallel == 0 || cfg.max_tokens_limit == 0 || cfg.max_messages == 0 {
            return Err(InterpError::invalid(
                "parallel generations, the max_tokens limit and the message limit must be at least 1",
            ));
        }
        if cfg.default_max_tokens > cfg.max_tokens_limit {
            return Err(InterpError::invalid(format!(
                "the default max_tokens {} exceeds the limit {}",
                cfg.default_max_tokens, cfg.max_tokens_limit
            )));
        }
        if let Some(s) = &sae {
            lm.model.check_point(s.point())?;
            let hidden = lm.model.config().hidden_size;
            if s.sae.config().d_in != hidden {
                return Err(InterpError::invalid(format!(
                    "the SAE reads {}-wide activations but the model's residual stream is {hidden} wide",
                    s.sae.config().d_in
                )));
            }
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(cfg.parallel)),
            created: unix_now(),
            next_id: AtomicU64::new(1),
            lm,
            sae,
            cfg,
        })
    }

    /// The routes, with the body limit.
    pub fn router(self: Arc<Self>) -> Router {
        let limit = self.cfg.max_body_bytes;
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .fallback(|| async {
                ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such route")
            })
            .layer(DefaultBodyLimit::max(limit))
            .with_state(self)
    }

    /// Checks a request and turns it into a generation job.
    fn prepare(&self, req: &ChatRequest) -> std::result::Result<Job, ApiFailure> {
        let bad = |param: &str, msg: String| ApiFailure::invalid(param, msg);
        if req.model != self.cfg.model_id {
            return Err(ApiFailure::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "model '{}' is not served here (this server serves '{}')",
                    req.model, self.cfg.model_id
                ),
            ));
        }
        if req.messages.is_empty() || req.messages.len() > self.cfg.max_messages {
            return Err(bad(
                "messages",
                format!(
                    "a request needs 1 to {} messages, got {}",
                    self.cfg.max_messages,
                    req.messages.len()
                ),
            ));
        }
        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(bad(
                    "messages",
                    format!("message {i}: unknown role '{}'", m.role),
                ));
            }
            let text = m.content.text_only().ok_or_else(|| {
                bad(
                    "messages",
                    format!("message {i} holds an image: this model reads text only"),
                )
            })?;
            messages.push(Message::new(m.role.clone(), text));
        }
        let max_tokens = req.max_tokens.unwrap_or(self.cfg.default_max_tokens);
        if max_tokens == 0 || max_tokens > self.cfg.max_tokens_limit {
            return Err(bad(
                "max_tokens",
                format!(
                    "max_tokens must be 1 to {}, got {max_tokens}",
                    self.cfg.max_tokens_limit
                ),
            ));
        }
        let text = self.lm.chat.render(&messages, true);
        let prompt = self
            .lm
            .tokenizer
            .encode(&text)
            .map_err(|e| bad("messages", e.to_string()))?;
        let context = self.lm.model.config().context_length;
        if prompt.len() + max_tokens > context {
            return Err(bad(
                "messages",
                format!(
                    "the prompt has {} tokens; with max_tokens {max_tokens} it exceeds the context of {context}",
                    prompt.len()
                ),
            ));
        }
        let generation = GenerationConfig {
            max_tokens,
            temperature: req.temperature.unwrap_or(0.0),
            top_p: req.top_p.unwrap_or(1.0),
            seed: req.seed.unwrap_or(GenerationConfig::default().seed),
            stop_tokens: Vec::new(),
        };
        Sampler::new(&generation).map_err(|e| bad("temperature", e.to_string()))?;
        let intervention = match (&req.radlens, &self.sae) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(bad(
                    "radlens",
                    "this server has no SAE loaded (start it with --sae)".to_string(),
                ))
            }
            (Some(iv), Some(sae)) => {
                sae.register(&mut Hooks::new(), iv)
                    .map_err(|e| bad("radlens", e.to_string()))?;
                Some(iv.clone())
            }
        };
        Ok(Job {
            prompt,
            generation,
            intervention,
        })
    }

    /// Runs `job` on this thread, streaming text to `on_text`; stops with an error once
    /// `cancelled` is set.
    fn run(
        &self,
        job: &Job,
        cancelled: &Arc<AtomicBool>,
        on_text: impl FnMut(&str),
    ) -> Result<radlens_lm::Generation> {
        let mut hooks = Hooks::new();
        if let (Some(iv), Some(sae)) = (&job.intervention, &self.sae) {
            sae.register(&mut hooks, iv)?;
        }
        let flag = cancelled.clone();
        hooks.replace(HookPoint::ResidPre(0), move |_, x| {
            if flag.load(Ordering::Relaxed) {
                Err(candle_core::Error::Msg("the client went away".into()))
            } else {
                Ok(x.clone())
            }
        });
        Ok(self
            .lm
            .generate(&job.prompt, &job.generation, &mut hooks, on_text)?)
    }

    fn completion_id(&self) -> String {
        format!("chatcmpl-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// A checked request.
struct Job {
    prompt: Vec<u32>,
    generation: GenerationConfig,
    intervention: Option<Intervention>,
}

async fn models(State(server): State<Arc<Server>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelInfo {
            id: server.cfg.model_id.clone(),
            object: "model".into(),
            created: server.created,
            owned_by: "radlens".into(),
        }],
    })
}

async fn chat(
    State(server): State<Arc<Server>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return ApiFailure::new(e.status(), "invalid_request_error", e.body_text())
                .into_response()
        }
    };
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiFailure::invalid("body", format!("not a chat request: {e}")).into_response()
        }
    };
    let job = match server.prepare(&req) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let permit = match server.permits.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => return ApiFailure::server("the server is shutting down").into_response(),
    };
    if req.stream {
        stream_reply(server, job, permit).into_response()
    } else {
        match whole_reply(server, job, permit).await {
            Ok(r) => Json(r).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

async fn whole_reply(
    server: Arc<Server>,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> std::result::Result<ChatCompletion, ApiFailure> {
    let s = server.clone();
    let prompt_tokens = job.prompt.len();
    let generation = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        s.run(&job, &Arc::new(AtomicBool::new(false)), |_| {})
    })
    .await
    .map_err(|e| ApiFailure::server(format!("generation failed: {e}")))?
    .map_err(|e| ApiFailure::server(format!("generation failed: {e}")))?;
    Ok(ChatCompletion {
        id: server.completion_id(),
        object: "chat.completion".into(),
        created: unix_now(),
        model: server.cfg.model_id.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: generation.text,
            },
            finish_reason: finish_reason(generation.stop).into(),
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens: generation.tokens.len(),
            total_tokens: prompt_tokens + generation.tokens.len(),
        },
    })
}

fn stream_reply(
    server: Arc<Server>,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Sse<Events> {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let id = server.completion_id();
    let created = unix_now();
    let model = server.cfg.model_id.clone();
    let chunk = move |delta: Delta, finish: Option<&str>| -> Event {
        let c = ChatChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(str::to_string),
            }],
        };
        Event::default().data(serde_json::to_string(&c).unwrap_or_default())
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let cancelled = Arc::new(AtomicBool::new(false));
        let send = |e: Event| {
            if tx.blocking_send(e).is_err() {
                cancelled.store(true, Ordering::Relaxed);
            }
        };
        send(chunk(
            Delta {
                role: Some("assistant".into()),
                content: None,
            },
            None,
        ));
        let result = server.run(&job, &cancelled, |piece| {
            send(chunk(
                Delta {
                    role: None,
                    content: Some(piece.to_string()),
                },
                None,
            ))
        });
        match result {
            Ok(g) => send(chunk(Delta::default(), Some(finish_reason(g.stop)))),
            Err(e) => send(
                Event::default().data(
                    serde_json::to_string(
                        &ApiFailure::server(format!("generation failed: {e}")).body(),
                    )
                    .unwrap_or_default(),
                ),
            ),
        }
        send(Event::default().data("[DONE]"));
    });
    Sse::new(Events(rx))
}

/// The events of one streamed reply.
pub struct Events(mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = std::result::Result<Event, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::StopToken(_) => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error reply.
#[derive(Debug)]
struct ApiFailure {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<String>,
}

impl ApiFailure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
        }
    }

    fn invalid(param: &str, message: String) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    fn server(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ApiError {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: None,
            },
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Binds `addr`, tells `on_ready` the bound address, and serves until Ctrl-C.
pub fn run_until_ctrl_c(
    server: Arc<Server>,
    addr: std::net::SocketAddr,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let io = |what: &str, e: std::io::Error| InterpError::invalid(format!("{what}: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| io("cannot start the async runtime", e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| io(&format!("cannot listen on {addr}"), e))?;
        on_ready(listener.local_addr().map_err(|e| io("local address", e))?);
        axum::serve(listener, server.router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| io("server", e))
    })
}
