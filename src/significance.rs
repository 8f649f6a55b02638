//! Distribution-free comparison of two samples: the one-sided Mann–Whitney U test and the
//! geometric-mean ratio.
//!
//! Method. Both samples are ranked together, tied values getting the mean of their ranks
//! (midranks). `U` of the candidate sample `b` is its rank sum minus `n_b (n_b + 1) / 2`, the
//! number of (a, b) pairs in which b is larger (ties count one half). Under the null hypothesis
//! that both samples come from one distribution, `U` is symmetric around `n_a n_b / 2`.
//!
//! - Without ties and with `n_a + n_b <= EXACT_LIMIT`, the p-value is exact: the distribution of
//!   `U` is counted over all `C(n_a + n_b, n_a)` equally likely rank assignments.
//! - Otherwise the normal approximation is used, with the variance corrected for ties and a
//!   continuity correction of 0.5.
//!
//! Assumptions: the values within each sample are independent and identically distributed
//! (for the gate, one value per repetition of a whole run, not per request). The test detects
//! a shift in location but not its size, so callers also compare the geometric-mean ratio with
//! a tolerance. With `n_a = n_b = 3` the smallest possible
//! p-value is 1/20 = 0.05, so a significance level of 0.05 needs at least 3 values per side, and
//! 5 per side (smallest p 1/252) gives the test real power.

use std::cmp::Ordering;

/// Largest combined sample size for which the exact distribution is counted.
const EXACT_LIMIT: usize = 60;

/// Direction of the shift the test looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// `b` tends to be larger than `a`.
    Greater,
    /// `b` tends to be smaller than `a`.
    Less,
}

/// The outcome of a one-sided Mann–Whitney U test of `b` against `a`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// Pairs in which `b` is larger, ties counting one half.
    pub u: f64,
    /// Probability, under the null hypothesis, of a `U` at least this extreme in the
    /// direction of the alternative.
    pub p_value: f64,
    /// Whether the p-value is exact (no ties, small samples) or from the normal approximation.
    pub exact: bool,
}

/// Runs the one-sided Mann–Whitney U test of `b` against `a`. Returns `None` when either
/// sample is empty or contains a non-finite value.
pub fn mann_whitney_u(a: &[f64], b: &[f64], alternative: Alternative) -> Option<MannWhitney> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|value| !value.is_finite()) {
        return None;
    }
    let (n_a, n_b) = (a.len(), b.len());
    let (ranks, tie_groups) = midranks(a, b);
    let rank_sum_b: f64 = ranks[n_a..].iter().sum();
    let u = rank_sum_b - (n_b * (n_b + 1)) as f64 / 2.0;
    let max_u = (n_a * n_b) as f64;
    // The test for "b smaller" is the test for "b larger" on the mirrored statistic.
    let u_directed = match alternative {
        Alternative::Greater => u,
        Alternative::Less => max_u - u,
    };

    let has_ties = tie_groups.iter().any(|&size| size > 1);
    if !has_ties && n_a + n_b <= EXACT_LIMIT {
        let p_value = exact_upper_tail(n_a, n_b, u_directed.round() as usize);
        return Some(MannWhitney {
            u,
            p_value,
            exact: true,
        });
    }

    let n = (n_a + n_b) as f64;
    let tie_term: f64 = tie_groups
        .iter()
        .map(|&t| (t * t * t - t) as f64)
        .sum::<f64>()
        / (n * (n - 1.0));
    let variance = (n_a * n_b) as f64 / 12.0 * ((n + 1.0) - tie_term);
    if variance <= 0.0 {
        // Every value is equal: no evidence in either direction.
        return Some(MannWhitney {
            u,
            p_value: 1.0,
            exact: false,
        });
    }
    let z = (u_directed - max_u / 2.0 - 0.5) / variance.sqrt();
    Some(MannWhitney {
        u,
        p_value: upper_normal_tail(z),
        exact: false,
    })
}

/// Returns the geometric mean of strictly positive values, or `None` when `values` is empty or
/// contains a value that is not finite and positive.
pub fn geometric_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty()
        || values
            .iter()
            .any(|value| !(value.is_finite() && *value > 0.0))
    {
        return None;
    }
    let mean_log = values.iter().map(|value| value.ln()).sum::<f64>() / values.len() as f64;
    Some(mean_log.exp())
}

/// Returns the midranks (1-based) of `a` followed by `b`, and the size of every group of
/// equal values.
fn midranks(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let values: Vec<f64> = a.iter().chain(b).copied().collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].partial_cmp(&values[j]).unwrap_or(Ordering::Equal));

    let mut ranks = vec![0.0; values.len()];
    let mut tie_groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share the mean of ranks start+1..=end.
        let midrank = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = midrank;
        }
        tie_groups.push(end - start);
        start = end;
    }
    (ranks, tie_groups)
}

