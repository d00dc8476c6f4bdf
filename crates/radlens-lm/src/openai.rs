//! The OpenAI chat-completions wire format, as `radlens lm serve` answers it and
//! [`crate::client::ChatClient`] sends it: requests (text and `image_url` content parts),
//! replies, streamed chunks, the model list and error bodies. Fields radlens does not use
//! are left out; unknown fields in a request are ignored, as OpenAI-compatible servers do.
//!
//! One extension: a request may carry `radlens` ([`Intervention`]), asking the server to
//! steer with, or splice in, the sparse autoencoder it loaded.

use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Answer as server-sent events of [`ChatChunk`]s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// radlens extension: steering / SAE splicing for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radlens: Option<Intervention>,
}

impl ChatRequest {
    /// A request with default sampling settings.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            max_tokens: None,
            temperature: None,
            top_p: None,
            seed: None,
            stream: false,
            radlens: None,
        }
    }
}

/// One turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: Content,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Content::Text(text.into()),
        }
    }

    pub fn system(text: impl Into<String>) -> Self {
        Self::new("system", text)
    }

    pub fn user(text: impl Into<String>) -> Self {
        Self::new("user", text)
    }
}

/// A message's content: a string, or a list of parts (text and images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text parts joined by newlines; `None` if there is an image part (a text-only
    /// model cannot answer it).
    pub fn text_only(&self) -> Option<String> {
        match self {
            Content::Text(t) => Some(t.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::ImageUrl { .. } => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(|t| t.join("\n")),
        }
    }
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

/// An image by URL, usually a `data:image/png;base64,...` URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The `radlens` extension of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    /// Replace the residual stream at the SAE's layer by its reconstruction.
    #[serde(default)]
    pub splice_sae: bool,
    /// Features to steer with.
    #[serde(default)]
    pub steer: Vec<Steer>,
}

/// Steering with one SAE feature's decoder direction, at every position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steer {
    pub feature: usize,
    pub coef: f64,
    #[serde(default)]
    pub mode: SteerMode,
}

/// How a steering coefficient acts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerMode {
    /// Add `coef` times the feature's decoder direction (in the SAE's normalised units).
    #[default]
    Add,
    /// Set the feature's activation to `coef`, keeping the SAE's error.
    Clamp,
}

/// A non-streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: usize,
    pub message: AssistantMessage,
    /// `stop` or `length`.
    pub finish_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// One server-sent event of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

/// An error reply: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub message: String,
    /// `invalid_request_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_requests_with_image_parts_and_ignores_unknown_fields() {
        let body = r#"{"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"describe"},
              {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]}],
            "max_tokens":5,"stream":true,"presence_penalty":0.1,
            "radlens":{"steer":[{"feature":3,"coef":2.5,"mode":"clamp"}]}}"#;
        let r: ChatRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.messages[0].content.text_only().unwrap(), "be brief");
        assert_eq!(r.messages[1].content.text_only(), None);
        let Content::Parts(parts) = &r.messages[1].content else {
            panic!("parts expected")
        };
        assert_eq!(
            parts[1],
            ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: "data:image/png;base64,AAAA".into(),
                    detail: Some("low".into())
                }
            }
        );
        assert!(r.stream);
        let steer = &r.radlens.as_ref().unwrap().steer[0];
        assert_eq!((steer.feature, steer.mode), (3, SteerMode::Clamp));
        // Round trip through our own serialisation.
        let again: ChatRequest = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again, r);
        // A typo in the extension is an error, not silently ignored.
        let bad = r#"{"model":"m","messages":[],"radlens":{"steer":[{"feature":1,"coeff":2}]}}"#;
        assert!(serde_json::from_str::<ChatRequest>(bad).is_err());
    }
}
