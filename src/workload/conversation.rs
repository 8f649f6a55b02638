//! One user's conversation: the context it sends turn by turn, and append-mode compaction.
//!
//! Every turn sends `[system prefix] [user prefix] [history] [current input]` as chat
//! messages. The system message contains the shared system prefix, and the first user message
//! the user prefix followed by that turn's input. Later turns append the assistant's reply and
//! the next input as their own messages. Every turn's request is therefore a prefix extension
//! of the previous one, which is what lets a server reuse its KV cache.
//!
//! A request "reaches" `max_context_tokens` when its prompt tokens (counted after the chat
//! template) plus its `max_tokens` reach the limit, because a server rejects a request whose
//! prompt and output do not fit the model's context window. When the next request would reach
//! it, the conversation compacts: it drops the history and grows the user prefix by
//! `compaction_prefix_increment` tokens of new random content. Before compacting it checks the
//! compacted request (system prefix, grown user prefix and input, no history): if that alone
//! reaches the limit, compaction cannot help, the turn is a context overflow and the
//! conversation ends. This guard prevents an endless compaction loop, and it never lets a
//! compaction produce a request over the limit.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::content::{ContentError, ContentGenerator};
use crate::openai::{ChatMessage, Role};
use crate::prompt_counter::PromptCounter;
use crate::tokenizer::EncodeError;

/// Text between the user prefix and the first input in the first user message.
const PREFIX_SEPARATOR: &str = "\n\n";

/// The sizes, in tokens, that shape every user's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationShape {
    pub user_prefix_tokens: usize,
    pub input_tokens_per_turn: usize,
    pub output_tokens_per_turn: usize,
    pub max_context_tokens: usize,
    pub compaction_prefix_increment: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("failed to generate content")]
    Content(#[from] ContentError),
    #[error("failed to count the context's tokens")]
    Count(#[from] EncodeError),
}

/// The request of the next turn, ready to send.
#[derive(Debug, Clone)]
pub struct PlannedTurn {
    /// The full message list to send.
    pub messages: Vec<ChatMessage>,
    /// Prompt tokens as the server will count them (after the chat template).
    pub prompt_tokens: usize,
    /// Tokens of new input this turn (excluding the user prefix and the separator).
    pub new_input_tokens: usize,
    /// Whether the history was dropped and the user prefix grown before this turn.
    pub compacted: bool,
    /// Size of the user prefix this turn was sent with.
    pub user_prefix_tokens: usize,
}

/// Plan of the next turn: a request to send, or an overflow that ends the conversation.
#[derive(Debug, Clone)]
pub enum TurnPlan {
    Send(PlannedTurn),
    /// Even the compacted request reaches the limit: `request_tokens` is its prompt plus
    /// `max_tokens`.
    Overflow {
        request_tokens: usize,
        compacted_request_tokens: usize,
    },
}

/// The state of one user's conversation.
#[derive(Debug)]
pub struct Conversation {
    shape: ConversationShape,
    generator: Arc<ContentGenerator>,
    rng: StdRng,
    system: ChatMessage,
    user_prefix: Arc<str>,
    user_prefix_tokens: usize,
    /// Messages after the system message. Empty at the start and after a compaction.
    history: Vec<ChatMessage>,
    /// Counts each prompt from where it differs from the previous one.
    counter: PromptCounter,
}

impl Conversation {
    /// Starts a conversation with a fresh random user prefix. `seed` makes the content
    /// reproducible.
    pub fn new(
        shape: ConversationShape,
        system_prefix: Arc<str>,
        generator: Arc<ContentGenerator>,
        seed: u64,
    ) -> Result<Self, WorkloadError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let user_prefix: Arc<str> = generator
            .generate(&mut rng, shape.user_prefix_tokens)?
            .into();
        Ok(Self {
            shape,
            counter: PromptCounter::new(generator.tokenizer().clone()),
            generator,
            rng,
            system: ChatMessage::new(Role::System, system_prefix),
            user_prefix,
            user_prefix_tokens: shape.user_prefix_tokens,
            history: Vec::new(),
        })
    }

    pub fn user_prefix_tokens(&self) -> usize {
        self.user_prefix_tokens
    }

    /// Generates the next turn's input and builds its request, compacting first when the
    /// request would reach the context limit. A compaction changes the state even if the turn
    /// later fails.
    pub fn plan_turn(&mut self) -> Result<TurnPlan, WorkloadError> {
        let input = self
            .generator
            .generate(&mut self.rng, self.shape.input_tokens_per_turn)?;
        let messages = self.messages_with(&self.user_prefix, &input);
        let prompt_tokens = self.count(&messages)?;
        if !self.reaches_limit(prompt_tokens) {
            return Ok(TurnPlan::Send(PlannedTurn {
                messages,
                prompt_tokens,
                new_input_tokens: self.shape.input_tokens_per_turn,
                compacted: false,
                user_prefix_tokens: self.user_prefix_tokens,
            }));
        }

        let request_tokens = prompt_tokens + self.shape.output_tokens_per_turn;
        if self.history.is_empty() {
            // Without history the request already is the compacted context.
            return Ok(TurnPlan::Overflow {
                request_tokens,
                compacted_request_tokens: request_tokens,
            });
        }
        let grown_tokens = self.user_prefix_tokens + self.shape.compaction_prefix_increment;
        let grown_prefix: Arc<str> = self.generator.generate(&mut self.rng, grown_tokens)?.into();
        let compacted = vec![
            self.system.clone(),
            first_user_message(&grown_prefix, &input),
        ];
        let compacted_tokens = self.count(&compacted)?;
        if self.reaches_limit(compacted_tokens) {
            return Ok(TurnPlan::Overflow {
                request_tokens,
                compacted_request_tokens: compacted_tokens + self.shape.output_tokens_per_turn,
            });
        }

        tracing::debug!(
            from_prompt_tokens = prompt_tokens,
            to_prompt_tokens = compacted_tokens,
            user_prefix_tokens = grown_tokens,
            "compacting the conversation"
        );
        self.history.clear();
        self.user_prefix = grown_prefix;
        self.user_prefix_tokens = grown_tokens;
        Ok(TurnPlan::Send(PlannedTurn {
            messages: compacted,
            prompt_tokens: compacted_tokens,
            new_input_tokens: self.shape.input_tokens_per_turn,
            compacted: true,
            user_prefix_tokens: grown_tokens,
        }))
    }

    /// Appends a successful turn's input and the assistant's reply to the history.
    pub fn commit_turn(&mut self, mut turn: PlannedTurn, reply: String) {
        let input = turn
            .messages
            .pop()
            .expect("a planned turn ends with its user input");
        self.history.push(input);
        self.history.push(ChatMessage::new(Role::Assistant, reply));
    }

    fn messages_with(&self, user_prefix: &str, input: &str) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(self.history.len() + 2);
        messages.push(self.system.clone());
        if self.history.is_empty() {
            messages.push(first_user_message(user_prefix, input));
        } else {
            messages.extend(self.history.iter().cloned());
            messages.push(ChatMessage::new(Role::User, input));
        }
        messages
    }

    fn count(&mut self, messages: &[ChatMessage]) -> Result<usize, WorkloadError> {
        Ok(self.counter.count_chat(messages)?)
    }

    fn reaches_limit(&self, prompt_tokens: usize) -> bool {
        prompt_tokens + self.shape.output_tokens_per_turn >= self.shape.max_context_tokens
    }
}

