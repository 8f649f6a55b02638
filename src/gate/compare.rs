//! The comparison itself: one [`MetricVerdict`] per gated metric, counter and limit.

use serde::{Deserialize, Serialize};

use super::spec::{
    CounterDirection, Gates, Limit, LimitBound, MetricDirection, RepetitionSummary,
    counter_direction, metric_direction,
};
use crate::significance::{Alternative, geometric_mean, mann_whitney_u};

/// The outcome of one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Improved,
    Regressed,
    /// The baseline is missing or does not contain the metric.
    NoBaseline,
    /// Too few repetitions, or values the method cannot use (zero or missing).
    NotEnoughData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::NoBaseline => "no baseline",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// How a gate compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// Significance test plus geometric-mean ratio; `change` and `tolerance` are fractions.
    Relative,
    /// Range of the baseline's values; `change` and `tolerance` are absolute counts.
    Counter,
    /// Absolute limit; `baseline` is the limit's bound.
    Limit,
}

/// The verdict on one metric, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricVerdict {
    /// The metric, counter or limit, such as `ttft.p99`, `prefix_cache_hit_tokens` or
    /// `error_rate <= 0`.
    pub metric: String,
    pub kind: GateKind,
    pub verdict: Verdict,
    /// Baseline geometric mean (relative), median (counter) or bound (limit).
    pub baseline: Option<f64>,
    /// New geometric mean (relative), the value furthest from the baseline's range (counter)
    /// or the worst repetition (limit).
    pub new: Option<f64>,
    /// `new / baseline - 1` (relative) or `new - baseline` (counter).
    pub change: Option<f64>,
    pub tolerance: Option<f64>,
    /// p-value of the one-sided test in the direction of the verdict (the bad direction
    /// unless the verdict is an improvement).
    pub p_value: Option<f64>,
    /// Why the verdict is what it is, for verdicts the numbers do not explain.
    pub note: Option<String>,
}

impl MetricVerdict {
    fn new(metric: &str, kind: GateKind, verdict: Verdict) -> Self {
        Self {
            metric: metric.to_owned(),
            kind,
            verdict,
            baseline: None,
            new: None,
            change: None,
            tolerance: None,
            p_value: None,
            note: None,
        }
    }
}

/// Compares the new repetitions with the baseline's (`None` when there is no baseline) and
/// returns a verdict for every gated metric, counter and limit, in that order.
pub fn compare(
    baseline: Option<&[RepetitionSummary]>,
    new: &[RepetitionSummary],
    gates: &Gates,
) -> Vec<MetricVerdict> {
    let mut verdicts = Vec::new();
    for metric in names(new, |repetition| repetition.metrics.keys()) {
        if !gates.is_gated(&metric) {
            continue;
        }
        let new_values = values(new, |repetition| repetition.metrics.get(&metric).copied());
        let baseline_values = values(baseline.unwrap_or_default(), |repetition| {
            repetition.metrics.get(&metric).copied()
        });
        let verdict = compare_relative(&metric, &baseline_values, &new_values, gates);
        verdicts.push(verdict);
    }
    for counter in names(new, |repetition| repetition.counters.keys()) {
        if !gates.is_gated(&counter) {
            continue;
        }
        let new_values = values(new, |repetition| repetition.counters.get(&counter).copied());
        let baseline_values = values(baseline.unwrap_or_default(), |repetition| {
            repetition.counters.get(&counter).copied()
        });
        let verdict = compare_counter(&counter, &baseline_values, &new_values, gates);
        verdicts.push(verdict);
    }
    for limit in &gates.limits {
        verdicts.push(check_limit(limit, new));
    }
    verdicts
}

fn names<'a, I>(
    repetitions: &'a [RepetitionSummary],
    keys: impl Fn(&'a RepetitionSummary) -> I,
) -> Vec<String>
where
    I: Iterator<Item = &'a String>,
{
    let mut names: Vec<String> = repetitions.iter().flat_map(keys).cloned().collect();
    names.sort();
    names.dedup();
    names
}

fn values<T>(
    repetitions: &[RepetitionSummary],
    value: impl Fn(&RepetitionSummary) -> Option<T>,
) -> Vec<Option<T>> {
    repetitions.iter().map(value).collect()
}

/// Returns the smallest p-value a one-sided rank test can reach with these sample sizes,
/// `1 / C(n_a + n_b, n_a)`.
fn smallest_p_value(n_a: usize, n_b: usize) -> f64 {
    let mut arrangements = 1.0f64;
    for i in 0..n_a {
        arrangements = arrangements * (n_b + i + 1) as f64 / (i + 1) as f64;
    }
    1.0 / arrangements
}

