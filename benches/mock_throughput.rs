//! Speed of the mock server with the fixed latency model: streamed tokens per second with the
//! server on one runtime thread, and many concurrent streams without errors.
//!
//! Run with `scripts/bench-mock.sh`, which raises the open-file limit first, or
//! `cargo bench --bench mock_throughput -- [--streams N] [--tokens N] [--concurrent N]`.
//! The bench starts the server as a child process (the bench binary itself, with `--serve`) on
//! a current-thread Tokio runtime. The server thus uses one core, plus Tokio's blocking pool
//! for tokenizing prompts, and each process needs only one file descriptor per stream. The load
//! client runs in the parent on one runtime thread. Both measurements send traffic only to the
//! server the bench starts on 127.0.0.1.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clawperf::mock::{MockConfig, MockServer};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

/// Settings of one bench run, from the command line.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Concurrent streams of the throughput measurement.
    streams: usize,
    /// Tokens each throughput stream requests.
    tokens: u32,
    /// Streams open at once in the concurrency measurement.
    concurrent: usize,
}

fn parse_settings() -> Settings {
    let mut settings = Settings {
        streams: 64,
        tokens: 20_000,
        concurrent: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{arg} expects a positive integer"))
        };
        match arg.as_str() {
            "--streams" => settings.streams = value(),
            "--tokens" => settings.tokens = value() as u32,
            "--concurrent" => settings.concurrent = value(),
            // `cargo bench` passes `--bench`; other harness flags do not apply here.
            _ => {}
        }
    }
    settings
}

/// Serves a fixed-model mock with `ttft_ms` and `tpot_ms` on a current-thread runtime, prints
/// its base URL on stdout and stops when stdin closes. This is the child process's `main`.
fn serve(ttft_ms: u64, tpot_ms: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the server runtime");
    runtime.block_on(async move {
        let server = MockServer::start(MockConfig {
            ttft: Duration::from_millis(ttft_ms),
            tpot: Duration::from_millis(tpot_ms),
            ..MockConfig::default()
        })
        .await
        .expect("start the mock server");
        println!("{}", server.base_url());
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        });
        let _ = stdin_closed.await;
        server.shutdown().await;
    });
}

/// A mock server in a child process; dropping it closes the child's stdin, which stops it.
struct ServerProcess {
    child: Child,
    base_url: String,
}

