//! A hand-written 900×400 SVG line chart: replicas (left axis) and backlog (right
//! axis) of both scalers over time.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 45.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// One line of the chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub dashed: bool,
    /// Plotted against the right (backlog) axis instead of the left (replicas) one.
    pub right_axis: bool,
    /// (seconds, value)
    pub points: &'a [(f64, f64)],
}

/// Axis ranges of a chart: time in seconds, left and right axis tops.
struct Frame {
    end: f64,
    left: (f64, f64),
    right: (f64, f64),
}

impl Frame {
    fn px(&self, t: f64) -> f64 {
        LEFT + PLOT_W * t / self.end
    }

    fn py(&self, value: f64, right_axis: bool) -> f64 {
        let top = if right_axis {
            self.right.1
        } else {
            self.left.1
        };
        TOP + PLOT_H * (1.0 - value / top)
    }
}

/// Renders the chart; `end` is the simulated time in seconds.
pub fn chart(title: &str, end: f64, left_max: f64, series: &[Series<'_>]) -> String {
    let right_max = series
        .iter()
        .filter(|line| line.right_axis)
        .flat_map(|line| line.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let frame = Frame {
        end,
        left: nice(left_max),
        right: nice(right_max),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="20" font-size="15" font-weight="bold">{title}</text>"#
    );
    axes(&mut out, &frame);
    for line in series {
        let mut points = String::new();
        for &(t, value) in line.points {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                frame.px(t),
                frame.py(value, line.right_axis)
            );
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5"{} points="{}"/>"#,
            line.color,
            dash(line),
            points.trim_end()
        );
    }
    legend(&mut out, series);
    out.push_str("</svg>\n");
    out
}

fn dash(line: &Series<'_>) -> &'static str {
    if line.dashed {
        r#" stroke-dasharray="5 3""#
    } else {
        ""
    }
}

/// Grid, tick labels and axis titles: time (x), replicas (left), backlog (right).
fn axes(out: &mut String, frame: &Frame) {
    let minutes = frame.end / 60.0;
    let minute_step = if minutes > 20.0 { 5.0 } else { 2.0 };
    let mut minute = 0.0;
    while minute <= minutes + 1e-9 {
        let px = frame.px(minute * 60.0);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{minute}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 16.0
        );
        minute += minute_step;
    }
    let (step, top) = frame.left;
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let py = frame.py(tick, false);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{tick}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            py + 4.0
        );
        tick += step;
    }
    let (step, top) = frame.right;
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{tick}</text>"#,
            LEFT + PLOT_W + 6.0,
            frame.py(tick, true) + 4.0
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (min)</text>"#,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 8.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(16 {0:.1}) rotate(-90)" text-anchor="middle">replicas (solid)</text><text transform="translate({1:.1} {0:.1}) rotate(90)" text-anchor="middle">backlog, events (dashed)</text>"#,
        TOP + PLOT_H / 2.0,
        WIDTH - 12.0
    );
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W:.1}" height="{PLOT_H:.1}" fill="none" stroke="black"/>"#
    );
}

/// Legend box, top right inside the plot.
fn legend(out: &mut String, series: &[Series<'_>]) {
    let (lx, ly) = (LEFT + PLOT_W - 210.0, TOP + 8.0);
    let rows = f64::from(u32::try_from(series.len()).unwrap_or(0));
    let _ = writeln!(
        out,
        r##"<rect x="{lx:.1}" y="{ly:.1}" width="200" height="{:.1}" fill="white" fill-opacity="0.85" stroke="#999"/>"##,
        8.0 + 16.0 * rows
    );
    let mut row_y = ly + 16.0;
    for line in series {
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{}/><text x="{:.1}" y="{row_y:.1}">{}</text>"#,
            lx + 8.0,
            row_y - 4.0,
            lx + 36.0,
            row_y - 4.0,
            line.color,
            dash(line),
            lx + 42.0,
            line.label
        );
        row_y += 16.0;
    }
}

/// A tick step of 1, 2 or 5 × 10ⁿ giving about 5 ticks, and the axis top it implies.
fn nice(max: f64) -> (f64, f64) {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * magnitude)
        .find(|&step| step >= raw)
        .unwrap_or(10.0 * magnitude)
        .max(1.0);
    (step, (max / step).ceil() * step)
}
