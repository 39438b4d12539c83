//! Hand-written SVG line charts for benchmark figures: a document, panels
//! with a linear or logarithmic axis each, grid lines with tick labels,
//! polylines with their points, legend entries. One copy for every plot the
//! tasks draw (`bench follow`, `loadtest`); no dependencies, since a plotting
//! crate would cost more to build than the tasks that use it.

use std::fmt::Write;

/// Series colours, in order.
pub const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// An SVG document being drawn.
pub struct Svg {
    out: String,
}

impl Svg {
    /// A `width` x `height` document on white, with `title` at the top left
    /// (or centred, with `centred`).
    pub fn new(width: f64, height: f64, title: &str, centred: bool) -> Self {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let (x, anchor) = if centred {
            (width / 2.0, "middle")
        } else {
            (70.0, "start")
        };
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="22" text-anchor="{anchor}" font-size="14">{}</text>"#,
            escape(title)
        );
        Self { out }
    }

    /// Text at (x, y); `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, x: f64, y: f64, anchor: &str, text: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    /// A legend entry: a short line in `colour` (dashed as `dash`), then `name`.
    pub fn legend(&mut self, x: f64, y: f64, colour: &str, dash: Dash, name: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"{}/>"#,
            x + 20.0,
            dash.attribute()
        );
        self.text(x + 26.0, y + 4.0, "start", name);
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// How a series' line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
}

impl Dash {
    fn attribute(self) -> &'static str {
        match self {
            Dash::Solid => "",
            Dash::Dashed => r#" stroke-dasharray="6,4""#,
            Dash::Dotted => r#" stroke-dasharray="2,3""#,
        }
    }
}

/// One axis: the range it shows, linear or logarithmic (then `min` > 0).
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    pub log: bool,
}

impl Axis {
    /// Where `value` falls, from 0 (min) to 1 (max); values below the
    /// minimum of a log axis sit on it.
    fn fraction(&self, value: f64) -> f64 {
        if self.log {
            let min = self.min.log10();
            (value.max(self.min).log10() - min) / (self.max.log10() - min).max(1e-9)
        } else {
            (value - self.min) / (self.max - self.min).max(1e-9)
        }
    }

    /// Tick values: every power of ten in range on a log axis, five even
    /// steps on a linear one.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut ticks = Vec::new();
            let mut decade = 10f64.powf(self.min.log10().floor());
            while decade <= self.max * 1.0001 {
                if decade >= self.min * 0.9999 {
                    ticks.push(decade);
                }
                decade *= 10.0;
            }
            ticks
        } else {
            (0..=4)
                .map(|step| self.min + (self.max - self.min) * f64::from(step) / 4.0)
                .collect()
        }
    }
}

/// A plotting area of a document.
pub struct Panel {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub x: Axis,
    pub y: Axis,
}

impl Panel {
    pub fn x_of(&self, value: f64) -> f64 {
        self.left + self.width * self.x.fraction(value)
    }

    pub fn y_of(&self, value: f64) -> f64 {
        self.top + self.height - self.height * self.y.fraction(value)
    }

