//! ChatML prompt formatting (the template SmolLM2 and many small models use).
//!
//! GGUF files carry their chat template as Jinja (`tokenizer.chat_template`). Rather
//! than embedding a Jinja engine, this module recognises ChatML templates
//! (`<|im_start|>role\ncontent<|im_end|>\n`), reads the default system prompt
//! that the template inserts when a conversation has none, and names the tokens a
//! reply in this format ends with.

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;

/// System prompt used when the GGUF has no chat template (SmolLM2's default).
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
/// End of a whole text: ChatML models (SmolLM2, Qwen) keep their base model's document
/// separator and may emit it instead of, or right after, the end of their turn.
const END_OF_TEXT: &str = "<|endoftext|>";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
}

/// A ChatML template with an optional default system prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    default_system: Option<String>,
}

impl Default for ChatTemplate {
    fn default() -> Self {
        Self {
            default_system: Some(DEFAULT_SYSTEM_PROMPT.to_string()),
        }
    }
}

impl ChatTemplate {
    /// A ChatML template inserting `default_system` when a conversation has no system turn.
    pub fn chatml(default_system: Option<String>) -> Self {
        Self { default_system }
    }

    /// Reads `tokenizer.chat_template`: errors if it is not ChatML; without a template,
    /// falls back to ChatML with [`DEFAULT_SYSTEM_PROMPT`].
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        match gguf.metadata("tokenizer.chat_template") {
            None => Ok(Self::default()),
            Some(_) => {
                Self::from_jinja(gguf.string("tokenizer.chat_template")?).map_err(|reason| {
                    LmError::Unsupported {
                        path: gguf.path().to_path_buf(),
                        reason,
                    }
                })
            }
        }
    }

    /// Recognises a ChatML Jinja template and extracts its literal default system prompt.
    pub fn from_jinja(template: &str) -> std::result::Result<Self, String> {
        if !template.contains(IM_START) || !template.contains(IM_END) {
            return Err("chat template is not ChatML (<|im_start|>/<|im_end|>)".to_string());
        }
        let marker = format!("{IM_START}system\n");
        let default_system = template.find(&marker).and_then(|i| {
            let rest = &template[i + marker.len()..];
            rest.find(IM_END).map(|j| rest[..j].to_string())
        });
        Ok(Self { default_system })
    }

    /// Tokens with which a reply in this format ends (end of turn, end of text), so that
    /// generation stops there; the tokenizer maps them to ids.
    pub fn stop_markers(&self) -> &'static [&'static str] {
        &[IM_END, END_OF_TEXT]
    }

    /// The system prompt inserted when the conversation starts without one.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The text a single user turn's content follows (system turn and user header), so
    /// that callers can tell template tokens from content tokens.
    pub fn user_prefix(&self) -> String {
        let full = self.render(&[Message::user("")], false);
        let end = format!("{IM_END}\n");
        full.strip_suffix(&end).unwrap_or(&full).to_string()
    }

    /// Renders `messages`, ending with `<|im_start|>assistant\n` if `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        let needs_system = messages.first().is_some_and(|m| m.role != "system");
        if let (true, Some(system)) = (needs_system, &self.default_system) {
            out.push_str(&format!("{IM_START}system\n{system}{IM_END}\n"));
        }
        for m in messages {
            out.push_str(&format!("{IM_START}{}\n{}{IM_END}\n", m.role, m.content));
        }
        if add_generation_prompt {
            out.push_str(&format!("{IM_START}assistant\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_default_system_prompt() {
        let t = ChatTemplate::from_jinja(SMOLLM2).unwrap();
        assert_eq!(t.default_system(), Some(DEFAULT_SYSTEM_PROMPT));
        assert_eq!(
            t.render(&[Message::user("Hi")], true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn explicit_system_prompt_replaces_default() {
        let t = ChatTemplate::default();
        let s = t.render(&[Message::system("Be brief."), Message::user("Hi")], false);
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn user_prefix_precedes_the_content() {
        let t = ChatTemplate::chatml(Some("Sys.".into()));
        let prefix = t.user_prefix();
        assert_eq!(
            prefix,
            "<|im_start|>system\nSys.<|im_end|>\n<|im_start|>user\n"
        );
        let full = t.render(&[Message::user("Hi")], false);
        assert_eq!(full, format!("{prefix}Hi<|im_end|>\n"));
    }

    #[test]
    fn non_chatml_template_is_rejected() {
        assert!(ChatTemplate::from_jinja("[INST] {{ content }} [/INST]").is_err());
    }
}
