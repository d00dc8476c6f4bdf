//! Language models as explainers and judges: any OpenAI-compatible chat endpoint
//! (through radlens-lm's rate-limited, retrying client) or a local GGUF, behind one
//! [`ChatModel`] trait, and the prompts delphi's method asks them.
//!
//! The explainer sees the latent's examples with the activating tokens between `<<` and
//! `>>` and ends its reply with `[EXPLANATION]: ...`. The judges see an explanation and a
//! numbered batch of texts and answer with a list of 1s and 0s: detection asks which
//! texts the latent fires on, fuzzing which texts have the *right* tokens marked. A reply
//! that cannot be read as such a list counts as wrong on every text of the batch (and is
//! kept in the scores' details), as delphi counts unparsable answers.

use super::contexts::Context;
use crate::{InterpError, Result};
use radlens_lm::openai::{ChatMessage, ChatRequest};
use radlens_lm::{ChatClient, GenerationConfig, Hooks, LanguageModel, Message};
use std::sync::Arc;

/// A chat model answering one system + user turn.
pub trait ChatModel: Sync {
    /// Recorded with what it writes, e.g. the endpoint's model name or the GGUF's file name.
    fn name(&self) -> &str;
    /// The reply to `user` under `system`, greedy, at most `max_tokens` tokens.
    fn reply(&self, system: &str, user: &str, max_tokens: usize) -> Result<String>;
}

/// A model behind an OpenAI-compatible endpoint.
pub struct EndpointModel {
    pub client: ChatClient,
    pub model: String,
}

impl ChatModel for EndpointModel {
    fn name(&self) -> &str {
        &self.model
    }

    fn reply(&self, system: &str, user: &str, max_tokens: usize) -> Result<String> {
        let request = ChatRequest {
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            seed: Some(0),
            ..ChatRequest::new(
                &self.model,
                vec![ChatMessage::system(system), ChatMessage::user(user)],
            )
        };
        let reply = self.client.chat(&request)?;
        reply
            .choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .ok_or_else(|| {
                InterpError::invalid(format!(
                    "endpoint model {}: a reply without choices",
                    self.model
                ))
            })
    }
}

/// A local GGUF model run by radlens-lm.
pub struct LocalModel {
    pub lm: Arc<LanguageModel>,
    pub name: String,
}

impl ChatModel for LocalModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn reply(&self, system: &str, user: &str, max_tokens: usize) -> Result<String> {
        let text = self
            .lm
            .chat
            .render(&[Message::system(system), Message::user(user)], true);
        let ids = self.lm.tokenizer.encode(&text)?;
        let window = self.lm.model.config().context_length;
        if ids.len() + max_tokens > window {
            return Err(InterpError::invalid(format!(
                "{}: the prompt ({} tokens) and {max_tokens} new tokens exceed the model's \
                 context of {window} tokens (show fewer examples)",
                self.name,
                ids.len()
            )));
        }
        let cfg = GenerationConfig {
            max_tokens,
            temperature: 0.0,
            ..GenerationConfig::default()
        };
        Ok(self
            .lm
            .generate(&ids, &cfg, &mut Hooks::new(), |_| {})?
            .text)
    }
}

const EXPLAINER_SYSTEM: &str = "You are studying one feature of a language model's internal \
representation of radiology reports. You are shown text excerpts where the feature is \
active; the tokens it is active on are marked like <<this>>, and a run of consecutive \
active tokens shares one pair of marks. Find what the marked tokens, and the text just \
before them, have in common. Be concise and specific: describe the pattern, do not list \
every example. End your reply with one line of the form\n[EXPLANATION]: <a short description>";

/// The explainer's prompt for `examples`.
pub fn explainer_prompt(examples: &[Context]) -> String {
    let mut out = String::from("Excerpts:\n");
    for (i, c) in examples.iter().enumerate() {
        out.push_str(&format!("Example {}: {}\n", i + 1, c.marked(&c.active())));
    }
    out.push_str("\nWhat does the feature detect?");
    out
}

/// Explains with `model`; the text after the last `[EXPLANATION]:` marker, else the
/// reply's last non-empty line.
pub fn explain(model: &dyn ChatModel, examples: &[Context], max_tokens: usize) -> Result<String> {
    let reply = model.reply(EXPLAINER_SYSTEM, &explainer_prompt(examples), max_tokens)?;
    Ok(parse_explanation(&reply))
}

fn parse_explanation(reply: &str) -> String {
    const MARK: &str = "[EXPLANATION]:";
    match reply.rfind(MARK) {
        Some(at) => reply[at + MARK.len()..].trim().to_string(),
        None => reply
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("")
            .to_string(),
    }
}

/// The two judging tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeTask {
    /// Does the feature fire anywhere in the text?
    Detection,
    /// Are the marked tokens the ones the feature fires on?
    Fuzzing,
}

impl JudgeTask {
    fn system(self) -> &'static str {
        match self {
            JudgeTask::Detection => {
                "You check explanations of a language-model feature. You get the \
                 explanation and numbered text excerpts. For each excerpt decide whether the \
                 feature, as explained, would be active somewhere in it. Answer only with a \
                 list of 1 (active) and 0 (not active), one per excerpt, e.g. [1, 0, 0]."
            }
            JudgeTask::Fuzzing => {
                "You check explanations of a language-model feature. You get the \
                 explanation and numbered text excerpts with some tokens marked like \
                 <<this>>. For each excerpt decide whether the marked tokens are ones the \
                 feature, as explained, is active on. Answer only with a list of 1 (correctly \
                 marked) and 0 (wrongly marked), one per excerpt, e.g. [1, 0, 0]."
            }
        }
    }
}

/// Asks `model` to judge `texts` against `explanation`; the verdicts in order, or `None`
/// with the raw reply when it is not a list of as many 0s and 1s.
pub fn judge(
    model: &dyn ChatModel,
    task: JudgeTask,
    explanation: &str,
    texts: &[String],
) -> Result<(Option<Vec<bool>>, String)> {
    let mut user = format!("Explanation: {explanation}\n\nExcerpts:\n");
    for (i, t) in texts.iter().enumerate() {
        user.push_str(&format!("{}. {t}\n", i + 1));
    }
    user.push_str(&format!(
        "\nAnswer with a list of {} numbers (1 or 0).",
        texts.len()
    ));
    let reply = model.reply(task.system(), &user, 8 + 4 * texts.len())?;
    Ok((parse_verdicts(&reply, texts.len()), reply))
}

/// The first bracketed list of `n` 0s and 1s in `reply`.
fn parse_verdicts(reply: &str, n: usize) -> Option<Vec<bool>> {
    let open = reply.find('[')?;
    let close = open + reply[open..].find(']')?;
    let verdicts: Vec<bool> = reply[open + 1..close]
        .split(',')
        .map(|v| match v.trim() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (verdicts.len() == n).then_some(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_and_verdicts_are_read_from_replies() {
        assert_eq!(
            parse_explanation("Step 1: ...\n[EXPLANATION]: the word effusion\n"),
            "the word effusion"
        );
        assert_eq!(parse_explanation("fluid words\n\n"), "fluid words");
        assert_eq!(
            parse_verdicts("Sure: [1, 0,1]", 3),
            Some(vec![true, false, true])
        );
        assert_eq!(parse_verdicts("[1, 0]", 3), None);
        assert_eq!(parse_verdicts("[1, 2, 0]", 3), None);
        assert_eq!(parse_verdicts("1 0 1", 3), None);
    }
}
