//! Tokenizer loading, chat-template rendering and token counting.
//!
//! A context is counted the way an OpenAI-compatible server counts it. The messages are rendered
//! with the model's chat template, with `add_generation_prompt = true` as vLLM sets it for chat
//! completions. The resulting text is encoded without adding special tokens, because the
//! template already wrote them. The template is rendered with minijinja, configured like
//! Hugging Face's Jinja environment (`trim_blocks`, `lstrip_blocks`, Python string methods).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::{Environment, Error as TemplateRenderError, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer as HfTokenizer;

use crate::openai::ChatMessage;

/// ChatML, used when the tokenizer ships no chat template (and by the built-in tokenizer).
const CHATML_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n\
{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const TEMPLATE_NAME: &str = "chat";

/// Origin of the tokenizer in use, recorded in the result JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum TokenizerSource {
    /// A `tokenizer.json` file or a directory that contains one.
    Path(PathBuf),
    /// The byte-level tokenizer built into clawperf (one token per UTF-8 byte).
    BuiltIn,
}

impl fmt::Display for TokenizerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerSource::Path(path) => write!(f, "{}", path.display()),
            TokenizerSource::BuiltIn => f.write_str("built-in byte-level tokenizer"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "tokenizer path {path} does not exist; pass a tokenizer.json file or a directory that contains one"
    )]
    NotFound { path: PathBuf },
    #[error(
        "directory {dir} contains no tokenizer.json; pass the model directory downloaded from the hub"
    )]
    NoTokenizerJson { dir: PathBuf },
    #[error("failed to load tokenizer {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("failed to read {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the chat template of {origin} does not compile")]
    Template {
        origin: String,
        #[source]
        source: TemplateRenderError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("failed to render the chat template")]
    Template(#[from] TemplateRenderError),
    #[error("failed to encode text: {0}")]
    Encode(String),
}

/// A tokenizer together with the chat template that the server applies before tokenizing.
///
/// Cloning is cheap: the vocabulary and the compiled template are shared.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<HfTokenizer>,
    template: Arc<Environment<'static>>,
    special_tokens: Arc<SpecialTokens>,
    source: TokenizerSource,
}

#[derive(Debug, Default)]
struct SpecialTokens {
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Resolves the tokenizer of a run: `--tokenizer` when given (it must exist), else `--model`
    /// when it names a local file or directory. Returns `None` otherwise, so the caller can fall
    /// back to [`Tokenizer::builtin`] and warn that counts are approximate.
    pub fn resolve(tokenizer: Option<&Path>, model: &str) -> Result<Option<Self>, TokenizerError> {
        if let Some(path) = tokenizer {
            return Self::from_path(path).map(Some);
        }
        let model_path = Path::new(model);
        if model_path.is_file() || model_path.join("tokenizer.json").is_file() {
            return Self::from_path(model_path).map(Some);
        }
        Ok(None)
    }

    /// Loads a `tokenizer.json` file, or a directory that contains `tokenizer.json`. The chat
    /// template and special tokens come from `tokenizer_config.json` (or `chat_template.jinja`)
    /// next to it; without one, ChatML is used.
    pub fn from_path(path: &Path) -> Result<Self, TokenizerError> {
        if !path.exists() {
            return Err(TokenizerError::NotFound {
                path: path.to_owned(),
            });
        }
        let (dir, json_path) = if path.is_dir() {
            let json_path = path.join("tokenizer.json");
            if !json_path.is_file() {
                return Err(TokenizerError::NoTokenizerJson {
                    dir: path.to_owned(),
                });
            }
            (path.to_owned(), json_path)
        } else {
            let dir = path.parent().map(Path::to_owned).unwrap_or_default();
            (dir, path.to_owned())
        };

        let inner = HfTokenizer::from_file(&json_path).map_err(|err| TokenizerError::Load {
            path: json_path.clone(),
            message: err.to_string(),
        })?;
        let config = read_tokenizer_config(&dir)?;
        let template_source = match (&config.chat_template, read_jinja_template(&dir)?) {
            (Some(template), _) => template.clone(),
            (None, Some(template)) => template,
            (None, None) => {
                tracing::debug!(dir = %dir.display(), "no chat template found; using ChatML");
                CHATML_TEMPLATE.to_owned()
            }
        };
        let template = compile_template(template_source, &dir.display().to_string())?;
        Ok(Self {
            inner: Arc::new(inner),
            template: Arc::new(template),
            special_tokens: Arc::new(SpecialTokens {
                bos_token: config.bos_token,
                eos_token: config.eos_token,
            }),
            source: TokenizerSource::Path(path.to_owned()),
        })
    }

