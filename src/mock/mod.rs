//! The mock serving engine: an OpenAI-compatible server with a vLLM-like prefix cache.
