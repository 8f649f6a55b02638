//! When users start: all at once, one every N seconds, or as a Poisson process.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::{Serialize, Serializer};

/// The arrival pattern of users, parsed from `burst`, `steady:<seconds>` or
/// `poisson:<rate per second>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Every user starts at once.
    Burst,
    /// User `i` starts `i × interval` after the run starts.
    Steady { interval: Duration },
    /// Gaps between starts are exponentially distributed with mean `1 / rate` seconds.
    Poisson { rate_per_s: f64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid --user-arrival value {value:?}: {reason}; expected burst, steady:<seconds> or poisson:<rate per second>, e.g. steady:2 or poisson:0.5"
)]
pub struct ArrivalParseError {
    value: String,
    reason: &'static str,
}

impl FromStr for Arrival {
    type Err = ArrivalParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| ArrivalParseError {
            value: value.to_owned(),
            reason,
        };
        let (kind, parameter) = match value.split_once(':') {
            Some((kind, parameter)) => (kind, Some(parameter)),
            None => (value, None),
        };
        match (kind, parameter) {
            ("burst", None) => Ok(Arrival::Burst),
            ("burst", Some(_)) => Err(error("burst takes no parameter")),
            ("steady", Some(seconds)) => {
                let seconds: f64 = seconds
                    .trim()
                    .parse()
                    .map_err(|_| error("the interval is not a number"))?;
                if !seconds.is_finite() || seconds < 0.0 {
                    return Err(error(
                        "the interval must be a finite number of seconds >= 0",
                    ));
                }
                Ok(Arrival::Steady {
                    interval: Duration::from_secs_f64(seconds),
                })
            }
            ("poisson", Some(rate)) => {
                let rate: f64 = rate
                    .trim()
                    .parse()
                    .map_err(|_| error("the rate is not a number"))?;
                if !rate.is_finite() || rate <= 0.0 {
                    return Err(error(
                        "the rate must be a finite number of users per second > 0",
                    ));
                }
                Ok(Arrival::Poisson { rate_per_s: rate })
            }
            ("steady" | "poisson", None) => Err(error("the parameter after ':' is missing")),
            _ => Err(error("unknown arrival pattern")),
        }
    }
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arrival::Burst => f.write_str("burst"),
            Arrival::Steady { interval } => write!(f, "steady:{}", interval.as_secs_f64()),
            Arrival::Poisson { rate_per_s } => write!(f, "poisson:{rate_per_s}"),
        }
    }
}

impl Serialize for Arrival {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Arrival {
    /// Returns each user's start offset from the run start, in user order. Poisson gaps are
    /// drawn from an RNG seeded with `seed`, so a seed reproduces the schedule.
    pub fn start_offsets(&self, num_users: usize, seed: u64) -> Vec<Duration> {
        match *self {
            Arrival::Burst => vec![Duration::ZERO; num_users],
            Arrival::Steady { interval } => (0..num_users).map(|i| interval * i as u32).collect(),
            Arrival::Poisson { rate_per_s } => {
                let mut rng = StdRng::seed_from_u64(seed);
                let gaps = Exp::new(rate_per_s).expect("the rate was validated to be > 0");
                let mut at = 0.0;
                (0..num_users)
                    .map(|i| {
                        // The first user starts at once; the others follow after random gaps.
                        if i > 0 {
                            at += gaps.sample(&mut rng);
                        }
                        Duration::from_secs_f64(at)
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_values() {
        let cases = [
            ("burst", Arrival::Burst),
            (
                "steady:2",
                Arrival::Steady {
                    interval: Duration::from_secs(2),
                },
            ),
            (
                "steady:0.5",
                Arrival::Steady {
                    interval: Duration::from_millis(500),
                },
            ),
            ("poisson:1.5", Arrival::Poisson { rate_per_s: 1.5 }),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Arrival>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn rejects_invalid_values() {
        for text in [
            "steady:abc",
            "poisson:-1",
            "poisson:0",
            "steady",
            "burst:1",
            "ramp:3",
            "steady:inf",
        ] {
            let err = text.parse::<Arrival>().unwrap_err().to_string();
            assert!(err.contains(text), "{text}: {err}");
            assert!(err.contains("steady:<seconds>"), "{text}: {err}");
        }
    }

    #[test]
    fn steady_offsets_are_evenly_spaced() {
        let offsets = Arrival::Steady {
            interval: Duration::from_secs(3),
        }
        .start_offsets(3, 0);
        assert_eq!(
            offsets,
            [
                Duration::ZERO,
                Duration::from_secs(3),
                Duration::from_secs(6)
            ]
        );
    }

    #[test]
    fn poisson_offsets_are_seeded_and_increasing() {
        let arrival = Arrival::Poisson { rate_per_s: 2.0 };
        let first = arrival.start_offsets(50, 9);
        assert_eq!(first, arrival.start_offsets(50, 9));
        assert!(first.windows(2).all(|pair| pair[0] <= pair[1]));
        let mean_gap = first.last().unwrap().as_secs_f64() / 49.0;
        assert!((0.25..1.0).contains(&mean_gap), "mean gap {mean_gap}");
    }

    #[test]
    fn display_round_trips() {
        for text in ["burst", "steady:2", "poisson:0.5"] {
            assert_eq!(text.parse::<Arrival>().unwrap().to_string(), text);
        }
    }
}
