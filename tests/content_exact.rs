//! Exact token counts of generated content on the fast path, which counts a text by its units
//! instead of re-encoding it: every text is re-encoded here to check that count.

mod support;

use clawperf::content::ContentGenerator;
use clawperf::tokenizer::Tokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn qwen3_pool_is_separable() {
    let generator = ContentGenerator::new(support::qwen3_tokenizer()).unwrap();

    assert!(generator.is_separable());
}

#[test]
fn qwen3_128k_context_is_exact() {
    let tokenizer = support::qwen3_tokenizer();
    let generator = ContentGenerator::new(tokenizer.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(11);

    let text = generator.generate(&mut rng, 128_000).unwrap();

    assert_eq!(tokenizer.count(&text).unwrap(), 128_000);
}

#[test]
fn qwen3_random_sizes_are_exact() {
    let tokenizer = support::qwen3_tokenizer();
    let generator = ContentGenerator::new(tokenizer.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    for _ in 0..50 {
        let tokens = rng.random_range(0..3000);

        let text = generator.generate(&mut rng, tokens).unwrap();

        assert_eq!(
            tokenizer.count(&text).unwrap(),
            tokens,
            "requested {tokens}"
        );
    }
}

#[test]
fn builtin_letters_are_re_encoded() {
    let generator = ContentGenerator::new(Tokenizer::builtin()).unwrap();

    assert!(
        !generator.is_separable(),
        "letters are single bytes, not space-led words, so they take the re-encoding path"
    );
}
