//! The workload model: when users arrive and what each of their turns sends.

mod arrival;
mod conversation;

pub use arrival::{Arrival, ArrivalParseError};
pub use conversation::{Conversation, ConversationShape, PlannedTurn, TurnPlan, WorkloadError};