impl ServerProcess {
    fn start(ttft_ms: u64, tpot_ms: u64) -> Self {
        let exe = std::env::current_exe().expect("locate the bench binary");
        let mut child = Command::new(exe)
            .args(["--serve", &ttft_ms.to_string(), &tpot_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut base_url = String::new();
        BufReader::new(stdout)
            .read_line(&mut base_url)
            .expect("read the server URL");
        Self {
            child,
            base_url: base_url.trim().to_owned(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The outcome of one streamed request: tokens received, or why it failed.
type StreamOutcome = Result<u64, String>;

/// The last event of a stream.
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// Sends one streamed request for `max_tokens` tokens and counts the token events received.
async fn stream_once(client: &reqwest::Client, url: &str, max_tokens: u32) -> StreamOutcome {
    let body = serde_json::json!({
        "model": "mock",
        "messages": [{"role": "user", "content": "Write the next function."}],
        "max_tokens": max_tokens,
        "stream": true,
    });
    let response = client
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|err| format!("request failed: {err}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut events = 0u64;
    // The last bytes received, so that an event separator or `[DONE]` split across two reads
    // is still found.
    let mut tail: Vec<u8> = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| format!("stream broke: {err}"))?;
        if tail.last() == Some(&b'\n') && chunk.first() == Some(&b'\n') {
            events += 1;
        }
        events += chunk.windows(2).filter(|pair| pair == b"\n\n").count() as u64;
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(DONE_EVENT.len())..]);
        tail.drain(..tail.len().saturating_sub(DONE_EVENT.len()));
    }
    if !tail.ends_with(DONE_EVENT) {
        return Err("stream ended without [DONE]".to_owned());
    }
    // One role chunk and `[DONE]` besides the tokens (no usage chunk was requested).
    Ok(events - 2)
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("build the client runtime")
}

fn measure_throughput(settings: Settings) {
    let server = ServerProcess::start(0, 0);
    let url = format!("{}/chat/completions", server.base_url);
    let runtime = client_runtime();
    let (tokens, elapsed) = runtime.block_on(async {
        let client = reqwest::Client::new();
        // One warm-up stream opens a connection and loads the code paths.
        stream_once(&client, &url, 1000)
            .await
            .expect("warm-up stream");
        let start = Instant::now();
        let tasks: Vec<_> = (0..settings.streams)
            .map(|_| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move { stream_once(&client, &url, settings.tokens).await })
            })
            .collect();
        let mut tokens = 0;
        for task in tasks {
            tokens += task.await.expect("stream task").expect("stream succeeds");
        }
        (tokens, start.elapsed())
    });
    drop(server);
    assert_eq!(tokens, settings.streams as u64 * u64::from(settings.tokens));
    let rate = tokens as f64 / elapsed.as_secs_f64();
    println!(
        "throughput: {tokens} tokens in {} streams in {:.2} s = {rate:.0} streamed tokens/s \
         (server on one runtime thread, ttft = tpot = 0)",
        settings.streams,
        elapsed.as_secs_f64()
    );
}

fn measure_concurrency(settings: Settings) {
    // Each stream stays open for about 6 s (20 tokens, one every 300 ms), longer than the
    // client takes to open all connections, so all of them overlap.
    let server = ServerProcess::start(300, 300);
    let url = format!("{}/chat/completions", server.base_url);
    let runtime = client_runtime();
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let (outcomes, elapsed) = runtime.block_on(async {
        let watcher = tokio::spawn(watch_in_flight(
            format!("{}/admin/state", server.base_url.trim_end_matches("/v1")),
            Arc::clone(&max_in_flight),
        ));
        // One connection per stream: HTTP/1.1 carries one streamed response at a time.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("build the load client");
        // Opens at most 500 connections at a time, so the listen backlog does not overflow.
        let connecting = Arc::new(Semaphore::new(500));
        let start = Instant::now();
        let tasks: Vec<_> = (0..settings.concurrent)
            .map(|_| {
                let client = client.clone();
                let url = url.clone();
                let connecting = Arc::clone(&connecting);
                tokio::spawn(async move {
                    let permit = connecting.acquire_owned().await.expect("semaphore open");
                    {
                        let request = stream_once(&client, &url, 20);
                        tokio::pin!(request);
                        // Release the permit once the response has started.
                        tokio::select! {
                            outcome = &mut request => outcome,
                            () = tokio::time::sleep(Duration::from_millis(150)) => {
                                drop(permit);
                                request.await
                            }
                        }
                    }
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await.expect("stream task"));
        }
        watcher.abort();
        (outcomes, start.elapsed())
    });
    drop(server);
    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().err())
        .collect();
    println!(
        "concurrency: {} streams, at most {} in flight at once on the server, {} failed, in \
         {:.2} s",
        settings.concurrent,
        max_in_flight.load(Ordering::Relaxed),
        failures.len(),
        elapsed.as_secs_f64()
    );
    if let Some(first) = failures.first() {
        println!("first failure: {first}; raise `ulimit -n` above twice the stream count");
        std::process::exit(1);
    }
}

/// Polls the server's `/admin/state` every 100 ms and records the highest `in_flight` count.
async fn watch_in_flight(url: String, max_in_flight: Arc<AtomicU64>) {
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(&url).send().await
            && let Ok(state) = response.json::<serde_json::Value>().await
            && let Some(in_flight) = state["counters"]["in_flight"].as_u64()
        {
            max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, ttft_ms, tpot_ms] = args.as_slice()
        && flag == "--serve"
    {
        serve(
            ttft_ms.parse().expect("TTFT in ms"),
            tpot_ms.parse().expect("TPOT in ms"),
        );
        return;
    }
    let settings = parse_settings();
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |cores| cores.get())
    );
    measure_throughput(settings);
    measure_concurrency(settings);
}
