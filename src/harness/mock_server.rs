//! The embedded mock as the harness serves it: [`MockState`] behind the mock's router, on an
//! ephemeral 127.0.0.1 port, with `TCP_NODELAY` on every connection.
//!
//! Without `TCP_NODELAY`, Nagle's algorithm holds the first token's small write until the
//! client acknowledges the response headers, and a client's delayed ACK can take tens of
//! milliseconds. That delay would add to every TTFT and dwarf the latencies the scenarios
//! gate.
// NOTE: `MockServer` serves without TCP_NODELAY, so it shows that delay; this server can go
// once it sets the option.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::mock::{MockConfig, MockError, MockState, MockStats, router};

/// A mock engine serving from a background task until [`stop`](Self::stop) or drop.
pub struct HarnessMock {
    addr: SocketAddr,
    state: Arc<MockState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HarnessMock {
    pub async fn start(config: MockConfig) -> Result<Self, MockError> {
        let state = tokio::task::spawn_blocking(move || MockState::new(config))
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))?;
        let state = Arc::new(state);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MockError::Bind { addr, source })?;
        let listener = listener.tap_io(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::warn!(error = %err, "failed to set TCP_NODELAY on a mock connection");
            }
        });

        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%addr, error = %err, "mock server failed");
            }
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Returns the OpenAI base URL, `http://ADDR/v1/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    pub fn stats(&self) -> MockStats {
        self.state.stats()
    }

    /// Stops accepting connections and waits for in-flight responses to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HarnessMock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
