//! Starting and stopping the mock engine: [`MockServer`] in-process, [`run`] for the binary.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::{MockConfig, MockServerArgs};
use super::engine::{MockState, MockStats};
use super::error::MockError;
use super::handlers::router;

/// How long [`MockServer::shutdown`] lets in-flight responses finish before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A mock engine serving on a local port from a background task.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<MockState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a mock engine on an ephemeral port of 127.0.0.1.
    pub async fn start(config: MockConfig) -> Result<MockServer, MockError> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a mock engine on `addr`; port 0 picks a free port, which [`addr`](Self::addr)
    /// then returns.
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> Result<MockServer, MockError> {
        let state = tokio::task::spawn_blocking(move || MockState::new(config))
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))?;
        let state = Arc::new(state);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MockError::Bind { addr, source })?;
        // Without TCP_NODELAY, Nagle's algorithm delays a token's small write until the client
        // acknowledges the previous one, and a delayed ACK adds tens of milliseconds to the
        // latency the mock promises.
        let listener = listener.tap_io(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::warn!(error = %err, "failed to set TCP_NODELAY on a mock connection");
            }
        });

        let config = state.config();
        tracing::info!(
            %addr,
            model = state.model_name(),
            tokenizer = %config.tokenizer.source(),
            ttft_ms = config.ttft.as_secs_f64() * 1000.0,
            tpot_ms = config.tpot.as_secs_f64() * 1000.0,
            block_size = config.block_size,
            hbm_blocks = config.hbm_blocks,
            external_blocks = config.external_blocks,
            prefix_caching = config.prefix_caching,
            latency_model = ?config.latency_model,
            metrics_dialect = %config.metrics_dialect,
            fault = config.faults.kind.map(|kind| kind.as_str()),
            fault_rate = config.faults.kind.map(|_| config.faults.rate),
            "mock server listening"
        );

        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let shutdown = async {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%addr, error = %err, "mock server failed");
            }
        });
        Ok(MockServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the OpenAI base URL, `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Returns the Prometheus endpoint, `http://ADDR/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Returns a consistent snapshot of the engine's counters and gauges.
    pub fn stats(&self) -> MockStats {
        self.state.stats()
    }

    /// Returns the engine state that the server's handlers share.
    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    /// Stops accepting connections, lets in-flight responses finish for up to 5 seconds, drops
    /// the rest and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return;
        };
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await;
        if finished.is_err() {
            tracing::warn!(
                addr = %self.addr,
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "in-flight responses still running after the grace period; dropping them"
            );
            task.abort();
            let _ = task.await;
        }
        tracing::info!(addr = %self.addr, "mock server stopped");
    }
}

impl Drop for MockServer {
    /// Stops accepting connections without waiting; in-flight responses run to their end.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the mock engine described by `args` until Ctrl-C or SIGTERM, then shuts it down
/// gracefully. This installs signal handlers, so it is meant for the binary's `main`.
pub async fn run(args: MockServerArgs) -> Result<(), MockError> {
    let config = args.to_config()?;
    let server = MockServer::bind(SocketAddr::new(args.host, args.port), config).await?;
    let signal = wait_for_shutdown_signal().await;
    if signal.is_ok() {
        tracing::info!("shutdown signal received");
    }
    server.shutdown().await;
    signal.map_err(|source| MockError::Signal { source })
}

async fn wait_for_shutdown_signal() -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