fn first_user_message(user_prefix: &str, input: &str) -> ChatMessage {
    let mut content =
        String::with_capacity(user_prefix.len() + PREFIX_SEPARATOR.len() + input.len());
    content.push_str(user_prefix);
    content.push_str(PREFIX_SEPARATOR);
    content.push_str(input);
    ChatMessage::new(Role::User, content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Tokenizer;

    fn conversation(shape: ConversationShape) -> Conversation {
        let generator = Arc::new(ContentGenerator::new(Tokenizer::builtin()).unwrap());
        let system: Arc<str> = generator
            .generate(&mut StdRng::seed_from_u64(0), 100)
            .unwrap()
            .into();
        Conversation::new(shape, system, generator, 1).unwrap()
    }

    fn shape() -> ConversationShape {
        ConversationShape {
            user_prefix_tokens: 50,
            input_tokens_per_turn: 20,
            output_tokens_per_turn: 10,
            max_context_tokens: 10_000,
            compaction_prefix_increment: 30,
        }
    }

    fn send(plan: TurnPlan) -> PlannedTurn {
        match plan {
            TurnPlan::Send(turn) => turn,
            TurnPlan::Overflow { .. } => panic!("unexpected overflow"),
        }
    }

    #[test]
    fn each_turn_extends_the_previous_request() {
        let mut conversation = conversation(shape());
        let first = send(conversation.plan_turn().unwrap());
        conversation.commit_turn(first.clone(), "reply".to_owned());
        let second = send(conversation.plan_turn().unwrap());
        assert_eq!(second.messages.len(), 4);
        assert_eq!(second.messages[..2], first.messages[..]);
        assert_eq!(&*second.messages[2].content, "reply");
    }

    #[test]
    fn first_turn_counts_the_templated_prompt() {
        let mut conversation = conversation(shape());
        let first = send(conversation.plan_turn().unwrap());
        // The built-in tokenizer counts one token per byte plus one per ChatML special token:
        // "<|im_start|>system\n" is 8, "<|im_end|>\n" 2, "<|im_start|>user\n" 6 and the
        // generation prompt "<|im_start|>assistant\n" 11, so the framing adds 29 tokens.
        let content_tokens = 100 + 50 + PREFIX_SEPARATOR.len() + 20;
        assert_eq!(first.prompt_tokens, content_tokens + 29);
    }
}
