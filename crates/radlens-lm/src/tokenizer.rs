//! Byte-level BPE tokenizer built in memory from GGUF metadata (no hub download).
//!
//! The pipeline mirrors the Hugging Face `tokenizer.json` of GPT-2-style models:
//! vocabulary and merges from `tokenizer.ggml.tokens` / `tokenizer.ggml.merges`,
//! the GPT-2 byte-to-unicode mapping and pre-tokenizer regex
//! (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`),
//! preceded for `tokenizer.ggml.pre = "smollm"` by a split into individual digits,
//! and control tokens (token type 3, e.g. `<|im_start|>`) matched as single tokens.

use crate::error::{LmError, Result};
use crate::gguf::GgufFile;
use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

/// GGUF token type of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i64 = 3;

/// A byte-level BPE tokenizer with the model's special tokens.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_id: Option<u32>,
    eot_id: Option<u32>,
    bos_id: Option<u32>,
    add_bos: bool,
    special_ids: Vec<u32>,
}

fn tok_err(e: impl std::fmt::Display) -> LmError {
    LmError::Tokenizer(e.to_string())
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(*x as i64),
        Value::I8(x) => Some(*x as i64),
        Value::U16(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::U32(x) => Some(*x as i64),
        Value::I32(x) => Some(*x as i64),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

impl Tokenizer {
    /// Builds the tokenizer from the `tokenizer.ggml.*` metadata of `gguf`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let unsupported = |reason: String| LmError::Unsupported {
            path: gguf.path().to_path_buf(),
            reason,
        };
        let kind = gguf.string("tokenizer.ggml.model")?;
        if kind != "gpt2" {
            return Err(unsupported(format!(
                "tokenizer model `{kind}` (only byte-level BPE `gpt2` is supported)"
            )));
        }
        let pre = match gguf.metadata("tokenizer.ggml.pre") {
            Some(_) => gguf.string("tokenizer.ggml.pre")?,
            None => "gpt2",
        };
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "gpt2" | "default" => byte_level.into(),
            "smollm" | "starcoder" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            other => return Err(unsupported(format!("pre-tokenizer `{other}`"))),
        };

        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let merges = gguf
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tok_err(format!("malformed merge `{m}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let token_types: Vec<i64> = match gguf.metadata("tokenizer.ggml.token_type") {
            Some(Value::Array(arr)) => arr.iter().map(|v| integer(v).unwrap_or(1)).collect(),
            _ => Vec::new(),
        };
        let special_ids: Vec<u32> = token_types
            .iter()
            .zip(0..tokens.len() as u32)
            .filter(|(&ty, _)| ty == TOKEN_TYPE_CONTROL)
            .map(|(_, i)| i)
            .collect();
        let specials: Vec<AddedToken> = special_ids
            .iter()
            .map(|&i| AddedToken::from(tokens[i as usize].clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(tok_err)?;

        let id = |key: &str| -> Result<Option<u32>> {
            match gguf.metadata(key) {
                None => Ok(None),
                Some(_) => {
                    let id = gguf.usize(key)?;
                    if id >= tokens.len() {
                        return Err(tok_err(format!("{key} = {id} is outside the vocabulary")));
                    }
                    Ok(Some(id as u32))
                }
            }
        };
        Ok(Self {
            inner,
            eos_id: id("tokenizer.ggml.eos_token_id")?,
            eot_id: id("tokenizer.ggml.eot_token_id")?,
            bos_id: id("tokenizer.ggml.bos_token_id")?,
            add_bos: matches!(
                gguf.metadata("tokenizer.ggml.add_bos_token"),
                Some(Value::Bool(true))
            ),
            special_ids,
        })
    }

    /// Encodes `text`; special-token strings such as `<|im_start|>` become single ids.
    /// A BOS token is prepended only if the GGUF asks for it (`add_bos_token`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text_ids = self.encode_text(text)?;
        let mut ids = Vec::with_capacity(text_ids.len() + 1);
        if let (true, Some(bos)) = (self.add_bos, self.bos_id) {
            ids.push(bos);
        }
        ids.extend(text_ids);
        Ok(ids)
    }

    /// Encodes `text` alone, never prepending BOS (for pieces of a longer input).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes `ids` to text; `skip_special` drops control tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// Id of the token spelled `token`, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Spelling (byte-level unicode form) of token `id`.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// End-of-sequence id (`tokenizer.ggml.eos_token_id`).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// End-of-turn id (`tokenizer.ggml.eot_token_id`), for models whose turns do not end
    /// with EOS.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot_id
    }

    /// Beginning-of-sequence id (`tokenizer.ggml.bos_token_id`).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Ids of control tokens (GGUF token type 3).
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    /// Incremental decoder for streaming: feed ids one by one, get complete text pieces.
    pub fn stream(&self, skip_special: bool) -> TokenStream<'_> {
        TokenStream {
            tokenizer: self,
            skip_special,
            ids: Vec::new(),
            emitted: 0,
        }
    }
}

/// Incremental decoder that only emits text once it forms complete UTF-8 characters.
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    emitted: usize,
}

impl TokenStream<'_> {
    /// Adds `id` and returns the newly completed text, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        if text.len() > self.emitted
            && !text.ends_with('\u{FFFD}')
            && text.is_char_boundary(self.emitted)
        {
            let piece = text[self.emitted..].to_string();
            self.emitted = text.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }
}
