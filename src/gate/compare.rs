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

/// The comparison method behind a verdict.
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
    /// The reason for a verdict that the numbers do not explain.
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn repetitions(metric: &str, values: &[f64]) -> Vec<RepetitionSummary> {
        values
            .iter()
            .map(|value| RepetitionSummary {
                metrics: BTreeMap::from([(metric.to_owned(), *value)]),
                counters: BTreeMap::from([("errors".to_owned(), 0), ("requests".to_owned(), 4)]),
            })
            .collect()
    }

    fn counters(counter: &str, values: &[u64]) -> Vec<RepetitionSummary> {
        values
            .iter()
            .map(|value| RepetitionSummary {
                metrics: BTreeMap::new(),
                counters: BTreeMap::from([(counter.to_owned(), *value)]),
            })
            .collect()
    }

    fn verdict_of(verdicts: &[MetricVerdict], metric: &str) -> MetricVerdict {
        verdicts
            .iter()
            .find(|verdict| verdict.metric == metric)
            .unwrap_or_else(|| panic!("no verdict for {metric}: {verdicts:?}"))
            .clone()
    }

    const BASE: [f64; 5] = [20.0, 20.4, 19.8, 20.2, 20.1];

    #[test]
    fn latency_verdicts_by_case() {
        let cases: &[(&str, &str, [f64; 5], Verdict)] = &[
            ("same values", "ttft.p50", BASE, Verdict::Pass),
            (
                "30 % slower",
                "ttft.p50",
                [26.0, 26.5, 25.7, 26.3, 26.1],
                Verdict::Regressed,
            ),
            (
                "5 % slower, significant but within tolerance",
                "ttft.p50",
                [21.0, 21.4, 20.8, 21.2, 21.1],
                Verdict::Pass,
            ),
            (
                "one slow repetition",
                "ttft.p50",
                [20.0, 20.4, 19.8, 20.2, 60.0],
                Verdict::Pass,
            ),
            (
                "30 % faster",
                "ttft.p50",
                [14.0, 14.3, 13.9, 14.1, 14.0],
                Verdict::Improved,
            ),
            (
                "throughput 30 % lower",
                "throughput",
                [14.0, 14.3, 13.9, 14.1, 14.0],
                Verdict::Regressed,
            ),
            (
                "throughput 30 % higher",
                "throughput",
                [26.0, 26.5, 25.7, 26.3, 26.1],
                Verdict::Improved,
            ),
        ];
        for (case, metric, new, expected) in cases {
            let verdicts = compare(
                Some(&repetitions(metric, &BASE)),
                &repetitions(metric, new),
                &Gates::default(),
            );
            let verdict = verdict_of(&verdicts, metric);
            assert_eq!(verdict.verdict, *expected, "{case}: {verdict:?}");
        }
    }

    #[test]
    fn regression_reports_numbers() {
        let new = [26.0, 26.5, 25.7, 26.3, 26.1];
        let verdicts = compare(
            Some(&repetitions("ttft.p50", &BASE)),
            &repetitions("ttft.p50", &new),
            &Gates::default(),
        );
        let verdict = verdict_of(&verdicts, "ttft.p50");
        assert!(
            (verdict.change.unwrap() - 0.2995).abs() < 1e-3,
            "{verdict:?}"
        );
        assert!((verdict.p_value.unwrap() - 1.0 / 252.0).abs() < 1e-12);
        assert_eq!(
            verdict.tolerance,
            Some(crate::gate::DEFAULT_LATENCY_TOLERANCE)
        );
    }

    #[test]
    fn two_repetitions_are_not_enough() {
        let verdicts = compare(
            Some(&repetitions("ttft.p50", &[20.0, 20.0])),
            &repetitions("ttft.p50", &[40.0, 40.0]),
            &Gates::default(),
        );
        assert_eq!(
            verdict_of(&verdicts, "ttft.p50").verdict,
            Verdict::NotEnoughData
        );
    }

    #[test]
    fn missing_baseline_keeps_new_value() {
        let verdicts = compare(None, &repetitions("ttft.p50", &BASE), &Gates::default());
        let verdict = verdict_of(&verdicts, "ttft.p50");
        assert_eq!(verdict.verdict, Verdict::NoBaseline);
        assert!(verdict.new.is_some());
    }

    /// Case name, baseline values, new values, absolute tolerance, expected verdict.
    type CounterCase<'a> = (&'a str, &'a [u64], &'a [u64], u64, Verdict);

    #[test]
    fn counter_verdicts_by_case() {
        let cases: &[CounterCase] = &[
            ("equal", &[1456; 3], &[1456; 3], 0, Verdict::Pass),
            (
                "one token fewer",
                &[1456; 3],
                &[1456, 1455, 1456],
                0,
                Verdict::Regressed,
            ),
            (
                "within tolerance",
                &[1456; 3],
                &[1440; 3],
                16,
                Verdict::Pass,
            ),
            ("more hits", &[1456; 3], &[1500; 3], 0, Verdict::Improved),
        ];
        for (case, baseline, new, tolerance, expected) in cases {
            let mut gates = Gates::default();
            gates
                .counter_tolerances
                .insert("prefix_cache_hit_tokens".to_owned(), *tolerance);
            let verdicts = compare(
                Some(&counters("prefix_cache_hit_tokens", baseline)),
                &counters("prefix_cache_hit_tokens", new),
                &gates,
            );
            let verdict = verdict_of(&verdicts, "prefix_cache_hit_tokens");
            assert_eq!(verdict.verdict, *expected, "{case}: {verdict:?}");
        }
    }

    #[test]
    fn exact_counter_fails_either_way() {
        for new in [99, 101] {
            let verdicts = compare(
                Some(&counters("input_tokens", &[100; 3])),
                &counters("input_tokens", &[new; 3]),
                &Gates::default(),
            );
            assert_eq!(
                verdict_of(&verdicts, "input_tokens").verdict,
                Verdict::Regressed,
                "input_tokens {new}"
            );
        }
    }

    #[test]
    fn limits_check_the_worst_repetition() {
        let mut gates = Gates::default();
        gates.limits.push(Limit::at_most("ttft.p99", 2000.0));
        let verdicts = compare(None, &repetitions("ttft.p99", &[1500.0, 2100.0]), &gates);
        let limit = verdict_of(&verdicts, "ttft.p99 <= 2000");
        assert_eq!(limit.verdict, Verdict::Regressed);
        assert_eq!(limit.new, Some(2100.0));
        assert_eq!(
            verdict_of(&verdicts, "error_rate <= 0").verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn wildcard_tolerances_by_specificity() {
        let mut gates = Gates::default();
        gates.tolerances.insert("*.p99".to_owned(), 0.5);
        gates.tolerances.insert("itl.*".to_owned(), 1.0);
        gates.tolerances.insert("itl.p50".to_owned(), 0.2);
        assert_eq!(gates.tolerance("itl.p50"), 0.2);
        assert_eq!(gates.tolerance("itl.p99"), 1.0);
        assert_eq!(gates.tolerance("ttft.p99"), 0.5);
        assert_eq!(gates.tolerance("ttft.p50"), gates.latency_tolerance);
    }

    #[test]
    fn ungated_metrics_are_skipped() {
        let mut gates = Gates::default();
        gates.ungated.insert("ttft.p50".to_owned());
        let verdicts = compare(None, &repetitions("ttft.p50", &BASE), &gates);
        assert!(verdicts.iter().all(|verdict| verdict.metric != "ttft.p50"));
    }
}
