//! `--plot FILE.svg`: the 99th-percentile latency of each tenant per one-second bucket of
//! send time, drawn as a line chart in a plain SVG file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Width and height of the chart in SVG user units (pixels when shown at 100 %).
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 480.0;

/// Space around the plot area for the axis labels, the title and the legend.
const MARGIN_LEFT: f64 = 72.0;
const MARGIN_RIGHT: f64 = 200.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 48.0;

/// Line colors, one per series in order; they repeat after the last.
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Ticks drawn on each axis, about; the step is rounded to 1, 2 or 5 times a power of ten.
const TARGET_TICKS: f64 = 6.0;

/// Latencies of one tenant, keyed by the second of the send time since the run's origin.
#[derive(Debug, Default)]
pub struct LatencySeries {
    buckets: BTreeMap<u32, Vec<u32>>,
}

impl LatencySeries {
    /// Records one latency of a message sent `sent_ns` after the origin. Latencies above
    /// u32::MAX microseconds (71 minutes) are recorded as that.
    pub fn record(&mut self, sent_ns: u64, latency_us: u64) {
        let second = u32::try_from(sent_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let latency = u32::try_from(latency_us).unwrap_or(u32::MAX);
        self.buckets.entry(second).or_default().push(latency);
    }

    /// Adds the samples of `other` to these.
    pub fn merge(&mut self, other: LatencySeries) {
        for (second, samples) in other.buckets {
            self.buckets.entry(second).or_default().extend(samples);
        }
    }

    /// Returns `(second, p99 in milliseconds)` for every second with a sample, in order.
    /// The percentile is the nearest-rank value of the bucket's samples.
    pub fn p99_per_second(&self) -> Vec<(f64, f64)> {
        self.buckets
            .iter()
            .map(|(&second, samples)| {
                let mut sorted = samples.clone();
                sorted.sort_unstable();
                let rank = ((sorted.len() as f64) * 0.99).ceil() as usize;
                let p99 = sorted[rank.clamp(1, sorted.len()) - 1];
                (second as f64, p99 as f64 / 1000.0)
            })
            .collect()
    }
}

/// One line of the chart.
pub struct Line {
    pub name: String,
    /// `(x, y)` points in data units, in ascending x.
    pub points: Vec<(f64, f64)>,
}

/// Writes the p99 per second of each named series to `path` as an SVG chart.
pub fn write_latency_plot(
    path: &Path,
    title: &str,
    series: &[(String, &LatencySeries)],
) -> Result<(), String> {
    let lines: Vec<Line> = series
        .iter()
        .map(|(name, series)| Line {
            name: name.clone(),
            points: series.p99_per_second(),
        })
        .collect();
    let svg = render_svg(
        title,
        "seconds since start (send time)",
        "p99 latency, ms",
        &lines,
    );
    std::fs::write(path, svg)
        .map_err(|e| format!("failed to write the plot to {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "latency plot written");
    Ok(())
}

/// Renders a line chart with axes from zero to the largest value, ticks, a legend and a
/// title. Lines with no points are listed in the legend only.
pub fn render_svg(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    let points = lines.iter().flat_map(|line| &line.points);
    let x_max = points.clone().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let y_max = points.map(|p| p.1).fold(0.0, f64::max).max(0.001);
    let x_step = tick_step(x_max);
    let y_step = tick_step(y_max);
    let x_top = (x_max / x_step).ceil() * x_step;
    let y_top = (y_max / y_step).ceil() * y_step;

    let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x_at = |x: f64| MARGIN_LEFT + x / x_top * plot_width;
    let y_at = |y: f64| MARGIN_TOP + plot_height - y / y_top * plot_height;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        MARGIN_LEFT + plot_width / 2.0,
        escape(title)
    );

    // Grid lines and tick labels.
    for tick in ticks(y_top, y_step) {
        let y = y_at(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##,
            MARGIN_LEFT + plot_width
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            format_tick(tick, y_step)
        );
    }
    for tick in ticks(x_top, x_step) {
        let x = x_at(tick);
        let bottom = MARGIN_TOP + plot_height;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{MARGIN_TOP}" x2="{x:.1}" y2="{bottom:.1}" stroke="#f0f0f0"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 16.0,
            format_tick(tick, x_step)
        );
    }

    // Axes and their labels.
    let bottom = MARGIN_TOP + plot_height;
    let _ = writeln!(
        svg,
        r#"<polyline points="{MARGIN_LEFT},{MARGIN_TOP} {MARGIN_LEFT},{bottom} {:.1},{bottom}" fill="none" stroke="black"/>"#,
        MARGIN_LEFT + plot_width
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        MARGIN_LEFT + plot_width / 2.0,
        HEIGHT - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        MARGIN_TOP + plot_height / 2.0,
        escape(y_label)
    );

    // One polyline per series, and the legend.
    for (index, line) in lines.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        if !line.points.is_empty() {
            let mut coordinates = String::new();
            for &(x, y) in &line.points {
                let _ = write!(coordinates, "{:.1},{:.1} ", x_at(x), y_at(y));
            }
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
                coordinates.trim_end()
            );
        }
        let legend_x = MARGIN_LEFT + plot_width + 16.0;
        let legend_y = MARGIN_TOP + 8.0 + index as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="3"/>"#,
            legend_x + 18.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 24.0,
            legend_y + 4.0,
            escape(&line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Returns a tick step of 1, 2 or 5 times a power of ten that splits `max` into about
/// [`TARGET_TICKS`] parts.
fn tick_step(max: f64) -> f64 {
    let raw = max / TARGET_TICKS;
    let power = 10f64.powf(raw.log10().floor());
    let scaled = raw / power;
    let factor = if scaled <= 1.0 {
        1.0
    } else if scaled <= 2.0 {
        2.0
    } else if scaled <= 5.0 {
        5.0
    } else {
        10.0
    };
    factor * power
}

/// Returns the ticks 0, step, 2 × step, ... up to `top`.
fn ticks(top: f64, step: f64) -> Vec<f64> {
    let count = (top / step).round() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// Formats a tick with as many decimals as its step needs.
fn format_tick(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{value:.decimals$}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_taken_per_second() {
        let mut series = LatencySeries::default();
        for i in 1..=100 {
            series.record(500_000_000, i * 1000);
        }
        series.record(2_100_000_000, 7000);

        let points = series.p99_per_second();

        assert_eq!(points, vec![(0.0, 99.0), (2.0, 7.0)]);
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(60.0), 10.0);
        assert_eq!(tick_step(7.0), 2.0);
        assert_eq!(tick_step(0.9), 0.2);
        assert_eq!(tick_step(250.0), 50.0);
    }

    #[test]
    fn svg_has_one_line_per_series() {
        let lines = vec![
            Line {
                name: "lt-0 <quiet>".to_string(),
                points: vec![(0.0, 1.5), (1.0, 2.5)],
            },
            Line {
                name: "lt-1".to_string(),
                points: vec![(0.0, 3.0)],
            },
        ];

        let svg = render_svg("title & more", "x", "y", &lines);

        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("stroke-width=\"1.5\"").count(), 2);
        assert!(svg.contains("lt-0 &lt;quiet&gt;"));
        assert!(svg.contains("title &amp; more"));
    }

    #[test]
    fn empty_chart_still_renders() {
        let svg = render_svg("t", "x", "y", &[]);

        assert!(svg.contains("</svg>"));
        assert!(!svg.contains("NaN"));
    }
}
