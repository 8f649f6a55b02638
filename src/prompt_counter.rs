//! Prompt-token counts of one growing conversation, re-encoding only the text that changed
//! since the previous count.
//!
//! A conversation's rendered prompt mostly repeats the previous turn's prompt, and encoding a
//! 200k-token prompt again each turn costs tens of milliseconds of CPU per user. The count here
//! is exact all the same, because of how `tokenizers` encodes: it first splits the text at
//! every added token (such as `<|im_start|>`), then normalizes, pre-tokenizes and encodes each
//! piece between them on its own. The tokens up to the end of an added token therefore depend
//! only on the text up to there, plus the next few bytes that decide which added tokens match.
//!
//! An *anchor* is an added token that matches the raw text as it is: not normalized, stripping
//! no whitespace, not whole-word only. After each count the counter keeps a checkpoint at every
//! anchor. A checkpoint stores where the anchor ends, how many tokens the prompt has up to and
//! including it, and a hash of the text up to `margin` bytes past it, `margin` being the
//! length of the longest added token. The next count walks the checkpoints while the new text
//! hashes the same, keeps the last one that matches, and encodes the anchor's text followed by
//! the rest of the new prompt. The encoding starts at the anchor, not right after it, because
//! pre-tokenizers such as `Metaspace` with `prepend_scheme: first` treat the sequence's first
//! piece differently, and in the whole prompt the piece after the anchor is not the first. The
//! total is the checkpoint's count plus the new encoding's length minus the anchor.
//!
//! With no checkpoint that matches (the first turn, or a compaction that rewrote the start of
//! the prompt) the whole prompt is encoded. A 64-bit hash that collides would reuse a count that
//! does not belong to the text. At a few counts per turn, that is not expected in practice.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use crate::openai::ChatMessage;
use crate::tokenizer::{EncodeError, Tokenizer};

/// The added tokens a prompt can be split at, and the margin their matching needs.
#[derive(Debug)]
struct Anchors {
    /// Anchor token ids and their texts.
    texts: HashMap<u32, String>,
    /// The length in bytes of the longest added token.
    margin: usize,
}

impl Anchors {
    fn of(tokenizer: &Tokenizer) -> Self {
        let added = tokenizer.inner().get_added_tokens_decoder();
        let margin = added
            .values()
            .map(|token| token.content.len())
            .max()
            .unwrap_or(0);
        let texts = added
            .into_iter()
            .filter(|(_, token)| {
                !token.normalized && !token.lstrip && !token.rstrip && !token.single_word
            })
            .map(|(id, token)| (id, token.content))
            .collect();
        Self { texts, margin }
    }
}

/// The prompt as far as the end of one anchor.
#[derive(Debug, Clone)]
struct Checkpoint {
    /// The anchor's token id.
    anchor: u32,
    /// The byte offset just past the anchor.
    end: usize,
    /// Tokens of the prompt up to and including the anchor.
    tokens: usize,
    /// The end of the hashed text: `end` plus the margin.
    hash_end: usize,
    /// Hash of the text up to `hash_end`.
    hash: u64,
}

/// Counts the prompts of one conversation, as [`Tokenizer::count_chat`] does, reusing the
/// previous prompt's count up to where the new one differs.
#[derive(Debug, Clone)]
pub struct PromptCounter {
    tokenizer: Tokenizer,
    anchors: Arc<Anchors>,
    checkpoints: Vec<Checkpoint>,
}

impl PromptCounter {
    pub fn new(tokenizer: Tokenizer) -> Self {
        let anchors = Arc::new(Anchors::of(&tokenizer));
        Self {
            tokenizer,
            anchors,
            checkpoints: Vec::new(),
        }
    }

    /// Returns the number of prompt tokens a server counts for `messages`.
    pub fn count_chat(&mut self, messages: &[ChatMessage]) -> Result<usize, EncodeError> {
        let text = self.tokenizer.apply_chat_template(messages)?;
        self.count(&text)
    }

