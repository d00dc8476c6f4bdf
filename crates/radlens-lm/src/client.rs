//! A blocking client for OpenAI-compatible chat endpoints (`radlens lm serve`, llama.cpp,
//! vLLM, OpenAI itself): a timeout per request, retries with exponential backoff on
//! connection failures, timeouts, 429 and 5xx, a rate limit shared by the threads using
//! one client, the API key from an environment variable, and errors that name the URL
//! and the problem (an error reply's message, or a reply that is not the JSON expected).
//!
//! Plain `http://` only: the workspace builds reqwest without TLS. Remote HTTPS endpoints
//! are reached through a local proxy.

use crate::error::{LmError, Result};
use crate::openai::{ChatChunk, ChatCompletion, ChatRequest, ErrorBody, ModelList};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where and how to call an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Base URL ending in the API version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Environment variable holding the API key, sent as a bearer token; the request
    /// fails if the variable is named but unset.
    pub api_key_env: Option<String>,
    /// Limit on one request, connection to last byte.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubled at each further one.
    pub backoff: Duration,
    /// Requests started per second at most (all threads together); `None` = unlimited.
    pub requests_per_second: Option<f64>,
}

impl ClientConfig {
    /// Defaults for `base_url`: 60 s timeout, 3 retries from 0.5 s, no rate limit.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key_env: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            backoff: Duration::from_millis(500),
            requests_per_second: None,
        }
    }
}

/// A streamed reply put together.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedReply {
    pub text: String,
    pub finish_reason: Option<String>,
    /// Events received (chunks, `[DONE]` excluded).
    pub chunks: usize,
}

/// The client; share it between threads by reference.
pub struct ChatClient {
    http: reqwest::blocking::Client,
    cfg: ClientConfig,
    api_key: Option<String>,
    /// Earliest start of the next request under the rate limit.
    next_start: Mutex<Instant>,
}

/// One attempt's failure, and whether trying again may help.
struct Failure {
    reason: String,
    retry: bool,
}

impl ChatClient {
    /// Checks the settings and reads the API key.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let url = cfg.base_url.trim_end_matches('/');
        if !url.starts_with("http://") {
            return Err(LmError::InvalidArgument(format!(
                "endpoint {url}: only http:// URLs are supported (no TLS in this build)"
            )));
        }
        if let Some(r) = cfg.requests_per_second {
            if !(r.is_finite() && r > 0.0) {
                return Err(LmError::InvalidArgument(format!(
                    "requests per second must be positive, got {r}"
                )));
            }
        }
        let api_key = match &cfg.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                LmError::InvalidArgument(format!(
                    "the API key variable {var} is not set (or not unicode)"
                ))
            })?),
            None => None,
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| endpoint(url, format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            api_key,
            next_start: Mutex::new(Instant::now()),
            cfg: ClientConfig {
                base_url: url.to_string(),
                ..cfg
            },
        })
    }

    /// `POST /chat/completions` (non-streaming whatever `request.stream` says).
    pub fn chat(&self, request: &ChatRequest) -> Result<ChatCompletion> {
        let request = ChatRequest {
            stream: false,
            ..request.clone()
        };
        self.call("chat/completions", Some(&request), |resp, url| {
            parse_json(url, resp)
        })
    }

    /// `POST /chat/completions` with `stream: true`, calling `on_text` with each delta.
    pub fn chat_stream(
        &self,
        request: &ChatRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<StreamedReply> {
        let request = ChatRequest {
            stream: true,
            ..request.clone()
        };
        self.call("chat/completions", Some(&request), |resp, url| {
            read_events(url, resp, &mut on_text)
        })
    }

    /// `GET /models`.
    pub fn models(&self) -> Result<ModelList> {
        self.call::<(), _>("models", None, |resp, url| parse_json(url, resp))
    }

    /// Sends with retries; `read` turns a successful reply into the result (its failures
    /// are not retried: the server answered).
    fn call<B: serde::Serialize, T>(
        &self,
        path: &str,
        body: Option<&B>,
        mut read: impl FnMut(reqwest::blocking::Response, &str) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let url = format!("{}/{path}", self.cfg.base_url);
        let (mut last, mut retried) = (String::new(), 0);
        for attempt in 0..=self.cfg.max_retries {
            retried = attempt;
            if attempt > 0 {
                std::thread::sleep(self.cfg.backoff * 2u32.saturating_pow(attempt - 1));
            }
            self.wait_for_slot();
            match self.send(&url, body) {
                Ok(resp) => return read(resp, &url).map_err(|r| endpoint(&url, r)),
                Err(Failure { reason, retry }) => {
                    last = reason;
                    if !retry {
                        break;
                    }
                }
            }
        }
        // a refusal that is not worth retrying (400, 404) is reported as it came
        Err(endpoint(
            &url,
            match retried {
                0 => last,
                n => format!("{last} (after {n} retries)"),
            },
        ))
    }

    fn send<B: serde::Serialize>(
        &self,
        url: &str,
        body: Option<&B>,
    ) -> std::result::Result<reqwest::blocking::Response, Failure> {
        let mut req = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().map_err(|e| Failure {
            retry: e.is_timeout() || e.is_connect() || e.is_request(),
            reason: if e.is_timeout() {
                format!("no reply within {:?}", self.cfg.timeout)
            } else {
                format!("request failed: {e}")
            },
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| text.chars().take(200).collect());
        Err(Failure {
            retry: status.as_u16() == 429 || status.is_server_error(),
            reason: format!("HTTP {status}: {message}"),
        })
    }

    /// Blocks until the rate limit lets the next request start.
    fn wait_for_slot(&self) {
        let Some(rate) = self.cfg.requests_per_second else {
            return;
        };
        let start = {
            let mut next = self.next_start.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(1.0 / rate);
            start
        };
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
    }
}

fn endpoint(url: &str, reason: impl Into<String>) -> LmError {
    LmError::Endpoint {
        url: url.to_string(),
        reason: reason.into(),
    }
}

fn parse_json<T: DeserializeOwned>(
    _url: &str,
    resp: reqwest::blocking::Response,
) -> std::result::Result<T, String> {
    let text = resp
        .text()
        .map_err(|e| format!("cannot read the reply: {e}"))?;
    serde_json::from_str(&text).map_err(|e| {
        let head: String = text.chars().take(120).collect();
        format!("malformed JSON reply ({e}): {head:?}")
    })
}

/// Reads `data: {chunk}` lines up to `data: [DONE]`.
fn read_events(
    _url: &str,
    resp: reqwest::blocking::Response,
    on_text: &mut impl FnMut(&str),
) -> std::result::Result<StreamedReply, String> {
    let mut reply = StreamedReply {
        text: String::new(),
        finish_reason: None,
        chunks: 0,
    };
    for line in BufReader::new(resp).lines() {
        let line = line.map_err(|e| format!("stream broken: {e}"))?;
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            return Ok(reply);
        }
        if let Ok(err) = serde_json::from_str::<ErrorBody>(data) {
            return Err(format!("error in stream: {}", err.error.message));
        }
        let chunk: ChatChunk = serde_json::from_str(data)
            .map_err(|e| format!("malformed JSON event ({e}): {data:?}"))?;
        reply.chunks += 1;
        for choice in chunk.choices {
            if let Some(t) = choice.delta.content {
                on_text(&t);
                reply.text.push_str(&t);
            }
            if choice.finish_reason.is_some() {
                reply.finish_reason = choice.finish_reason;
            }
        }
    }
    Err("the stream ended without [DONE]".to_string())
}
