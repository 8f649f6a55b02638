//! Charts as self-contained inline SVG: line charts with point markers and bar charts.
//!
//! The SVG is written by hand so that the HTML report needs no fonts, scripts or network
//! fetches: text is drawn by the browser with its default sans-serif font. Axes start at 0 when
//! every value is positive, and tick steps are 1, 2 or 5 times a power of ten.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 48.0;

/// Colours of the series, in order (the Tableau 10 palette).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Points of this series drawn with a hollow ring, e.g. turns that compacted.
    pub marked: Vec<(f64, f64)>,
}

/// A line chart with one line per series.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Legend text of the hollow rings, shown when any series has marked points.
    pub marker_label: Option<String>,
}

/// A bar chart with labelled bars.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bars: Vec<(String, f64)>,
}

impl LineChart {
    /// Returns whether the chart has at least one point to draw.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|series| !series.points.is_empty())
    }

    /// Renders the chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let mut svg = open_svg(&self.title);
        if !self.has_data() {
            write_no_data(&mut svg);
            svg.push_str("</svg>");
            return svg;
        }
        let points = self.series.iter().flat_map(|series| &series.points);
        let (x_min, x_max) = extent(points.clone().map(|point| point.0));
        let (y_min, y_max) = extent(points.map(|point| point.1));
        let x_axis = Axis::new(x_min, x_max);
        let y_axis = Axis::new(y_min, y_max);
        write_axes(&mut svg, &x_axis, &y_axis, &self.x_label, &self.y_label);

        for (index, series) in self.series.iter().enumerate() {
            let colour = PALETTE[index % PALETTE.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", x_axis.to_px_x(x), y_axis.to_px_y(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            for &(x, y) in &series.points {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#,
                    x_axis.to_px_x(x),
                    y_axis.to_px_y(y)
                );
            }
            for &(x, y) in &series.marked {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="6" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                    x_axis.to_px_x(x),
                    y_axis.to_px_y(y)
                );
            }
        }

        let mut legend: Vec<(String, LegendMark)> = self
            .series
            .iter()
            .enumerate()
            .map(|(index, series)| (series.name.clone(), LegendMark::Line(index)))
            .collect();
        if let Some(label) = &self.marker_label
            && self.series.iter().any(|series| !series.marked.is_empty())
        {
            legend.push((label.clone(), LegendMark::Ring));
        }
        write_legend(&mut svg, &legend);
        svg.push_str("</svg>");
        svg
    }
}

impl BarChart {
    pub fn has_data(&self) -> bool {
        !self.bars.is_empty()
    }

    /// Renders the chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let mut svg = open_svg(&self.title);
        if !self.has_data() {
            write_no_data(&mut svg);
            svg.push_str("</svg>");
            return svg;
        }
        let (y_min, y_max) = extent(self.bars.iter().map(|bar| bar.1));
        let y_axis = Axis::new(y_min, y_max);
        write_y_axis(&mut svg, &y_axis, &self.y_label);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"#,
            LEFT + plot_width() / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label)
        );

        let slot = plot_width() / self.bars.len() as f64;
        let bar_width = (slot * 0.8).max(1.0);
        // Label every bar when they fit, else about ten of them.
        let label_every = (self.bars.len() / 10).max(1);
        for (index, (label, value)) in self.bars.iter().enumerate() {
            let x = LEFT + slot * index as f64 + (slot - bar_width) / 2.0;
            let top = y_axis.to_px_y(*value);
            let base = y_axis.to_px_y(y_axis.low.max(0.0));
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar_width:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                top.min(base),
                (base - top).abs(),
                PALETTE[0],
                escape(label),
                format_tick(*value)
            );
            if index % label_every == 0 {
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                    x + bar_width / 2.0,
                    HEIGHT - BOTTOM + 16.0,
                    escape(label)
                );
            }
        }
        svg.push_str("</svg>");
        svg
    }
}

