//! The load test's plot: delivered rate and CPU share against offered rate.

use std::fmt::Write as _;

use super::{Rotation, Row};

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// Two panels, delivered rate and CPU share against offered rate (log x),
/// one line per follower and rotation mode (solid: none, dashed: rename,
/// dotted: copytruncate). Hand-written SVG: a
/// plotting crate would cost more to build than this whole task.
pub(super) fn svg(rows: &[Row]) -> String {
    let mut followers: Vec<&str> = Vec::new();
    for r in rows {
        if !followers.contains(&r.follower.as_str()) {
            followers.push(&r.follower);
        }
    }
    let (width, height) = (1000.0, 460.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">Log followers under load (writer --rate, local processes; measured on the project machine, 2 shared cores)</text>
"#,
        width / 2.0
    );
    let x_min = rows
        .iter()
        .map(|r| r.offered)
        .fold(f64::MAX, f64::min)
        .max(1.0);
    let x_max = rows.iter().map(|r| r.offered).fold(1.0, f64::max);
    let y_max = rows
        .iter()
        .map(|r| r.delivered)
        .fold(1.0, f64::max)
        .max(x_max);
    let cpu_max = rows.iter().map(|r| r.cpu_share * 100.0).fold(1.0, f64::max);
    let panels = [
        ("delivered lines/s (log)", 70.0, true),
        ("follower CPU % of one core", 570.0, false),
    ];
    for (title, left, log_y) in panels {
        let (top, plot_w, plot_h) = (50.0, 380.0, 330.0);
        let x_of = |v: f64| {
            left + plot_w * (v.max(x_min).log10() - x_min.log10())
                / (x_max.log10() - x_min.log10()).max(1e-9)
        };
        let y_of = |v: f64| {
            if log_y {
                top + plot_h
                    - plot_h * (v.max(x_min).log10() - x_min.log10())
                        / (y_max.log10() - x_min.log10()).max(1e-9)
            } else {
                top + plot_h - plot_h * v / cpu_max
            }
        };
        let _ = writeln!(
            out,
            r#"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{title}</text>
<text x="{}" y="{}" text-anchor="middle">offered lines/s (log)</text>"#,
            left + plot_w / 2.0,
            top - 8.0,
            left + plot_w / 2.0,
            top + plot_h + 36.0
        );
        let mut decade = 10f64.powf(x_min.log10().floor());
        while decade <= x_max * 1.0001 {
            if decade >= x_min * 0.9999 {
                let x = x_of(decade);
                let _ = writeln!(
                    out,
                    r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                    top + plot_h,
                    top + plot_h + 16.0,
                    human(decade)
                );
            }
            decade *= 10.0;
        }
        if log_y {
            let mut decade = 10f64.powf(x_min.log10().floor());
            while decade <= y_max * 1.0001 {
                if decade >= x_min * 0.9999 {
                    let y = y_of(decade);
                    let _ = writeln!(
                        out,
                        r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                        left + plot_w,
                        left - 6.0,
                        y + 4.0,
                        human(decade)
                    );
                }
                decade *= 10.0;
            }
        } else {
            for i in 0..=4 {
                let v = cpu_max * f64::from(i) / 4.0;
                let y = y_of(v);
                let _ = writeln!(
                    out,
                    r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}%</text>"##,
                    left + plot_w,
                    left - 6.0,
                    y + 4.0
                );
            }
        }
        for (index, follower) in followers.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            for rotation in [Rotation::None, Rotation::Rename, Rotation::Copytruncate] {
                let mut points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.follower == *follower && r.rotation == rotation)
                    .map(|r| {
                        let y = if log_y {
                            r.delivered
                        } else {
                            r.cpu_share * 100.0
                        };
                        (x_of(r.offered), y_of(y))
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let path: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let dash = match rotation {
                    Rotation::None => "",
                    Rotation::Rename => r#" stroke-dasharray="6,4""#,
                    Rotation::Copytruncate => r#" stroke-dasharray="2,3""#,
                };
                let _ = writeln!(
                    out,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                    path.join(" ")
                );
                for (x, y) in points {
                    let _ = writeln!(
                        out,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#
                    );
                }
            }
        }
    }
    for (index, follower) in followers.iter().enumerate() {
        let x = 70.0 + 190.0 * index as f64;
        let color = COLORS[index % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="14" fill="{color}"/><text x="{}" y="{}">{follower}</text>"#,
            height - 30.0,
            x + 20.0,
            height - 19.0
        );
    }
    if rows.iter().any(|r| r.rotation != Rotation::None) {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">rotation: solid none, dashed rename, dotted copytruncate</text>"#,
            width - 10.0,
            height - 19.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{}k", value / 1e3)
    } else {
        format!("{value}")
    }
}