/// Returns P(U >= u) for samples of sizes `n_a` and `n_b` without ties, by counting the
/// rank assignments with each value of U.
fn exact_upper_tail(n_a: usize, n_b: usize, u: usize) -> f64 {
    let max_u = n_a * n_b;
    if u > max_u {
        return 0.0;
    }
    // counts[i][j][k] would be the number of arrangements of i a-values and j b-values with
    // U = k; rolling over i keeps one (n_b + 1) × (max_u + 1) table per row. Each arrangement
    // either ends with an a-value (U unchanged) or a b-value (which exceeds all i a-values).
    let width = max_u + 1;
    let mut previous = vec![0.0f64; (n_b + 1) * width];
    for j in 0..=n_b {
        previous[j * width] = 1.0;
    }
    for i in 1..=n_a {
        let mut current = vec![0.0f64; (n_b + 1) * width];
        current[0] = 1.0;
        for j in 1..=n_b {
            for k in 0..width {
                let mut count = previous[j * width + k];
                if k >= i {
                    count += current[(j - 1) * width + k - i];
                }
                current[j * width + k] = count;
            }
        }
        previous = current;
    }
    let row = &previous[n_b * width..(n_b + 1) * width];
    let total: f64 = row.iter().sum();
    let tail: f64 = row[u..].iter().sum();
    tail / total
}

/// Returns P(Z >= z) for a standard normal Z.
fn upper_normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, from the Chebyshev fit in Numerical Recipes (3rd ed., §6.2),
/// with a relative error below 1.2e-7 everywhere.
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn exact_p_for_fully_separated_samples() {
        let result =
            mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], Alternative::Greater).unwrap();
        assert_eq!(result.u, 9.0);
        assert!(result.exact);
        assert!(
            close(result.p_value, 1.0 / 20.0, 1e-12),
            "{}",
            result.p_value
        );

        let five = mann_whitney_u(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[6.0, 7.0, 8.0, 9.0, 10.0],
            Alternative::Greater,
        );
        assert!(close(five.unwrap().p_value, 1.0 / 252.0, 1e-12));
    }

    #[test]
    fn wrong_direction_gives_large_p() {
        let result =
            mann_whitney_u(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0], Alternative::Greater).unwrap();
        assert_eq!(result.u, 0.0);
        assert!(close(result.p_value, 1.0, 1e-12));
        let less = mann_whitney_u(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0], Alternative::Less).unwrap();
        assert!(close(less.p_value, 1.0 / 20.0, 1e-12));
    }

    #[test]
    fn exact_distribution_of_small_case() {
        // n_a = 2, n_b = 2: U takes 0,1,2,2,3,4 over the 6 arrangements.
        assert!(close(exact_upper_tail(2, 2, 3), 2.0 / 6.0, 1e-12));
        assert!(close(exact_upper_tail(2, 2, 2), 4.0 / 6.0, 1e-12));
        assert!(close(exact_upper_tail(2, 2, 0), 1.0, 1e-12));
    }

    #[test]
    fn ties_use_the_corrected_normal_approximation() {
        // a = [1, 2, 2], b = [2, 3, 4]: the three 2s share ranks 2..=4, so the midranks of a
        // are 1, 3, 3 and of b 3, 5, 6; R_b = 14 and U = 14 − 6 = 8.
        let result =
            mann_whitney_u(&[1.0, 2.0, 2.0], &[2.0, 3.0, 4.0], Alternative::Greater).unwrap();
        assert_eq!(result.u, 8.0);
        assert!(!result.exact);
        // Tie group of 3: variance = 9/12 × (7 − 24/30) = 4.65; z = (8 − 4.5 − 0.5)/√4.65.
        let z: f64 = 3.0 / 4.65f64.sqrt();
        assert!(close(result.p_value, upper_normal_tail(z), 1e-12));
        assert!(close(result.p_value, 0.0820, 5e-4), "{}", result.p_value);
    }

    #[test]
    fn identical_samples_give_p_one() {
        let result = mann_whitney_u(&[5.0; 4], &[5.0; 4], Alternative::Greater).unwrap();
        assert_eq!(result.p_value, 1.0);
    }

    #[test]
    fn normal_tail_matches_known_values() {
        assert!(close(upper_normal_tail(0.0), 0.5, 1e-7));
        assert!(close(upper_normal_tail(1.644_853_6), 0.05, 1e-6));
        assert!(close(upper_normal_tail(-1.959_964), 0.975, 1e-6));
    }

    #[test]
    fn invalid_input_has_no_result() {
        assert!(mann_whitney_u(&[], &[1.0], Alternative::Greater).is_none());
        assert!(mann_whitney_u(&[f64::NAN], &[1.0], Alternative::Greater).is_none());
    }

    #[test]
    fn geometric_mean_of_powers() {
        assert!(close(geometric_mean(&[1.0, 100.0]).unwrap(), 10.0, 1e-12));
        assert_eq!(geometric_mean(&[1.0, 0.0]), None);
        assert_eq!(geometric_mean(&[]), None);
    }
}
