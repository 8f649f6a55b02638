//! Renders a [`Comparison`] as an aligned plain-text table for the terminal and as Markdown.

use std::fmt::Write as _;

use super::compare::{Comparison, MIN_SAMPLES, MetricRow};
use super::document::Table;

/// The note printed under every comparison, because the p-values need it to be read right.
pub const P_VALUE_NOTE: &str = "p: one-sided Mann–Whitney U test that B is worse than A, on the \
per-turn values of successful turns. Turns of one user share a cache state and a server, so \
per-turn values are not independent and p is indicative only. A row with p says worse or better \
when the test in that direction gives p < 0.05, else n.s. (not significant). Rows without p \
compare summaries, and their word follows the sign of the delta.";

/// Renders the comparison as a plain-text table with aligned columns.
pub fn render_comparison_text(comparison: &Comparison) -> String {
    let table = comparison_table(comparison);
    let widths: Vec<usize> = (0..table.header.len())
        .map(|column| {
            std::iter::once(&table.header)
                .chain(&table.rows)
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A = {}\nB = {}\n",
        comparison.label_a, comparison.label_b
    );
    for row in std::iter::once(&table.header).chain(&table.rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let padding = widths[column] - cell.chars().count();
            if column == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(padding));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(padding));
                line.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out, "\n{P_VALUE_NOTE}");
    out
}

/// Renders the comparison as a Markdown document.
pub fn render_comparison_markdown(comparison: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# clawperf compare\n\n- A: {}\n- B: {}\n",
        comparison.label_a, comparison.label_b
    );
    super::markdown::write_table(&mut out, &comparison_table(comparison));
    let _ = writeln!(out, "{P_VALUE_NOTE}");
    out
}

fn comparison_table(comparison: &Comparison) -> Table {
    Table {
        header: ["metric", "A", "B", "delta", "change", "", "p", "n (A/B)"]
            .map(String::from)
            .to_vec(),
        rows: comparison.rows.iter().map(table_row).collect(),
    }
}

fn table_row(row: &MetricRow) -> Vec<String> {
    let name = if row.unit.is_empty() {
        row.name.clone()
    } else {
        format!("{} ({})", row.name, row.unit)
    };
    let value = |value: Option<f64>| value.map_or("-".to_owned(), |value| format_value(value, row));
    let delta = row.delta().map_or("-".to_owned(), |delta| {
        format!("{}{}", sign(delta), format_value(delta.abs(), row))
    });
    let change = row
        .percent_change()
        .map_or("-".to_owned(), |percent| format!("{percent:+.1} %"));
    let p_value = match (row.p_value, row.samples) {
        (Some(p), _) if p < 0.001 => "<0.001".to_owned(),
        (Some(p), _) => format!("{p:.3}"),
        (None, Some((a, b))) if a < MIN_SAMPLES || b < MIN_SAMPLES => format!("n<{MIN_SAMPLES}"),
        (None, _) => String::new(),
    };
    let samples = row
        .samples
        .map_or(String::new(), |(a, b)| format!("{a}/{b}"));
    vec![
        name,
        value(row.a),
        value(row.b),
        delta,
        change,
        row.direction_word().to_owned(),
        p_value,
        samples,
    ]
}

fn sign(value: f64) -> &'static str {
    if value < 0.0 { "-" } else { "+" }
}

/// Counts have no decimals, rates and latencies two.
fn format_value(value: f64, row: &MetricRow) -> String {
    if row.unit.is_empty() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