    /// The frame (left and bottom axes, or a full box with `boxed`), the
    /// panel's title above it and the axis labels.
    pub fn frame(&self, svg: &mut Svg, boxed: bool, title: &str, x_label: &str, y_label: &str) {
        let (left, top, bottom, right) = (
            self.left,
            self.top,
            self.top + self.height,
            self.left + self.width,
        );
        let path = if boxed {
            format!("M{left},{top} H{right} V{bottom} H{left} Z")
        } else {
            format!("M{left},{top} V{bottom} H{right}")
        };
        let _ = writeln!(svg.out, r#"<path d="{path}" stroke="black" fill="none"/>"#);
        let middle = left + self.width / 2.0;
        if !title.is_empty() {
            svg.text(middle, top - 8.0, "middle", title);
        }
        svg.text(middle, bottom + 36.0, "middle", x_label);
        if !y_label.is_empty() {
            let y = top + self.height / 2.0;
            let _ = writeln!(
                svg.out,
                r#"<text x="16" y="{y:.1}" transform="rotate(-90 16 {y:.1})" text-anchor="middle">{}</text>"#,
                escape(y_label)
            );
        }
    }

    /// A labelled vertical grid line at each of `ticks`.
    pub fn x_grid(&self, svg: &mut Svg, ticks: &[f64], label: impl Fn(f64) -> String) {
        let bottom = self.top + self.height;
        for &tick in ticks {
            let x = self.x_of(tick);
            let _ = writeln!(
                svg.out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/>"##,
                self.top
            );
            svg.text(x, bottom + 16.0, "middle", &label(tick));
        }
    }

    /// A labelled horizontal grid line at each of `ticks`.
    pub fn y_grid(&self, svg: &mut Svg, ticks: &[f64], label: impl Fn(f64) -> String) {
        for &tick in ticks {
            let y = self.y_of(tick);
            let _ = writeln!(
                svg.out,
                r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
                self.left,
                self.left + self.width
            );
            svg.text(self.left - 6.0, y + 4.0, "end", &label(tick));
        }
    }

    /// `points` (data values) as a line with a dot at each point; points
    /// off a log axis or not finite are left out.
    pub fn line(&self, svg: &mut Svg, points: &[(f64, f64)], colour: &str, dash: Dash) {
        let shown: Vec<(f64, f64)> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && !(self.x.log && *x <= 0.0))
            .map(|&(x, y)| (self.x_of(x), self.y_of(y)))
            .collect();
        let path: Vec<String> = shown
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            svg.out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{}/>"#,
            path.join(" "),
            dash.attribute()
        );
        for (x, y) in shown {
            let _ = writeln!(
                svg.out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
            );
        }
    }
}

/// `1k`, `10k`, `1M` for tick labels.
pub fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{}k", value / 1e3)
    } else {
        format!("{value}")
    }
}

/// A one-panel chart of `series` (name, points `(x, y)`, x > 0): x on a
/// log axis ticked at the data's x values, y linear from 0, the legend on
/// the right.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 420.0;
    let points = series.iter().flat_map(|(_, points)| points.iter());
    let mut xs: Vec<f64> = points.clone().map(|p| p.0).filter(|x| *x > 0.0).collect();
    let y_max = points
        .map(|p| p.1)
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.1;
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let panel = Panel {
        left: 70.0,
        top: 40.0,
        width: WIDTH - 70.0 - 250.0,
        height: HEIGHT - 40.0 - 50.0,
        x: Axis {
            min: xs.first().copied().unwrap_or(1.0),
            max: xs.last().copied().unwrap_or(10.0),
            log: true,
        },
        y: Axis {
            min: 0.0,
            max: y_max,
            log: false,
        },
    };
    let mut svg = Svg::new(WIDTH, HEIGHT, title, false);
    panel.frame(&mut svg, false, "", x_label, y_label);
    panel.y_grid(&mut svg, &panel.y.ticks(), |y| format!("{y:.2}"));
    panel.x_grid(&mut svg, &xs, |x| format!("{x}"));
    for (index, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        panel.line(&mut svg, points, colour, Dash::Solid);
        let legend_y = panel.top + 10.0 + 20.0 * index as f64;
        svg.legend(WIDTH - 250.0 + 16.0, legend_y, colour, Dash::Solid, name);
    }
    svg.finish()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_line_and_a_legend_entry_per_series_and_escapes_text() {
        let series = vec![
            ("ours".to_owned(), vec![(1000.0, 0.1), (10000.0, 0.5)]),
            ("tail <GNU>".to_owned(), vec![(1000.0, 0.2), (10000.0, 0.9)]),
        ];
        let svg = lines("CPU & rate", "lines/s", "CPU s", &series);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("CPU &amp; rate") && svg.contains("tail &lt;GNU&gt;"));
    }

    #[test]
    fn axes_place_values_linearly_or_by_decade() {
        let log = Axis {
            min: 1e3,
            max: 1e5,
            log: true,
        };
        assert!((log.fraction(1e4) - 0.5).abs() < 1e-9);
        assert_eq!(log.ticks(), [1e3, 1e4, 1e5]);
        let linear = Axis {
            min: 0.0,
            max: 8.0,
            log: false,
        };
        assert!((linear.fraction(2.0) - 0.25).abs() < 1e-9);
        assert_eq!(linear.ticks(), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(human(10_000.0), "10k");
        assert_eq!(human(2_000_000.0), "2M");
    }
}
