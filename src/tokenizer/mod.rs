//! Thin wrapper over the `tokenizers` crate: loading from an HF directory or
//! from GGUF metadata, encoding batches the way transformers does.

use std::path::Path;

pub mod gguf;

use serde_json::Value;

use crate::error::{EpsvecError, Result};
use crate::gguf::GgufFile;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The Jinja chat template, if the checkpoint has one.
    pub chat_template: Option<String>,
}

fn tok_err(e: impl std::fmt::Display) -> EpsvecError {
    EpsvecError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Padding and truncation that a `tokenizer.json` may carry are switched
    /// off: a text's ids must depend on that text alone (padding to the
    /// longest of a batch would make a private record's prompt depend on the
    /// other records), and epsvec cuts texts itself.
    pub fn new(mut inner: tokenizers::Tokenizer, chat_template: Option<String>) -> Self {
        inner.with_padding(None);
        inner.with_truncation(None).expect("removing truncation cannot fail");
        Self { inner, chat_template }
    }

    /// `tokenizer.json`, with the chat template from `chat_template.jinja`
    /// (transformers 5) or `tokenizer_config.json` (older checkpoints).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(EpsvecError::ModelLoad(format!("no tokenizer.json in {}", dir.display())));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| EpsvecError::corrupt(&path, format!("invalid tokenizer.json: {e}")))?;
        Ok(Self::new(inner, read_chat_template(dir)?))
    }

    /// The tokenizer a GGUF file describes, built as transformers builds it.
    pub fn from_gguf(spec: &gguf::GgufTokenizerSpec, file: &GgufFile) -> Result<Self> {
        let inner = gguf::tokenizer_from_gguf(spec)?;
        let template = file.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(String::from);
        Ok(Self::new(inner, template))
    }

    /// Token ids of each text, with the tokenizer's special tokens (as
    /// transformers' `tokenizer(texts)` does by default).
    pub fn encode_batch(&self, texts: &[String], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        let encodings = self.inner.encode_batch(texts.to_vec(), add_special_tokens).map_err(tok_err)?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Tokens the tokenizer knows, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(tok_err)
    }
}

fn read_chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja).map(Some).map_err(|e| EpsvecError::io(&jinja, e));
    }
    let config = dir.join("tokenizer_config.json");
    if !config.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&config).map_err(|e| EpsvecError::io(&config, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| EpsvecError::corrupt(&config, format!("invalid tokenizer_config.json: {e}")))?;
    Ok(match value.get("chat_template") {
        Some(Value::String(t)) => Some(t.clone()),
        // Several named templates: the one called "default".
        Some(Value::Array(items)) => items
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|i| i.get("template"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    })
}
