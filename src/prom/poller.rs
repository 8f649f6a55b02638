//! The metrics poller: scrapes a Prometheus endpoint once before a run, periodically during it
//! and once after it, and returns the snapshots with a count of failed scrapes.
//!
//! A failed scrape (connection error, timeout, a status other than 200, a body that is not an
//! exposition) never stops the poller. It is counted, and its message is kept as
//! [`PollReport::last_error`]. The first failure of each kind is logged with `warn!` and repeats
//! with `debug!`, so a server that is down for an hour costs one warning, not one per interval.
//!
//! Each scrape is parsed leniently: odd lines are skipped (and the first one logged once), and a
//! response counts as failed only when it has no valid sample at all. A response without any of
//! the backend's metrics is logged once, because it usually means a wrong `--backend`.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use crate::error_chain::error_chain;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{self, MissedTickBehavior};
use tracing::{debug, warn};
use url::Url;

use super::backend::{Backend, MetricsSnapshot};
use super::delta::PrefixCacheDelta;
use super::exposition::Exposition;
use super::parse::ParseError;

/// Lower bound of the per-scrape timeout. A short interval (as in tests) would otherwise leave a
/// slow but healthy server too little time to respond.
const MIN_SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// Upper bound of the per-scrape timeout, so that a hung endpoint delays `stop` by at most this.
const MAX_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks for the classic text format. prometheus_client (vLLM, SGLang) switches to OpenMetrics
/// only when the request accepts `application/openmetrics-text`.
const ACCEPT_TEXT_FORMAT: &str = "text/plain;version=0.0.4, */*;q=0.1";

/// The snapshots of one run and the scrape failures on the way.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PollReport {
    /// The snapshot taken by [`MetricsPoller::start`], before the traffic began.
    pub start: Option<MetricsSnapshot>,
    /// The snapshot taken by [`MetricsPoller::stop`], after the traffic ended.
    pub end: Option<MetricsSnapshot>,
    /// Every successful snapshot in time order: start, periodic ones, end.
    pub samples: Vec<MetricsSnapshot>,
    /// Number of failed scrapes, including a failed start or end scrape.
    pub scrape_errors: u64,
    /// The message of the latest failed scrape, with its causes.
    pub last_error: Option<String>,
}

impl PollReport {
    /// Computes the prefix-cache delta from the start to the end snapshot. Returns `None` unless
    /// both exist. The periodic samples are checked for a counter reset on the way.
    pub fn prefix_cache_delta(&self) -> Option<PrefixCacheDelta> {
        let start = self.start.as_ref()?;
        let end = self.end.as_ref()?;
        let mut sequence = vec![start];
        sequence.extend(&self.samples);
        sequence.push(end);
        Some(PrefixCacheDelta::over(&sequence))
    }
}

/// The error when the poller cannot start at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollerStartError {
    #[error("invalid metrics interval: it must be greater than zero")]
    ZeroInterval,
    #[error("invalid metrics endpoint `{url}`: the scheme must be http or https")]
    UnsupportedScheme { url: String },
}

/// A running poller. Dropping it without calling [`MetricsPoller::stop`] ends the background task
/// at its next wake-up and discards its snapshots.
#[derive(Debug)]
pub struct MetricsPoller {
    scraper: Scraper,
    start: Option<MetricsSnapshot>,
    stop_sender: oneshot::Sender<()>,
    task: JoinHandle<ScrapeLog>,
}

impl MetricsPoller {
    /// Takes the start snapshot, then spawns a task on the current tokio runtime that scrapes
    /// `url` every `interval`. Returns once the start snapshot is taken, so the caller can begin
    /// the traffic afterwards. A failed start scrape is counted and leaves
    /// [`PollReport::start`] empty, but the poller still runs.
    ///
    /// `client` carries the caller's TLS and proxy settings. `run_start` is the instant that
    /// [`MetricsSnapshot::elapsed_s`] counts from.
    pub async fn start(
        client: reqwest::Client,
        url: Url,
        backend: Backend,
        interval: Duration,
        run_start: Instant,
    ) -> Result<MetricsPoller, PollerStartError> {
        let url_for_logs = redact_credentials(&url);
        if interval.is_zero() {
            return Err(PollerStartError::ZeroInterval);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PollerStartError::UnsupportedScheme { url: url_for_logs });
        }