    /// Returns the number of tokens `text` encodes to, without special tokens added.
    pub fn count(&mut self, text: &str) -> Result<usize, EncodeError> {
        let (matched, hasher, hashed) = self.matching_checkpoints(text);
        self.checkpoints.truncate(matched);
        if let Some(base) = self.checkpoints.last().cloned() {
            let anchor_text = &self.anchors.texts[&base.anchor];
            let mut input = String::with_capacity(anchor_text.len() + text.len() - base.end);
            input.push_str(anchor_text);
            input.push_str(&text[base.end..]);
            let encoding = self.encode(&input)?;
            if encoding.get_ids().first() == Some(&base.anchor) {
                // Token `i` of `input` is token `base.tokens - 1 + i` of the prompt, and byte
                // `j` of `input` is byte `base.end - anchor_text.len() + j` of `text`.
                let offset = base.end - anchor_text.len();
                self.add_checkpoints(text, &encoding, base.tokens - 1, offset, hasher, hashed);
                return Ok(base.tokens - 1 + encoding.len());
            }
            // The text no longer starts with the anchor's token; the checkpoints do not hold.
            self.checkpoints.clear();
        }
        let encoding = self.encode(text)?;
        self.add_checkpoints(text, &encoding, 0, 0, DefaultHasher::new(), 0);
        Ok(encoding.len())
    }

    fn encode(&self, text: &str) -> Result<tokenizers::Encoding, EncodeError> {
        self.tokenizer
            .inner()
            .encode(text, false)
            .map_err(|err| EncodeError::Encode(err.to_string()))
    }

    /// Returns how many checkpoints `text` matches, with the hasher state after the last
    /// matching one and the number of bytes it has hashed.
    fn matching_checkpoints(&self, text: &str) -> (usize, DefaultHasher, usize) {
        let bytes = text.as_bytes();
        let mut hasher = DefaultHasher::new();
        let mut hashed = 0;
        let mut matched = 0;
        for checkpoint in &self.checkpoints {
            if checkpoint.hash_end > bytes.len() {
                break;
            }
            let mut next = hasher.clone();
            next.write(&bytes[hashed..checkpoint.hash_end]);
            if next.finish() != checkpoint.hash {
                break;
            }
            hasher = next;
            hashed = checkpoint.hash_end;
            matched += 1;
        }
        (matched, hasher, hashed)
    }

    /// Adds a checkpoint at every anchor in `encoding` (after its first token when that is the
    /// kept checkpoint's anchor) whose margin fits inside `text`. `token_base` and
    /// `byte_offset` place the encoding in the prompt; `hasher` has hashed `text[..hashed]`.
    fn add_checkpoints(
        &mut self,
        text: &str,
        encoding: &tokenizers::Encoding,
        token_base: usize,
        byte_offset: usize,
        mut hasher: DefaultHasher,
        mut hashed: usize,
    ) {
        let bytes = text.as_bytes();
        let skip = usize::from(!self.checkpoints.is_empty());
        let tokens = encoding.get_ids().iter().zip(encoding.get_offsets());
        for (index, (id, &(_, end))) in tokens.enumerate().skip(skip) {
            let Some(anchor_text) = self.anchors.texts.get(id) else {
                continue;
            };
            let end = byte_offset + end;
            let hash_end = end + self.anchors.margin;
            if hash_end > bytes.len() {
                break;
            }
            // The offsets of a token can be trimmed by a post-processor; a checkpoint is only
            // set where the anchor's text really ends.
            let start = end.saturating_sub(anchor_text.len());
            if bytes.get(start..end) != Some(anchor_text.as_bytes()) || hash_end < hashed {
                continue;
            }
            hasher.write(&bytes[hashed..hash_end]);
            hashed = hash_end;
            self.checkpoints.push(Checkpoint {
                anchor: *id,
                end,
                tokens: token_base + index + 1,
                hash_end,
                hash: hasher.finish(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::openai::Role;

    /// Builds a tokenizer whose pre-tokenizer treats the sequence's first piece differently
    /// (`Metaspace` with `prepend_scheme: first`), with merges that make counts depend on where
    /// a piece starts. It also has an added token that strips whitespace, so it is no anchor,
    /// and a long added token that sets the margin.
    fn metaspace_tokenizer() -> (tempfile::TempDir, Tokenizer) {
        let added = |id: u32, content: &str, rstrip: bool| {
            serde_json::json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": rstrip, "normalized": false, "special": true
            })
        };
        let definition = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [
                added(10, "<|im_start|>", false), added(11, "<|im_end|>", false),
                added(12, "<s>", true), added(13, "<|a_much_longer_added_token|>", false)
            ],
            "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
            "post_processor": null, "decoder": null,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false,
                "vocab": {"▁": 0, "a": 1, "b": 2, "\n": 3, "▁a": 4, "ab": 5, "<unk>": 6, "▁ab": 7},
                "merges": [["▁", "a"], ["a", "b"], ["▁a", "b"]]
            }
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), definition.to_string()).unwrap();
        let tokenizer = Tokenizer::from_path(dir.path()).unwrap();
        (dir, tokenizer)
    }