/// A numeric axis: its range, rounded out to whole tick steps.
struct Axis {
    low: f64,
    high: f64,
    step: f64,
}

impl Axis {
    fn new(min: f64, max: f64) -> Self {
        // Start at 0 for positive data so that bar heights and line levels compare by eye.
        let min = if min >= 0.0 { 0.0 } else { min };
        let (min, max) = if max > min {
            (min, max)
        } else {
            (min, min + 1.0)
        };
        let step = nice_step((max - min) / 5.0);
        Self {
            low: (min / step).floor() * step,
            high: (max / step).ceil() * step,
            step,
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let count = ((self.high - self.low) / self.step).round() as usize;
        (0..=count)
            .map(|index| self.low + self.step * index as f64)
            .collect()
    }

    fn to_px_x(&self, value: f64) -> f64 {
        LEFT + (value - self.low) / (self.high - self.low) * plot_width()
    }

    fn to_px_y(&self, value: f64) -> f64 {
        HEIGHT - BOTTOM - (value - self.low) / (self.high - self.low) * plot_height()
    }
}

enum LegendMark {
    Line(usize),
    Ring,
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

/// Returns 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|value| value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        })
}

fn open_svg(title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" role="img"><title>{0}</title><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="15" font-weight="bold">{0}</text>"#,
        escape(title)
    )
}

fn write_no_data(svg: &mut String) {
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="14" fill="#777">no data</text>"##,
        WIDTH / 2.0,
        HEIGHT / 2.0
    );
}

fn write_axes(svg: &mut String, x_axis: &Axis, y_axis: &Axis, x_label: &str, y_label: &str) {
    write_y_axis(svg, y_axis, y_label);
    for tick in x_axis.ticks() {
        let x = x_axis.to_px_x(tick);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 4.0,
            HEIGHT - BOTTOM + 16.0,
            format_tick(tick)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"#,
        LEFT + plot_width() / 2.0,
        HEIGHT - 8.0,
        escape(x_label)
    );
}

fn write_y_axis(svg: &mut String, y_axis: &Axis, y_label: &str) {
    for tick in y_axis.ticks() {
        let y = y_axis.to_px_y(tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            format_tick(tick)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{0:.1}" stroke="#333"/><line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#333"/>"##,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT
    );
    let middle = TOP + plot_height() / 2.0;
    let _ = write!(
        svg,
        r#"<text x="14" y="{middle:.1}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {middle:.1})">{}</text>"#,
        escape(y_label)
    );
}

fn write_legend(svg: &mut String, entries: &[(String, LegendMark)]) {
    let mut x = LEFT;
    let y = 40.0;
    for (name, mark) in entries {
        match mark {
            LegendMark::Line(index) => {
                let _ = write!(
                    svg,
                    r#"<line x1="{x:.1}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{2}" stroke-width="3"/>"#,
                    y - 4.0,
                    x + 16.0,
                    PALETTE[index % PALETTE.len()]
                );
            }
            LegendMark::Ring => {
                let _ = write!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="none" stroke="#333" stroke-width="2"/>"##,
                    x + 8.0,
                    y - 4.0
                );
            }
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}" font-size="12">{}</text>"#,
            x + 20.0,
            escape(name)
        );
        // Advance by an estimate of the text width: about 7 px per character at 12 px.
        x += 32.0 + 7.0 * name.chars().count() as f64;
    }
}

/// Formats a tick or value with as few digits as its size needs.
pub fn format_tick(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Escapes text for XML and HTML.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(120.0), 200.0);
    }

    #[test]
    fn axis_starts_at_zero_for_positive_data() {
        let axis = Axis::new(480.0, 530.0);
        assert_eq!(axis.low, 0.0);
        assert!(axis.high >= 530.0);
    }

    #[test]
    fn empty_chart_says_no_data() {
        let chart = LineChart {
            title: "TTFT".into(),
            x_label: "turn".into(),
            y_label: "ms".into(),
            series: vec![],
            marker_label: None,
        };
        assert!(chart.to_svg().contains("no data"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
