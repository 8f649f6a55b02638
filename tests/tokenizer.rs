//! The tokenizer and content generator against the real Qwen3 tokenizer.

mod support;

use clawperf::content::ContentGenerator;
use clawperf::openai::{ChatMessage, Role};
use clawperf::prompt_counter::PromptCounter;
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

/// The incremental prompt count agrees with encoding the whole rendered prompt for a Qwen3
/// conversation: generated text, whitespace and CJK around the message boundaries, assistant
/// replies with the Qwen3 template's thinking block, and a rewritten start.
#[test]
fn qwen3_incremental_prompt_counts_match_full_encoding() {
    let tokenizer = support::qwen3_tokenizer();
    let generator = ContentGenerator::new(tokenizer.clone()).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut counter = PromptCounter::new(tokenizer.clone());
    let edges = [
        "",
        " ",
        "\n",
        "\n\n",
        "  \n",
        "你好",
        "é",
        "<think>\n\n</think>\n\n",
    ];
    let mut messages = vec![ChatMessage::new(
        Role::System,
        generator.generate(&mut rng, 300).unwrap(),
    )];
    for turn in 0..24 {
        if turn == 12 {
            // A compaction keeps the system message and restarts the history.
            messages.truncate(1);
        }
        let edge = edges[turn % edges.len()];
        let input = format!(
            "{edge}{}{edge}",
            generator.generate(&mut rng, 40 + turn).unwrap()
        );
        messages.push(ChatMessage::new(Role::User, input));
        assert_eq!(
            counter.count_chat(&messages).unwrap(),
            tokenizer.count_chat(&messages).unwrap(),
            "turn {turn}"
        );
        let reply = format!("{}{edge}", generator.generate(&mut rng, 20).unwrap());
        messages.push(ChatMessage::new(Role::Assistant, reply));
    }
}