    /// Builds the built-in tokenizer: byte-level BPE without merges (one token per UTF-8 byte)
    /// plus the ChatML special tokens, with the ChatML template. Its counts are exact for itself
    /// and approximate (several times too high) for any real model.
    pub fn builtin() -> Self {
        let inner = HfTokenizer::from_bytes(builtin_tokenizer_json())
            .expect("the built-in tokenizer definition is valid");
        let template = compile_template(CHATML_TEMPLATE.to_owned(), "the built-in tokenizer")
            .expect("the built-in ChatML template compiles");
        Self {
            inner: Arc::new(inner),
            template: Arc::new(template),
            special_tokens: Arc::new(SpecialTokens {
                bos_token: None,
                eos_token: Some("<|im_end|>".to_owned()),
            }),
            source: TokenizerSource::BuiltIn,
        }
    }

    /// Returns whether this is the built-in tokenizer, which [`encode`](Self::encode) and
    /// [`count`](Self::count) run without the `tokenizers` machinery.
    pub fn is_builtin(&self) -> bool {
        self.source == TokenizerSource::BuiltIn
    }

    pub fn source(&self) -> &TokenizerSource {
        &self.source
    }

    /// Returns the underlying `tokenizers` tokenizer, for vocabulary inspection.
    pub fn inner(&self) -> &HfTokenizer {
        &self.inner
    }

    /// Encodes text without adding special tokens (special-token strings in the text, such as
    /// `<|im_start|>`, are still recognised as single tokens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EncodeError> {
        if self.is_builtin() {
            let mut ids = Vec::with_capacity(text.len());
            builtin_encode(text, |id| ids.push(id));
            return Ok(ids);
        }
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|err| EncodeError::Encode(err.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Returns the number of tokens `text` encodes to, without special tokens added.
    pub fn count(&self, text: &str) -> Result<usize, EncodeError> {
        if self.is_builtin() {
            let mut count = 0;
            builtin_encode(text, |_| count += 1);
            return Ok(count);
        }
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|err| EncodeError::Encode(err.to_string()))?;
        Ok(encoding.len())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, EncodeError> {
        self.inner
            .decode(ids, false)
            .map_err(|err| EncodeError::Encode(err.to_string()))
    }

    /// Renders the chat template over `messages` with the generation prompt appended.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, EncodeError> {
        let template = self.template.get_template(TEMPLATE_NAME)?;
        let rendered = template.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.special_tokens.bos_token.as_deref().unwrap_or(""),
            eos_token => self.special_tokens.eos_token.as_deref().unwrap_or(""),
        })?;
        Ok(rendered)
    }

    /// Renders the chat template and encodes the result into the prompt token ids a server gets.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, EncodeError> {
        self.encode(&self.apply_chat_template(messages)?)
    }

    /// Returns the number of prompt tokens a server counts for `messages`.
    pub fn count_chat(&self, messages: &[ChatMessage]) -> Result<usize, EncodeError> {
        self.count(&self.apply_chat_template(messages)?)
    }
}

#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default, deserialize_with = "template_field")]
    chat_template: Option<String>,
    #[serde(default, deserialize_with = "token_field")]
    bos_token: Option<String>,
    #[serde(default, deserialize_with = "token_field")]
    eos_token: Option<String>,
}

fn read_tokenizer_config(dir: &Path) -> Result<TokenizerConfig, TokenizerError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(TokenizerConfig::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|source| TokenizerError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::ParseConfig { path, source })
}

fn read_jinja_template(dir: &Path) -> Result<Option<String>, TokenizerError> {
    let path = dir.join("chat_template.jinja");
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|source| TokenizerError::ReadConfig { path, source })
}

/// Accepts `chat_template` as a string or as the list of named templates that some models
/// ship (`[{"name": "default", "template": "..."}]`), taking the one named `default`.
fn template_field<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(de)?;
    Ok(match value {
        Some(serde_json::Value::String(template)) => Some(template),
        Some(serde_json::Value::Array(entries)) => entries.iter().find_map(|entry| {
            (entry.get("name")?.as_str()? == "default")
                .then(|| entry.get("template")?.as_str().map(str::to_owned))
                .flatten()
        }),
        _ => None,
    })
}

/// Accepts a special token written as a string or as an `AddedToken` object with `content`.
fn token_field<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(de)?;
    Ok(match value {
        Some(serde_json::Value::String(token)) => Some(token),
        Some(serde_json::Value::Object(map)) => map
            .get("content")
            .and_then(|content| content.as_str())
            .map(str::to_owned),
        _ => None,
    })
}

fn compile_template(source: String, origin: &str) -> Result<Environment<'static>, TokenizerError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_template_owned(TEMPLATE_NAME, source)
        .map_err(|source| TokenizerError::Template {
            origin: origin.to_owned(),
            source,
        })?;
    Ok(env)
}

fn raise_exception(message: String) -> Result<Value, TemplateRenderError> {
    Err(TemplateRenderError::new(
        ErrorKind::InvalidOperation,
        message,
    ))
}

/// Templates (Llama 3) print today's date; a fixed date keeps prompts, and so token counts
/// and prefix-cache behaviour, identical from run to run.
fn strftime_now(_format: String) -> String {
    "01 Jan 2026".to_owned()
}