        let scraper = Scraper {
            client,
            url,
            url_for_logs,
            backend,
            timeout: interval.clamp(MIN_SCRAPE_TIMEOUT, MAX_SCRAPE_TIMEOUT),
            run_start,
        };
        debug!(
            url = %scraper.url_for_logs,
            %backend,
            interval_s = interval.as_secs_f64(),
            timeout_s = scraper.timeout.as_secs_f64(),
            "polling server metrics"
        );

        let mut log = ScrapeLog::default();
        let start = log.record(&scraper, scraper.scrape().await);
        let (stop_sender, stop_receiver) = oneshot::channel();
        let task = tokio::spawn(poll_until_stopped(
            scraper.clone(),
            log,
            interval,
            stop_receiver,
        ));
        Ok(MetricsPoller {
            scraper,
            start,
            stop_sender,
            task,
        })
    }

    /// Stops the periodic scrapes, takes the end snapshot and returns everything collected. A
    /// periodic scrape still in flight is abandoned.
    pub async fn stop(self) -> PollReport {
        let MetricsPoller {
            scraper,
            start,
            stop_sender,
            task,
        } = self;
        // A send error means the task has already ended, and joining it reports why.
        let _ = stop_sender.send(());
        let mut log = match task.await {
            Ok(log) => log,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => {
                warn!(%error, "metrics poller task was cancelled, so its periodic snapshots are lost");
                ScrapeLog {
                    samples: start.iter().cloned().collect(),
                    ..ScrapeLog::default()
                }
            }
        };

        let end = log.record(&scraper, scraper.scrape().await);
        debug!(
            url = %scraper.url_for_logs,
            samples = log.samples.len(),
            scrape_errors = log.scrape_errors,
            "stopped polling server metrics"
        );
        PollReport {
            start,
            end,
            samples: log.samples,
            scrape_errors: log.scrape_errors,
            last_error: log.last_error,
        }
    }
}

/// Scrapes every `interval` until `stop` fires or its sender is dropped, then returns the log.
async fn poll_until_stopped(
    scraper: Scraper,
    mut log: ScrapeLog,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) -> ScrapeLog {
    // The start snapshot was just taken, so the first periodic scrape waits a full interval.
    let mut ticker = time::interval_at(time::Instant::now() + interval, interval);
    // After a slow scrape, keep the spacing instead of firing the missed ticks in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            biased;
            _ = &mut stop => break,
            result = scraper.scrape() => result,
        };
        log.record(&scraper, result);
    }
    log
}

/// The endpoint, HTTP client and name map of one poller.
#[derive(Debug, Clone)]
struct Scraper {
    client: reqwest::Client,
    url: Url,
    /// `url` without user name and password, for logs and messages.
    url_for_logs: String,
    backend: Backend,
    timeout: Duration,
    run_start: Instant,
}

/// A successful scrape.
struct Scraped {
    snapshot: MetricsSnapshot,
    /// Lines that the lenient parser skipped.
    skipped_lines: Vec<ParseError>,
}

impl Scraper {
    async fn scrape(&self) -> Result<Scraped, ScrapeError> {
        let elapsed = self.run_start.elapsed();
        let taken_at = SystemTime::now();
        let response = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, ACCEPT_TEXT_FORMAT)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|error| ScrapeError::Request {
                url: self.url_for_logs.clone(),
                source: error.without_url(),
            })?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(ScrapeError::Status {
                url: self.url_for_logs.clone(),
                status,
            });
        }
        let body = response.text().await.map_err(|error| ScrapeError::Body {
            url: self.url_for_logs.clone(),
            source: error.without_url(),
        })?;

        let mut exposition = Exposition::parse_lenient(&body);
        let skipped_lines = exposition.take_skipped_lines();
        if exposition.samples().is_empty() {
            let first_skipped = skipped_lines.into_iter().next();
            return Err(ScrapeError::NoSamples {
                url: self.url_for_logs.clone(),
                first_skipped,
            });
        }
        let snapshot = self.backend.snapshot(&exposition, elapsed, taken_at);
        Ok(Scraped {
            snapshot,
            skipped_lines,
        })
    }
}

