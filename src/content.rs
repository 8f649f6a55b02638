//! Random text that encodes to an exact number of tokens.
//!
//! The generator draws from a pool of units that each encode to one token and that stay
//! separate tokens when joined. For byte-level BPE vocabularies (GPT-2, Llama 3, Qwen) the units
//! are space-prefixed lowercase words such as `" table"`, which the pre-tokenizer always splits
//! apart. Where the vocabulary has too few such words (the built-in byte-level tokenizer, for
//! example), single lowercase letters are the units.
//!
//! The count is exact for the tokenizer in use, by one of two means:
//!
//! - Word units skip the re-encode when the pool is *separable*: each unit alone encodes to its
//!   one token (checked when the pool is built), and the tokenizer splits joined units at every
//!   unit boundary. The split is checked once, at construction, for every pair of a unit's last
//!   letter and the next unit's first letter that the pool can produce. Byte-level BPE
//!   pre-tokenizers (GPT-2, Llama 3, Qwen) decide a split at a space from the characters next
//!   to it, and BPE merges never cross a pre-token, so these pairs cover every text the pool
//!   can generate. Re-encoding a 128k-token context would take longer than generating it
//!   (hundreds of milliseconds against about one).
//! - Otherwise every generated text is re-encoded, and corrected if the count is off.

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::tokenizer::{EncodeError, Tokenizer};

/// Minimum number of single-token words for the word pool; below it, letters are used.
const MIN_WORD_UNITS: usize = 256;
/// Upper bound on the word pool, which keeps construction fast for 150k-token vocabularies.
const MAX_WORD_UNITS: usize = 8192;
/// Units joined to check that the pool's units do not merge with each other.
const ADDITIVITY_SAMPLE: usize = 2048;
/// Letters in the longest word unit.
const MAX_WORD_LENGTH: usize = 10;
/// Correction rounds before generation gives up on an exact count.
const MAX_CORRECTIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(
        "tokenizer {tokenizer} has no set of single-token units that stay separate when joined \
         ({sample} units encoded to {encoded} other tokens); exact-length content cannot be \
         generated, pass a byte-level BPE tokenizer with --tokenizer"
    )]
    NotAdditive {
        tokenizer: String,
        sample: usize,
        encoded: usize,
    },
    #[error("could not generate text of exactly {requested} tokens (last attempt: {got})")]
    Inexact { requested: usize, got: usize },
}

/// Generates random text of an exact token length for one tokenizer.
#[derive(Debug, Clone)]
pub struct ContentGenerator {
    tokenizer: Tokenizer,
    /// Each unit's text and the one token id it encodes to.
    units: Vec<(Box<str>, u32)>,
    /// Whether joined units are checked to split at every unit boundary, so that a generated
    /// text's count is its number of units without a re-encode.
    separable: bool,
}

impl ContentGenerator {
    /// Builds the unit pool for `tokenizer` and checks that joined units count additively.
    pub fn new(tokenizer: Tokenizer) -> Result<Self, ContentError> {
        let mut units = word_units(&tokenizer)?;
        let words = units.len() >= MIN_WORD_UNITS;
        if !words {
            tracing::debug!(
                words = units.len(),
                "too few single-token words in the vocabulary; generating letters"
            );
            units = letter_units(&tokenizer)?;
        }
        let mut generator = Self {
            tokenizer,
            units,
            separable: false,
        };
        generator.check_additivity()?;
        generator.separable = words && generator.splits_at_every_boundary()?;
        tracing::debug!(
            separable = generator.separable,
            "generated content is counted {}",
            if generator.separable {
                "by its units"
            } else {
                "by re-encoding it"
            }
        );
        Ok(generator)
    }

    /// Returns one random unit, which encodes to exactly one token.
    pub fn random_unit<R: Rng + ?Sized>(&self, rng: &mut R) -> &str {
        self.random_token(rng).1
    }

    /// Returns one random unit's token id and text. Units joined in any order encode to the
    /// concatenation of their ids, so a server can emit them as generated tokens.
    pub fn random_token<R: Rng + ?Sized>(&self, rng: &mut R) -> (u32, &str) {
        let (text, id) = self
            .units
            .choose(rng)
            .expect("the unit pool is never empty");
        (*id, text)
    }

