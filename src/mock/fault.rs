//! Fault injection: which requests fail, and how.
//!
//! Faults are set at start ([`FaultSettings`] in the config), replaced at run time through
//! `PUT /admin/faults`, and forced or suppressed for one request by the
//! [`FAULT_HEADER`](super::FAULT_HEADER) header. Whether a request without the header fails is
//! drawn from a generator seeded with the server's seed, so the same sequence of requests gets
//! the same faults every run.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A way for a request to fail, with the class clawperf's client reports for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// HTTP 429 with a `Retry-After` header (`rate_limited`).
    RateLimited,
    /// HTTP 500 (`http_status`).
    InternalError,
    /// HTTP 503 (`http_status`).
    Unavailable,
    /// An error object in a 200 stream after the first token (`stream_error`).
    StreamError,
    /// The connection is closed after the first token, without `[DONE]` (`truncated`).
    Disconnect,
    /// No bytes for the stall duration after the first token, then the rest of the stream
    /// (`idle_timeout` when the client's idle timeout is shorter).
    Stall,
    /// A `data:` payload that is not JSON after the first token (`malformed_stream`).
    MalformedChunk,
}

impl FaultKind {
    /// Every kind, in the order help and error messages list them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::RateLimited,
        FaultKind::InternalError,
        FaultKind::Unavailable,
        FaultKind::StreamError,
        FaultKind::Disconnect,
        FaultKind::Stall,
        FaultKind::MalformedChunk,
    ];

    /// Returns the kebab-case name used on the command line, in headers and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::RateLimited => "rate-limited",
            FaultKind::InternalError => "internal-error",
            FaultKind::Unavailable => "unavailable",
            FaultKind::StreamError => "stream-error",
            FaultKind::Disconnect => "disconnect",
            FaultKind::Stall => "stall",
            FaultKind::MalformedChunk => "malformed-chunk",
        }
    }

    /// Returns whether the fault replaces the response before the request reaches the engine.
    pub fn is_http_error(self) -> bool {
        matches!(
            self,
            FaultKind::RateLimited | FaultKind::InternalError | FaultKind::Unavailable
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.as_str()).collect();
                format!(
                    "unknown fault kind `{name}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The fault injection settings of a server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// The fault to inject; `None` injects nothing.
    pub kind: Option<FaultKind>,
    /// Fraction of requests that fail, from 0 to 1.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// How long a [`FaultKind::Stall`] sends nothing, in seconds.
    #[serde(default = "default_stall_s")]
    pub stall_s: f64,
    /// The `Retry-After` value of a [`FaultKind::RateLimited`] response, in whole seconds.
    #[serde(default = "default_retry_after_s")]
    pub retry_after_s: u32,
}

fn default_rate() -> f64 {
    1.0
}

fn default_stall_s() -> f64 {
    30.0
}

fn default_retry_after_s() -> u32 {
    1
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            kind: None,
            rate: default_rate(),
            stall_s: default_stall_s(),
            retry_after_s: default_retry_after_s(),
        }
    }
}

/// Maximum stall accepted, one hour, in seconds.
const MAX_STALL_S: f64 = 3600.0;

impl FaultSettings {
    /// Checks that the rate is a fraction and the stall a duration the server can sleep.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!(
                "invalid fault rate {}: expected a fraction from 0 to 1",
                self.rate
            ));
        }
        if !(0.0..=MAX_STALL_S).contains(&self.stall_s) {
            return Err(format!(
                "invalid fault stall {} s: expected 0 to {MAX_STALL_S} seconds",
                self.stall_s
            ));
        }
        Ok(())
    }

    pub fn stall(&self) -> Duration {
        Duration::from_secs_f64(self.stall_s)
    }
}

/// A request's fault as decided on arrival, with the settings it uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub kind: FaultKind,
    pub stall: Duration,
    pub retry_after_s: u32,
}

/// The fault settings of a running server and the seeded draw that applies them.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    inner: Mutex<Draw>,
    injected: AtomicU64,
}

#[derive(Debug)]
struct Draw {
    settings: FaultSettings,
    rng: StdRng,
}

/// The fault a request's fault header requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultOverride {
    /// No header: the server's settings decide.
    None,
    /// `none`: the request does not fail.
    Suppress,
    /// A kind: the request fails that way.
    Force(FaultKind),
}

impl FaultInjector {
    pub(crate) fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            inner: Mutex::new(Draw {
                settings,
                // A distinct stream from the output text's, which also derives from the seed.
                rng: StdRng::seed_from_u64(seed ^ 0xFA17_FA17_FA17_FA17),
            }),
            injected: AtomicU64::new(0),
        }
    }

    pub(crate) fn settings(&self) -> FaultSettings {
        self.draw().settings
    }

    pub(crate) fn set(&self, settings: FaultSettings) {
        self.draw().settings = settings;
    }

    /// Returns the number of faults injected so far.
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Decides whether a request fails. A request without a fault header draws from the seeded
    /// generator only while a fault kind is set, so turning faults on and off does not shift
    /// the draws of other requests.
    pub(crate) fn decide(&self, header: FaultOverride) -> Option<Fault> {
        let mut draw = self.draw();
        let settings = draw.settings;
        let kind = match header {
            FaultOverride::Suppress => None,
            FaultOverride::Force(kind) => Some(kind),
            FaultOverride::None => {
                let kind = settings.kind?;
                (draw.rng.random::<f64>() < settings.rate).then_some(kind)
            }
        }?;
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(Fault {
            kind,
            stall: settings.stall(),
            retry_after_s: settings.retry_after_s,
        })
    }

    fn draw(&self) -> std::sync::MutexGuard<'_, Draw> {
        // The settings stay valid if a holder panicked; only a bug can do that.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.as_str().parse::<FaultKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
    }

    #[test]
    fn unknown_kind_lists_valid_names() {
        let err = "explode".parse::<FaultKind>().unwrap_err();
        assert!(err.contains("rate-limited"), "{err}");
    }

    #[test]
    fn rate_outside_fraction_rejected() {
        let settings = FaultSettings {
            rate: 1.5,
            ..FaultSettings::default()
        };
        assert!(settings.validate().is_err());
    }

    #[test]
    fn draw_is_seeded() {
        let settings = FaultSettings {
            kind: Some(FaultKind::Unavailable),
            rate: 0.5,
            ..FaultSettings::default()
        };
        let pattern = |seed| {
            let injector = FaultInjector::new(settings, seed);
            (0..64)
                .map(|_| injector.decide(FaultOverride::None).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(pattern(7), pattern(7));
        let failures = pattern(7).iter().filter(|failed| **failed).count();
        assert!(
            (16..=48).contains(&failures),
            "{failures} of 64 at rate 0.5"
        );
    }

    #[test]
    fn header_overrides_settings() {
        let injector = FaultInjector::new(FaultSettings::default(), 0);
        assert!(injector.decide(FaultOverride::None).is_none());
        let forced = injector.decide(FaultOverride::Force(FaultKind::Stall));
        assert_eq!(forced.map(|fault| fault.kind), Some(FaultKind::Stall));
        injector.set(FaultSettings {
            kind: Some(FaultKind::Disconnect),
            ..FaultSettings::default()
        });
        assert!(injector.decide(FaultOverride::Suppress).is_none());
        assert_eq!(injector.injected(), 1);
    }
}
