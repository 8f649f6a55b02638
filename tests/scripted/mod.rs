//! Scripted chat-completions servers for client tests. Each reply is a status, a content type
//! and a list of body steps (send bytes, sleep, break the connection). The servers run axum on
//! 127.0.0.1 port 0 and shut down when their handle is dropped.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

/// A server on 127.0.0.1 port 0 that shuts down when dropped.
pub struct TestServer {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (shutdown, signal) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = signal.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            shutdown: Some(shutdown),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn chat_url(&self) -> Url {
        Url::parse(&format!("http://{}/v1/chat/completions", self.address)).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// One step of a scripted response body.
#[derive(Debug, Clone)]
pub enum Step {
    Send(Vec<u8>),
    Sleep(Duration),
    /// Breaks the connection without finishing the chunked body.
    Disconnect,
}

/// A scripted reply: status, content type and body steps.
#[derive(Debug, Clone)]
pub struct Script {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub steps: Vec<Step>,
    /// Time before the response headers are sent.
    pub header_delay: Duration,
}

impl Script {
    pub fn stream(steps: Vec<Step>) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "text/event-stream; charset=utf-8",
            steps,
            header_delay: Duration::ZERO,
        }
    }

    pub fn fixed(status: u16, content_type: &'static str, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            content_type,
            steps: vec![send(body)],
            header_delay: Duration::ZERO,
        }
    }

    pub async fn into_response(self) -> Response {
        tokio::time::sleep(self.header_delay).await;
        let body = futures_util::stream::unfold(self.steps.into_iter(), |mut steps| async move {
            loop {
                match steps.next()? {
                    Step::Sleep(delay) => tokio::time::sleep(delay).await,
                    Step::Send(bytes) => return Some((Ok(Bytes::from(bytes)), steps)),
                    Step::Disconnect => {
                        return Some((
                            Err(io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                "scripted disconnect",
                            )),
                            steps,
                        ));
                    }
                }
            }
        });
        (
            self.status,
            [(header::CONTENT_TYPE, self.content_type)],
            Body::from_stream(body),
        )
            .into_response()
    }

    /// Serves this reply to every chat request, and `GET /v1/models` for the pre-flight check.
    pub async fn serve(self) -> TestServer {
        Script::serve_sequence(vec![self]).await
    }

    /// Serves the scripts in turn, one per chat request, starting over after the last.
    pub async fn serve_sequence(scripts: Vec<Script>) -> TestServer {
        let scripts = Arc::new(scripts);
        let next = Arc::new(AtomicUsize::new(0));
        let router = Router::new()
            .route(
                "/v1/chat/completions",
                post(move || {
                    let scripts = scripts.clone();
                    let index = next.fetch_add(1, Ordering::Relaxed) % scripts.len();
                    async move { scripts[index].clone().into_response().await }
                }),
            )
            .route("/v1/models", get(models));
        TestServer::start(router).await
    }
}

async fn models() -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [{"id": "test", "object": "model"}]}))
}

pub fn send(text: &str) -> Step {
    Step::Send(text.as_bytes().to_vec())
}

pub fn event(payload: &Value) -> Step {
    Step::Send(format!("data: {payload}\n\n").into_bytes())
}

pub fn chunk_json(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
}

pub fn chunk(delta: Value, finish_reason: Option<&str>) -> Step {
    event(&chunk_json(delta, finish_reason))
}

pub fn role() -> Step {
    chunk(json!({"role": "assistant", "content": ""}), None)
}

pub fn token(text: &str) -> Step {
    chunk(json!({"content": text}), None)
}

pub fn reasoning(text: &str) -> Step {
    chunk(json!({"reasoning_content": text}), None)
}

pub fn finish(reason: &str) -> Step {
    chunk(json!({}), Some(reason))
}

pub fn usage_json(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    })
}

pub fn usage(prompt_tokens: u64, completion_tokens: u64) -> Step {
    event(&usage_json(prompt_tokens, completion_tokens))
}

pub fn done() -> Step {
    send("data: [DONE]\n\n")
}

pub fn wait(milliseconds: u64) -> Step {
    Step::Sleep(Duration::from_millis(milliseconds))
}
