//! The load test's plot: delivered rate and CPU share against offered rate.

use super::{Rotation, Row};
use crate::svg_plot::{Axis, COLOURS, Dash, Panel, Svg, human};

/// Two panels, delivered rate and CPU share against offered rate (log x),
/// one line per follower and rotation mode (solid: none, dashed: rename,
/// dotted: copytruncate), a colour per follower.
pub(super) fn svg(rows: &[Row]) -> String {
    let mut followers: Vec<&str> = Vec::new();
    for r in rows {
        if !followers.contains(&r.follower.as_str()) {
            followers.push(&r.follower);
        }
    }
    let (width, height) = (1000.0, 460.0);
    let mut svg = Svg::new(
        width,
        height,
        "Log followers under load (writer --rate, local processes; measured on the project machine, 2 shared cores)",
        true,
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
    let x = Axis {
        min: x_min,
        max: x_max,
        log: true,
    };
    let delivered = Panel {
        left: 70.0,
        top: 50.0,
        width: 380.0,
        height: 330.0,
        x,
        y: Axis {
            min: x_min,
            max: y_max,
            log: true,
        },
    };
    let cpu = Panel {
        left: 570.0,
        y: Axis {
            min: 0.0,
            max: cpu_max,
            log: false,
        },
        ..delivered
    };
    let panels: [(&Panel, &str, Value); 2] = [
        (&delivered, "delivered lines/s (log)", |r| r.delivered),
        (&cpu, "follower CPU % of one core", |r| r.cpu_share * 100.0),
    ];
    for (panel, title, value) in panels {
        panel.frame(&mut svg, true, title, "offered lines/s (log)", "");
        panel.x_grid(&mut svg, &panel.x.ticks(), human);
        if panel.y.log {
            panel.y_grid(&mut svg, &panel.y.ticks(), human);
        } else {
            panel.y_grid(&mut svg, &panel.y.ticks(), |v| format!("{v:.1}%"));
        }
        for (index, follower) in followers.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            for rotation in [Rotation::None, Rotation::Rename, Rotation::Copytruncate] {
                let mut points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.follower == *follower && r.rotation == rotation)
                    .map(|r| (r.offered.max(x_min), value(r)))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                panel.line(&mut svg, &points, colour, dash(rotation));
            }
        }
    }
    for (index, follower) in followers.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        svg.legend(
            70.0 + 190.0 * index as f64,
            height - 23.0,
            colour,
            Dash::Solid,
            follower,
        );
    }
    if rows.iter().any(|r| r.rotation != Rotation::None) {
        svg.text(
            width - 10.0,
            height - 19.0,
            "end",
            "rotation: solid none, dashed rename, dotted copytruncate",
        );
    }
    svg.finish()
}

/// What a panel plots of a row.
type Value = fn(&Row) -> f64;

fn dash(rotation: Rotation) -> Dash {
    match rotation {
        Rotation::None => Dash::Solid,
        Rotation::Rename => Dash::Dashed,
        Rotation::Copytruncate => Dash::Dotted,
    }
}
