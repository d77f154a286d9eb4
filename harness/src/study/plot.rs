//! The study's three plots, as SVG: time to ready by cluster size, the
//! unavailability each strategy costs, and the strategy × scenario
//! outcome grid.

use super::{Cell, UNAVAILABILITY_SCENARIOS};
use plotters::prelude::*;
use std::path::Path;

pub const READY_SVG: &str = "ready-by-size.svg";
pub const UNAVAILABILITY_SVG: &str = "unavailability.svg";
pub const OUTCOMES_SVG: &str = "outcomes.svg";

type PlotResult = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes the three plots into `dir`.
pub fn write_plots(cells: &[Cell], dir: &Path) -> PlotResult {
    ready_by_size(cells, &dir.join(READY_SVG))?;
    unavailability(cells, &dir.join(UNAVAILABILITY_SVG))?;
    outcomes(cells, &dir.join(OUTCOMES_SVG))
}

fn arms(cells: &[Cell]) -> Vec<String> {
    let mut arms: Vec<String> = Vec::new();
    for cell in cells {
        if !arms.contains(&cell.arm()) {
            arms.push(cell.arm());
        }
    }
    arms
}

fn color(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    RGBColor(r, g, b)
}

/// Mean time to ready per size, one line per strategy and engine, with
/// whiskers from the fastest to the slowest repetition.
fn ready_by_size(cells: &[Cell], path: &Path) -> PlotResult {
    let points: Vec<(&Cell, u32, super::Spread)> = cells
        .iter()
        .filter(|c| c.scenario.starts_with("bootstrap-"))
        .filter_map(|c| c.ready_s.map(|s| (c, c.size, s)))
        .collect();
    let max_size = points.iter().map(|p| p.1).max().unwrap_or(1);
    let max_s = points.iter().map(|p| p.2.max).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Time to a ready cluster by size (mean; whiskers: fastest to slowest)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.5f64..max_size as f64 + 0.5, 0f64..max_s * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("members")
        .y_desc("seconds to ready")
        .x_labels(max_size as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    for (i, arm) in arms(cells).iter().enumerate() {
        let mut series: Vec<&(&Cell, u32, super::Spread)> =
            points.iter().filter(|p| &p.0.arm() == arm).collect();
        if series.is_empty() {
            continue;
        }
        series.sort_by_key(|p| p.1);
        let c = color(i);
        // Side by side, so whiskers of one size do not hide each other.
        let dx = (i as f64 - 2.0) * 0.04;
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.1 as f64 + dx, p.2.mean)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(arm.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(series.iter().map(|p| {
                ErrorBar::new_vertical(p.1 as f64 + dx, p.2.min, p.2.mean, p.2.max, c.filled(), 6)
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Mean unavailability (no quorum, or writes failing, whichever is longer)
/// per strategy and engine, one bar per scenario.
fn unavailability(cells: &[Cell], path: &Path) -> PlotResult {
    let arms = arms(cells);
    let value = |arm: &str, scenario: &str| {
        cells
            .iter()
            .find(|c| c.arm() == arm && c.scenario == scenario)
            .and_then(|c| c.unavailable_s)
            .map(|s| s.mean)
    };
    let max_s = arms
        .iter()
        .flat_map(|a| UNAVAILABILITY_SCENARIOS.iter().filter_map(|s| value(a, s)))
        .fold(1.0, f64::max);
    // Arms run down the side, bars across: long arm names stay readable.
    let height = 120 + 44 * arms.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let labels = arms.clone();
    let row = |i: usize| (arms.len() - 1 - i) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Unavailability per event (mean seconds without quorum or with writes failing)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(190)
        .build_cartesian_2d(0f64..max_s * 1.3, -0.5f64..arms.len() as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("seconds")
        .y_labels(arms.len().max(1))
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                labels[labels.len() - 1 - i as usize].clone()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    let width = 0.8 / UNAVAILABILITY_SCENARIOS.len() as f64;
    for (k, scenario) in UNAVAILABILITY_SCENARIOS.iter().enumerate() {
        let c = color(k + 3);
        let bars: Vec<Rectangle<(f64, f64)>> = arms
            .iter()
            .enumerate()
            .filter_map(|(i, arm)| {
                let v = value(arm, scenario)?;
                // Within an arm's row, the first scenario on top.
                let top = row(i) + 0.4 - k as f64 * width;
                Some(Rectangle::new(
                    [(0.0, top - width * 0.9), (v, top)],
                    c.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(*scenario)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Rows: strategy and engine; columns: scenarios; each cell's colour is the
/// share of repetitions that passed, its text the runs and what broke.
fn outcomes(cells: &[Cell], path: &Path) -> PlotResult {
    let arms = arms(cells);
    let mut scenarios: Vec<String> = Vec::new();
    for cell in cells {
        if !scenarios.contains(&cell.scenario) {
            scenarios.push(cell.scenario.clone());
        }
    }
    let height = 90 + 34 * arms.len() as u32;
    let root =
        SVGBackend::new(path, (260 + 110 * scenarios.len() as u32, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    root.draw(&Text::new(
        "Runs passed of runs per scenario (green: all; red: none) and the invariants that broke",
        (4, 4),
        ("sans-serif", 15).into_font(),
    ))
    .map_err(err)?;
    let (row_labels, grid) = root.split_horizontally(250);
    let (header, grid) = grid.split_vertically(60);
    let (_, row_labels) = row_labels.split_vertically(60);
    let cell_w = 110;
    let cell_h = 34;
    let text = ("sans-serif", 13).into_font();
    for (j, scenario) in scenarios.iter().enumerate() {
        header
            .draw(&Text::new(
                scenario.clone(),
                (j as i32 * cell_w + 4, 40),
                text.clone(),
            ))
            .map_err(err)?;
    }
    for (i, arm) in arms.iter().enumerate() {
        row_labels
            .draw(&Text::new(
                arm.clone(),
                (4, i as i32 * cell_h + 12),
                text.clone(),
            ))
            .map_err(err)?;
        for (j, scenario) in scenarios.iter().enumerate() {
            let Some(cell) = cells
                .iter()
                .find(|c| &c.arm() == arm && &c.scenario == scenario)
            else {
                continue;
            };
            let share = cell.passed as f64 / cell.runs.max(1) as f64;
            let fill = RGBColor(
                (230.0 - 110.0 * share) as u8,
                (120.0 + 100.0 * share) as u8,
                (120.0 + 10.0 * share) as u8,
            );
            let (x, y) = (j as i32 * cell_w, i as i32 * cell_h);
            grid.draw(&Rectangle::new(
                [(x, y), (x + cell_w - 3, y + cell_h - 3)],
                fill.filled(),
            ))
            .map_err(err)?;
            let broke: Vec<String> = cell.violated.keys().cloned().collect();
            let label = if broke.is_empty() && cell.errors == 0 {
                format!("{}/{}", cell.passed, cell.runs)
            } else if broke.is_empty() {
                format!("{}/{} {} err", cell.passed, cell.runs, cell.errors)
            } else {
                format!("{}/{} {}", cell.passed, cell.runs, broke.join(","))
            };
            grid.draw(&Text::new(label, (x + 4, y + 10), text.clone()))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}