/// GPT-2's reversible mapping from bytes to printable characters, which byte-level BPE
/// vocabularies are written in.
fn byte_level_alphabet() -> Vec<char> {
    let printable = |byte: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&byte)
            || (0xA1..=0xAC).contains(&byte)
            || (0xAE..=0xFF).contains(&byte)
    };
    let mut shifted = 0;
    (0u32..256)
        .map(|byte| {
            if printable(byte) {
                char::from_u32(byte).expect("Latin-1 code points are valid chars")
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).expect("code points 256..=324 are valid chars")
            }
        })
        .collect()
}

/// The built-in tokenizer's added tokens, with their ids after the 256 byte ids.
const BUILTIN_ADDED_TOKENS: [(&str, u32); 3] = [
    ("<|im_start|>", 256),
    ("<|im_end|>", 257),
    ("<|endoftext|>", 258),
];

/// Encodes `text` as the built-in tokenizer's definition does, calling `emit` with each id. An
/// added token's text becomes its id, and every other byte the id equal to its value, because
/// the vocabulary lists the byte-level alphabet in byte order and has no merges. None of
/// the added tokens is a prefix of another, so taking them left to right matches the
/// leftmost-longest matching of `tokenizers`. This is one pass over the bytes, where the
/// general encoder costs tens of times more, and the mock encodes every prompt it serves.
fn builtin_encode(text: &str, mut emit: impl FnMut(u32)) {
    let bytes = text.as_bytes();
    let mut position = 0;
    while position < bytes.len() {
        let rest = &bytes[position..];
        let added = if rest.starts_with(b"<|") {
            BUILTIN_ADDED_TOKENS
                .iter()
                .find(|(content, _)| rest.starts_with(content.as_bytes()))
        } else {
            None
        };
        match added {
            Some((content, id)) => {
                emit(*id);
                position += content.len();
            }
            None => {
                emit(u32::from(bytes[position]));
                position += 1;
            }
        }
    }
}

fn builtin_tokenizer_json() -> Vec<u8> {
    let alphabet = byte_level_alphabet();
    let vocab: serde_json::Map<String, serde_json::Value> = alphabet
        .iter()
        .enumerate()
        .map(|(id, ch)| (ch.to_string(), serde_json::Value::from(id)))
        .collect();
    let special = |id: u32, content: &str| {
        serde_json::json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        })
    };
    let definition = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": BUILTIN_ADDED_TOKENS.map(|(content, id)| special(id, content)),
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": []
        }
    });
    serde_json::to_vec(&definition).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::Role;

    #[test]
    fn builtin_counts_one_token_per_byte() {
        let tokenizer = Tokenizer::builtin();
        assert_eq!(tokenizer.count("hello world").unwrap(), 11);
        assert_eq!(tokenizer.count("é").unwrap(), 2);
    }

    #[test]
    fn builtin_round_trips_text() {
        let tokenizer = Tokenizer::builtin();
        let text = "multi-byte ✓ text\nwith lines";
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
    }

    #[test]
    fn builtin_fast_path_matches_its_definition() {
        let tokenizer = Tokenizer::builtin();
        let texts = [
            "",
            "plain ascii",
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            "<|im_start|<|im_end|><|endoftext|><|endoftext|",
            "<<|im_end|>|>é✓<|",
            "é<|im_start|>你好\r\n\u{0}\u{7f}",
        ];
        for text in texts {
            let definition = tokenizer.inner().encode_fast(text, false).unwrap();
            assert_eq!(
                tokenizer.encode(text).unwrap(),
                definition.get_ids(),
                "{text:?}"
            );
            assert_eq!(tokenizer.count(text).unwrap(), definition.len(), "{text:?}");
        }
        // Every byte value appears: ASCII, the continuation and two-byte lead bytes below
        // U+0800, and the lead bytes of three- and four-byte characters.
        let every_byte: String = (0..0x800)
            .chain((0x0800..=0xF000).step_by(0x1000))
            .chain((0x10000..=0x100000).step_by(0x40000))
            .filter_map(char::from_u32)
            .collect();
        let definition = tokenizer
            .inner()
            .encode_fast(every_byte.as_str(), false)
            .unwrap();
        assert_eq!(tokenizer.encode(&every_byte).unwrap(), definition.get_ids());
    }

    #[test]
    fn builtin_recognises_chatml_special_tokens() {
        let tokenizer = Tokenizer::builtin();
        assert_eq!(tokenizer.encode("<|im_start|>").unwrap(), vec![256]);
    }

    #[test]
    fn chatml_template_renders_generation_prompt() {
        let tokenizer = Tokenizer::builtin();
        let messages = [
            ChatMessage::new(Role::System, "S"),
            ChatMessage::new(Role::User, "U"),
        ];
        let rendered = tokenizer.apply_chat_template(&messages).unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn missing_path_is_reported() {
        let err = Tokenizer::from_path(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }

    #[test]
    fn resolve_without_local_model_returns_none() {
        let resolved = Tokenizer::resolve(None, "Qwen/Qwen3-8B").unwrap();
        assert!(resolved.is_none());
    }
}