/// The reason a scrape failed.
#[derive(Debug, thiserror::Error)]
/// The URLs in the messages have no credentials, and reqwest's copy of the URL is removed from
/// the causes for the same reason.
enum ScrapeError {
    #[error("failed to send the metrics request to {url}")]
    Request { url: String, source: reqwest::Error },
    #[error("metrics endpoint {url} returned HTTP {status}, expected 200 OK")]
    Status { url: String, status: StatusCode },
    #[error("failed to read the metrics response body from {url}")]
    Body { url: String, source: reqwest::Error },
    /// The body has no sample line. `first_skipped` is its first malformed line, if any.
    #[error("metrics response from {url} contains no valid sample")]
    NoSamples {
        url: String,
        #[source]
        first_skipped: Option<ParseError>,
    },
}

/// The kinds of scrape failure that are logged once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FailureKind {
    Connect,
    Timeout,
    Request,
    Status(StatusCode),
    Body,
    NoSamples,
}

impl ScrapeError {
    fn kind(&self) -> FailureKind {
        match self {
            ScrapeError::Request { source, .. } if source.is_timeout() => FailureKind::Timeout,
            ScrapeError::Request { source, .. } if source.is_connect() => FailureKind::Connect,
            ScrapeError::Request { .. } => FailureKind::Request,
            ScrapeError::Status { status, .. } => FailureKind::Status(*status),
            ScrapeError::Body { source, .. } if source.is_timeout() => FailureKind::Timeout,
            ScrapeError::Body { .. } => FailureKind::Body,
            ScrapeError::NoSamples { .. } => FailureKind::NoSamples,
        }
    }
}

/// The results gathered so far, owned by whichever side is scraping.
#[derive(Debug, Default)]
struct ScrapeLog {
    samples: Vec<MetricsSnapshot>,
    scrape_errors: u64,
    last_error: Option<String>,
    /// Failure kinds already logged with `warn!`.
    warned_failures: HashSet<FailureKind>,
    warned_skipped_lines: bool,
    warned_no_known_metric: bool,
}

impl ScrapeLog {
    /// Stores the result of one scrape and returns its snapshot, if it succeeded.
    fn record(
        &mut self,
        scraper: &Scraper,
        result: Result<Scraped, ScrapeError>,
    ) -> Option<MetricsSnapshot> {
        let url = scraper.url_for_logs.as_str();
        match result {
            Ok(Scraped {
                snapshot,
                skipped_lines,
            }) => {
                if let Some(first) = skipped_lines.first()
                    && !self.warned_skipped_lines
                {
                    self.warned_skipped_lines = true;
                    warn!(
                        url,
                        skipped = skipped_lines.len(),
                        first = %first,
                        "skipped malformed lines in the metrics response. Later responses with \
                         malformed lines are not reported"
                    );
                }
                if !snapshot.has_any_metric() && !self.warned_no_known_metric {
                    self.warned_no_known_metric = true;
                    warn!(
                        url,
                        backend = %scraper.backend,
                        "metrics response contains none of the metric names read for this \
                         backend. Check that the backend setting matches the server"
                    );
                }
                self.samples.push(snapshot.clone());
                Some(snapshot)
            }
            Err(error) => {
                self.scrape_errors += 1;
                let message = error_chain(&error);
                if self.warned_failures.insert(error.kind()) {
                    warn!(
                        error = %message,
                        "failed to scrape server metrics, continuing without this snapshot. \
                         Repeats of this failure are logged at debug level"
                    );
                } else {
                    debug!(error = %message, "failed to scrape server metrics again");
                }
                self.last_error = Some(message);
                None
            }
        }
    }
}

/// Returns `url` as text without its user name and password.
fn redact_credentials(url: &Url) -> String {
    let mut redacted = url.clone();
    // Both calls fail only for URLs that cannot carry credentials, which then have none.
    let _ = redacted.set_username("");
    let _ = redacted.set_password(None);
    redacted.to_string()
}
