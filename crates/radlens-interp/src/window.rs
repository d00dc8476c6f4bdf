//! Report text to model inputs. Each report is tokenized alone and cut into windows of at
//! most `context_tokens` content tokens; every window starts with the template's prefix
//! (a document separator for raw text, the system turn and user header for chat, a request
//! and the assistant header for a reply, after as many example exchanges as `shots`), whose
//! tokens are never harvested, scored or spliced. The prefix runs through the model once;
//! each window continues its keys and values ([`Windower::prefix_cache`]).

use crate::{InterpError, Result};
use radlens_lm::{KvCache, LanguageModel, Message};
use serde::{Deserialize, Serialize};

/// How report text is presented to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The document separator, then the text: `<|endoftext|>` when the vocabulary has it,
    /// else BOS (when the model has one). SmolLM2's BOS is `<|im_start|>`, which opens a
    /// chat turn; a report after it reads as an unclosed chat header, not as a document.
    Raw,
    /// The text as the user turn of the model's chat template.
    Chat,
    /// The text as the assistant's reply to [`REPORT_REQUEST`] in the model's chat template:
    /// the context in which the model writes a report when asked for one (as `sae steer`
    /// asks), so that from its first token the model knows it is reading a chest X-ray
    /// report, which a report alone after a document separator does not tell it.
    Reply,
}

/// The user turn a [`Template::Reply`] window answers.
pub const REPORT_REQUEST: &str = "Write the findings and impression of a chest X-ray report.";

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "raw" => Ok(Self::Raw),
            "chat" => Ok(Self::Chat),
            "reply" => Ok(Self::Reply),
            _ => Err(format!("unknown template '{s}' (raw, chat or reply)")),
        }
    }
}

/// The token ids of a chat prompt for `request` after one exchange per example:
/// [`REPORT_REQUEST`] answered by the example report. With no examples, the model's
/// single-turn prompt.
pub fn few_shot_prompt(lm: &LanguageModel, examples: &[String], request: &str) -> Result<Vec<u32>> {
    let mut turns = Vec::with_capacity(2 * examples.len() + 1);
    for text in examples {
        turns.push(Message::user(REPORT_REQUEST));
        turns.push(Message::new("assistant", text.as_str()));
    }
    turns.push(Message::user(request));
    Ok(lm.tokenizer.encode(&lm.chat.render(&turns, true))?)
}

/// The token GPT-2-style vocabularies (SmolLM2's among them) put between documents.
pub const DOCUMENT_SEPARATOR: &str = "<|endoftext|>";

/// Template and window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub template: Template,
    /// Content tokens per window at most.
    pub context_tokens: usize,
    /// Example exchanges before a [`Template::Reply`] window: [`REPORT_REQUEST`] answered
    /// by one of the first `shots` training reports each, so that the model has read the
    /// corpus' register before the report it reads (few-shot, as a report-writing prompt
    /// would show it). 0 (not recorded) for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shots: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One model input: prefix tokens then a run of a report's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub ids: Vec<u32>,
    /// Index in `ids` of the first content token.
    pub content_start: usize,
    /// Index within the report's tokens of the first content token.
    pub first_position: usize,
}

impl Window {
    /// The report's tokens in this window.
    pub fn content(&self) -> &[u32] {
        &self.ids[self.content_start..]
    }
}

/// Cuts report texts into [`Window`]s for one model.
#[derive(Debug, Clone)]
pub struct Windower {
    prefix: Vec<u32>,
    context_tokens: usize,
    /// The prefix's keys and values (the model run on it unedited).
    prefix_cache: KvCache,
}

impl Windower {
    /// The windower of `spec`; `shots` are the example reports' texts, as many as
    /// `spec.shots`.
    pub fn new(lm: &LanguageModel, spec: &WindowSpec, shots: &[String]) -> Result<Self> {
        if spec.context_tokens == 0 {
            return Err(InterpError::invalid(
                "the context window must hold at least one token",
            ));
        }
        if shots.len() != spec.shots {
            return Err(InterpError::invalid(format!(
                "{} example reports for a template with {} shots",
                shots.len(),
                spec.shots
            )));
        }
        if spec.shots > 0 && spec.template != Template::Reply {
            return Err(InterpError::invalid(
                "example reports (shots) go with the reply template only",
            ));
        }
        let prefix = match spec.template {
            Template::Raw => lm
                .tokenizer
                .token_id(DOCUMENT_SEPARATOR)
                .or(lm.tokenizer.bos_id())
                .into_iter()
                .collect(),
            Template::Chat => lm.tokenizer.encode_text(&lm.chat.user_prefix())?,
            Template::Reply => few_shot_prompt(lm, shots, REPORT_REQUEST)?,
        };
        let limit = lm.model.config().context_length;
        if prefix.len() + spec.context_tokens > limit {
            return Err(InterpError::invalid(format!(
                "{} prefix tokens + a {}-token window exceed the model's context length {limit}",
                prefix.len(),
                spec.context_tokens
            )));
        }
        let mut prefix_cache = lm.model.new_cache();
        if !prefix.is_empty() {
            lm.model
                .forward_last(&prefix, &mut prefix_cache, &mut radlens_lm::Hooks::new())?;
        }
        Ok(Self {
            prefix,
            context_tokens: spec.context_tokens,
            prefix_cache,
        })
    }

    /// The template tokens every window starts with.
    pub fn prefix(&self) -> &[u32] {
        &self.prefix
    }

    /// The prefix's keys and values: a window's content fed after (a clone of) them gives
    /// the same outputs as the whole window, without running the prefix again.
    pub fn prefix_cache(&self) -> &KvCache {
        &self.prefix_cache
    }

    /// The windows of `text` (none for text without tokens).
    pub fn windows(&self, lm: &LanguageModel, text: &str) -> Result<Vec<Window>> {
        let tokens = lm.tokenizer.encode_text(text)?;
        Ok(cut(&self.prefix, self.context_tokens, &tokens))
    }
}

/// `tokens` in runs of at most `context_tokens`, each after `prefix`.
fn cut(prefix: &[u32], context_tokens: usize, tokens: &[u32]) -> Vec<Window> {
    tokens
        .chunks(context_tokens)
        .enumerate()
        .map(|(i, chunk)| {
            let mut ids = prefix.to_vec();
            ids.extend_from_slice(chunk);
            Window {
                ids,
                content_start: prefix.len(),
                first_position: i * context_tokens,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_tokens_once_after_the_prefix() {
        let got = cut(&[1, 2], 3, &[10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].ids, [1, 2, 10, 11, 12]);
        assert_eq!(got[2].ids, [1, 2, 16]);
        assert_eq!(got[2].first_position, 6);
        let content: Vec<u32> = got.iter().flat_map(|w| w.content().to_vec()).collect();
        assert_eq!(content, [10, 11, 12, 13, 14, 15, 16]);
        assert!(cut(&[1, 2], 3, &[]).is_empty());
    }
}