fn compare_relative(
    metric: &str,
    baseline: &[Option<f64>],
    new: &[Option<f64>],
    gates: &Gates,
) -> MetricVerdict {
    let tolerance = gates.tolerance(metric);
    let mut verdict = MetricVerdict::new(metric, GateKind::Relative, Verdict::NotEnoughData);
    verdict.tolerance = Some(tolerance);

    if baseline.iter().all(Option::is_none) {
        verdict.verdict = Verdict::NoBaseline;
        verdict.new = complete(new).and_then(|new| geometric_mean(&new));
        return verdict;
    }
    let (Some(baseline), Some(new)) = (complete(baseline), complete(new)) else {
        verdict.note = Some("a repetition did not measure this metric".to_owned());
        return verdict;
    };
    let (Some(baseline_mean), Some(new_mean)) = (geometric_mean(&baseline), geometric_mean(&new))
    else {
        verdict.note = Some("a value is zero, so the geometric mean is undefined".to_owned());
        return verdict;
    };
    let ratio = new_mean / baseline_mean;
    verdict.baseline = Some(baseline_mean);
    verdict.new = Some(new_mean);
    verdict.change = Some(ratio - 1.0);
    if smallest_p_value(baseline.len(), new.len()) > gates.alpha {
        verdict.note = Some(format!(
            "{} baseline and {} new repetitions cannot reach p <= {}",
            baseline.len(),
            new.len(),
            gates.alpha
        ));
        return verdict;
    }

    let (worse, better) = match metric_direction(metric) {
        MetricDirection::LowerIsBetter => (Alternative::Greater, Alternative::Less),
        MetricDirection::HigherIsBetter => (Alternative::Less, Alternative::Greater),
    };
    let beyond = |alternative: Alternative| match alternative {
        Alternative::Greater => ratio > 1.0 + tolerance,
        Alternative::Less => ratio < 1.0 / (1.0 + tolerance),
    };
    let p_worse = mann_whitney_u(&baseline, &new, worse).map(|test| test.p_value);
    let p_better = mann_whitney_u(&baseline, &new, better).map(|test| test.p_value);
    let (Some(p_worse), Some(p_better)) = (p_worse, p_better) else {
        verdict.note = Some("a value is not finite".to_owned());
        return verdict;
    };

    verdict.p_value = Some(p_worse);
    verdict.verdict = if p_worse <= gates.alpha && beyond(worse) {
        Verdict::Regressed
    } else if p_better <= gates.alpha && beyond(better) {
        verdict.p_value = Some(p_better);
        Verdict::Improved
    } else {
        Verdict::Pass
    };
    verdict
}

fn complete(values: &[Option<f64>]) -> Option<Vec<f64>> {
    values.iter().copied().collect()
}

fn compare_counter(
    counter: &str,
    baseline: &[Option<u64>],
    new: &[Option<u64>],
    gates: &Gates,
) -> MetricVerdict {
    let tolerance = gates.counter_tolerance(counter);
    let mut verdict = MetricVerdict::new(counter, GateKind::Counter, Verdict::NotEnoughData);
    verdict.tolerance = Some(tolerance as f64);

    let mut baseline: Vec<u64> = baseline.iter().flatten().copied().collect();
    let mut new: Vec<u64> = new.iter().flatten().copied().collect();
    if new.is_empty() {
        verdict.note = Some("no repetition measured this counter".to_owned());
        return verdict;
    }
    if baseline.is_empty() {
        new.sort_unstable();
        verdict.verdict = Verdict::NoBaseline;
        verdict.new = Some(new[new.len() / 2] as f64);
        return verdict;
    }
    baseline.sort_unstable();
    let median = baseline[baseline.len() / 2];
    let low = baseline[0].saturating_sub(tolerance);
    let high = baseline[baseline.len() - 1].saturating_add(tolerance);

    // The value furthest outside the baseline's range, or the median's nearest when all fit.
    let furthest = new
        .iter()
        .copied()
        .max_by_key(|&value| value.abs_diff(median))
        .expect("new is not empty");
    let went_up = new.iter().any(|&value| value > high);
    let went_down = new.iter().any(|&value| value < low);
    verdict.baseline = Some(median as f64);
    verdict.new = Some(furthest as f64);
    verdict.change = Some(furthest as f64 - median as f64);
    verdict.verdict = match (counter_direction(counter), went_up, went_down) {
        (_, false, false) => Verdict::Pass,
        (CounterDirection::Exact, _, _) => Verdict::Regressed,
        (CounterDirection::LowerIsBetter, true, _) => Verdict::Regressed,
        (CounterDirection::HigherIsBetter, _, true) => Verdict::Regressed,
        _ => Verdict::Improved,
    };
    verdict
}

fn check_limit(limit: &Limit, new: &[RepetitionSummary]) -> MetricVerdict {
    let mut verdict =
        MetricVerdict::new(&limit.describe(), GateKind::Limit, Verdict::NotEnoughData);
    verdict.baseline = Some(match limit.bound {
        LimitBound::AtMost(bound) | LimitBound::AtLeast(bound) => bound,
    });
    let Some(values) = new
        .iter()
        .map(|repetition| repetition.limit_value(&limit.metric))
        .collect::<Option<Vec<f64>>>()
        .filter(|values| !values.is_empty())
    else {
        verdict.note = Some(format!("no repetition measured {}", limit.metric));
        return verdict;
    };
    let worst = match limit.bound {
        LimitBound::AtMost(_) => values.iter().copied().fold(f64::MIN, f64::max),
        LimitBound::AtLeast(_) => values.iter().copied().fold(f64::MAX, f64::min),
    };
    verdict.new = Some(worst);
    verdict.verdict = if limit.admits(worst) {
        Verdict::Pass
    } else {
        Verdict::Regressed
    };
    verdict
}
