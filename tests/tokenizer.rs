//! The tokenizer and content generator against the real Qwen3 tokenizer.

mod support;

use clawperf::content::ContentGenerator;
use clawperf::openai::{ChatMessage, Role};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn qwen3_content_has_exact_length() {
    let tokenizer = support::qwen3_tokenizer();
    let generator = ContentGenerator::new(tokenizer.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for tokens in [1, 5, 1000, 15000] {
        let text = generator.generate(&mut rng, tokens).unwrap();
        assert_eq!(
            tokenizer.count(&text).unwrap(),
            tokens,
            "requested {tokens}"
        );
    }
}

#[test]
fn qwen3_template_matches_reference_rendering() {
    let tokenizer = support::qwen3_tokenizer();
    let messages = [
        ChatMessage::new(Role::System, "sys"),
        ChatMessage::new(Role::User, "hi"),
        ChatMessage::new(Role::Assistant, " there"),
        ChatMessage::new(Role::User, "again"),
    ];
    let rendered = tokenizer.apply_chat_template(&messages).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
         <|im_start|>assistant\n there<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn qwen3_special_tokens_are_single_ids() {
    let tokenizer = support::qwen3_tokenizer();
    let ids = tokenizer.encode("<|im_start|>user\n").unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
}