    /// Random text over a small alphabet, sometimes with added tokens inside it.
    fn random_text(rng: &mut StdRng, length: usize) -> String {
        const PARTS: [&str; 9] = [
            "a",
            "b",
            " ",
            "\n",
            "ab ",
            "<|im_end|>",
            "<s>",
            " <s> ",
            "<|a_much_longer_added_token|>",
        ];
        let mut text = String::new();
        while text.len() < length {
            let part = if rng.random_bool(0.9) {
                PARTS[rng.random_range(0..5)]
            } else {
                PARTS[rng.random_range(5..PARTS.len())]
            };
            text.push_str(part);
        }
        text
    }

    /// Grows a conversation turn by turn, sometimes rewriting its start, and checks every
    /// count against encoding the whole prompt.
    fn check_against_full_counts(tokenizer: &Tokenizer, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counter = PromptCounter::new(tokenizer.clone());
        let mut messages = vec![ChatMessage::new(Role::System, random_text(&mut rng, 60))];
        for turn in 0..40 {
            match rng.random_range(0..10) {
                // A compaction: the start of the prompt changes.
                0 => messages.truncate(1),
                1 => messages[0] = ChatMessage::new(Role::System, random_text(&mut rng, 60)),
                _ => {}
            }
            let length = rng.random_range(0..80);
            messages.push(ChatMessage::new(Role::User, random_text(&mut rng, length)));
            let expected = tokenizer.count_chat(&messages).unwrap();
            assert_eq!(
                counter.count_chat(&messages).unwrap(),
                expected,
                "seed {seed}, turn {turn}"
            );
            let reply = rng.random_range(0..40);
            messages.push(ChatMessage::new(
                Role::Assistant,
                random_text(&mut rng, reply),
            ));
        }
    }

    #[test]
    fn builtin_counts_match_full_encoding() {
        for seed in 0..20 {
            check_against_full_counts(&Tokenizer::builtin(), seed);
        }
    }

    #[test]
    fn metaspace_counts_match_full_encoding() {
        let (_dir, tokenizer) = metaspace_tokenizer();
        for seed in 0..20 {
            check_against_full_counts(&tokenizer, seed);
        }
    }

    #[test]
    fn plain_texts_match_full_encoding_at_every_cut() {
        // Prompts that start without an added token, so the sequence's first piece is text,
        // and that grow by appending at every possible point.
        let (_dir, tokenizer) = metaspace_tokenizer();
        let mut rng = StdRng::seed_from_u64(7);
        let text = random_text(&mut rng, 400);
        let mut counter = PromptCounter::new(tokenizer.clone());
        for cut in (0..=text.len()).filter(|cut| text.is_char_boundary(*cut)) {
            let expected = tokenizer.count(&text[..cut]).unwrap();
            assert_eq!(counter.count(&text[..cut]).unwrap(), expected, "cut {cut}");
        }
    }

    #[test]
    fn grown_prompt_reuses_checkpoints() {
        let tokenizer = Tokenizer::builtin();
        let mut counter = PromptCounter::new(tokenizer);
        let first = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n";
        // Each `<|im_start|>` (12 bytes) and `<|im_end|>` (10 bytes) is one token, every other
        // byte one token.
        assert_eq!(
            counter.count(first).unwrap(),
            first.len() - 2 * (12 - 1) - 2 * (10 - 1)
        );
        let kept = counter.checkpoints.len();
        assert!(kept >= 3, "{:?}", counter.checkpoints);
        let second = format!("{first}<|im_start|>assistant\nhi<|im_end|>\n");
        assert_eq!(
            counter.count(&second).unwrap(),
            second.len() - 3 * (12 - 1) - 3 * (10 - 1)
        );
        assert!(counter.checkpoints.len() > kept);
    }
}