    /// Returns whether generated texts are counted by their units instead of re-encoded (see
    /// the module docs).
    pub fn is_separable(&self) -> bool {
        self.separable
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Generates random text that encodes to exactly `tokens` tokens.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        tokens: usize,
    ) -> Result<String, ContentError> {
        if self.separable {
            let mut text = String::with_capacity(tokens * (MAX_WORD_LENGTH + 1));
            for _ in 0..tokens {
                text.push_str(self.random_unit(rng));
            }
            return Ok(text);
        }

        let mut text = String::with_capacity(tokens * 8);
        let mut boundaries = Vec::with_capacity(tokens);
        for _ in 0..tokens {
            text.push_str(self.random_unit(rng));
            boundaries.push(text.len());
        }

        // NOTE: the pool is checked to be additive, so the first count is normally exact. The
        // correction loop covers tokenizers whose merges cross unit boundaries in rare cases.
        let mut got = self.tokenizer.count(&text)?;
        for _ in 0..MAX_CORRECTIONS {
            if got == tokens {
                return Ok(text);
            }
            if got > tokens {
                let keep = boundaries.len().saturating_sub(got - tokens);
                boundaries.truncate(keep);
                text.truncate(boundaries.last().copied().unwrap_or(0));
            } else {
                for _ in got..tokens {
                    text.push_str(self.random_unit(rng));
                    boundaries.push(text.len());
                }
            }
            got = self.tokenizer.count(&text)?;
        }
        if got == tokens {
            Ok(text)
        } else {
            Err(ContentError::Inexact {
                requested: tokens,
                got,
            })
        }
    }

    /// Returns whether units joined across every (last letter, first letter) pair the pool can
    /// produce encode to the concatenation of their ids.
    fn splits_at_every_boundary(&self) -> Result<bool, ContentError> {
        let mut ending_with: [Option<&(Box<str>, u32)>; 26] = [None; 26];
        let mut starting_with: [Option<&(Box<str>, u32)>; 26] = [None; 26];
        for unit in &self.units {
            let letters = unit.0.trim_start().as_bytes();
            let (Some(&first), Some(&last)) = (letters.first(), letters.last()) else {
                return Ok(false);
            };
            if !first.is_ascii_lowercase() || !last.is_ascii_lowercase() {
                return Ok(false);
            }
            starting_with[usize::from(first - b'a')].get_or_insert(unit);
            ending_with[usize::from(last - b'a')].get_or_insert(unit);
        }

        let mut text = String::new();
        let mut expected = Vec::new();
        for left in ending_with.iter().flatten() {
            for right in starting_with.iter().flatten() {
                for (unit, id) in [left, right] {
                    text.push_str(unit);
                    expected.push(*id);
                }
            }
        }
        Ok(self.tokenizer.encode(&text)? == expected)
    }

    fn check_additivity(&self) -> Result<(), ContentError> {
        let sample: Vec<&(Box<str>, u32)> =
            self.units.iter().cycle().take(ADDITIVITY_SAMPLE).collect();
        let text: String = sample.iter().map(|(unit, _)| &**unit).collect();
        let ids = self.tokenizer.encode(&text)?;
        let expected: Vec<u32> = sample.iter().map(|(_, id)| *id).collect();
        if ids == expected {
            Ok(())
        } else {
            Err(ContentError::NotAdditive {
                tokenizer: self.tokenizer.source().to_string(),
                sample: ADDITIVITY_SAMPLE,
                encoded: ids.len(),
            })
        }
    }
}

/// Collects vocabulary entries that decode to `" "` plus 3 to 10 lowercase ASCII letters and
/// encode back to that one token.
fn word_units(tokenizer: &Tokenizer) -> Result<Vec<(Box<str>, u32)>, ContentError> {
    let vocab_size = tokenizer.inner().get_vocab_size(false) as u32;
    let mut units = Vec::new();
    for id in 0..vocab_size {
        let Ok(text) = tokenizer.decode(&[id]) else {
            continue;
        };
        let word = text.strip_prefix(' ').unwrap_or("");
        let is_word = (3..=MAX_WORD_LENGTH).contains(&word.len())
            && word.bytes().all(|b| b.is_ascii_lowercase());
        if !is_word || tokenizer.encode(&text)? != [id] {
            continue;
        }
        units.push((text.into_boxed_str(), id));
        if units.len() == MAX_WORD_UNITS {
            break;
        }
    }
    Ok(units)
}

fn letter_units(tokenizer: &Tokenizer) -> Result<Vec<(Box<str>, u32)>, ContentError> {
    let mut units = Vec::new();
    for letter in b'a'..=b'z' {
        let text = char::from(letter).to_string();
        if let [id] = tokenizer.encode(&text)?[..] {
            units.push((text.into_boxed_str(), id));
        }
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn builtin_generates_exact_counts() {
        let generator = ContentGenerator::new(Tokenizer::builtin()).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        for tokens in [0, 1, 2, 17, 1000] {
            let text = generator.generate(&mut rng, tokens).unwrap();
            assert_eq!(
                Tokenizer::builtin().count(&text).unwrap(),
                tokens,
                "requested {tokens}"
            );
        }
    }

    #[test]
    fn generation_is_seeded() {
        let generator = ContentGenerator::new(Tokenizer::builtin()).unwrap();
        let first = generator
            .generate(&mut StdRng::seed_from_u64(1), 64)
            .unwrap();
        let second = generator
            .generate(&mut StdRng::seed_from_u64(1), 64)
            .unwrap();
        assert_eq!(first, second);
    }
}
