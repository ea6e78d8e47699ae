//! The per-scenario figure: for each policy, messages visible and in flight (left) and
//! desired tasks, running tasks and instances (right) over time, on shared axes so that
//! the policies compare at a glance.
//!
//! One layout drawn onto a [`Canvas`]; [`svg`] writes it as SVG text, which browsers and
//! GitHub render as it is, so the controller carries no image encoder or font.

pub mod svg;

use super::world::Sample;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// Horizontal alignment of text relative to its x coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at x.
    Start,
    /// Text is centred on x.
    Middle,
    /// Text ends at x.
    End,
}

/// The drawing operations the figure needs; y grows downwards, text sits on its baseline.
pub trait Canvas {
    /// A filled rectangle.
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Rgb);
    /// A line through `points`.
    fn polyline(&mut self, points: &[(f64, f64)], color: Rgb, width: f64);
    /// One line of text.
    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: Rgb);
}

/// One policy's time series and the caption under its name.
#[derive(Debug, Clone)]
pub struct PlotRun<'a> {
    /// Policy name.
    pub policy: &'a str,
    /// Key results, shown next to the name.
    pub caption: String,
    /// The samples.
    pub samples: &'a [Sample],
}

/// One plotted series: colour, line width, and the sample field it shows.
type Series = (Rgb, f64, fn(&Sample) -> u32);

const WIDTH: f64 = 1200.0;
const HEADER: f64 = 80.0;
const ROW: f64 = 190.0;
const PANEL_TOP: f64 = 26.0;
const PANEL_HEIGHT: f64 = 128.0;
const FOOTER: f64 = 30.0;
const LEFT: f64 = 70.0;
const GAP: f64 = 90.0;
const RIGHT: f64 = 20.0;

const INK: Rgb = Rgb(0x22, 0x22, 0x22);
const GRID: Rgb = Rgb(0xe4, 0xe4, 0xe4);
const MUTED: Rgb = Rgb(0x66, 0x66, 0x66);
const VISIBLE: Rgb = Rgb(0x1f, 0x6f, 0xc4);
const IN_FLIGHT: Rgb = Rgb(0xf0, 0x80, 0x10);
const INSTANCES: Rgb = Rgb(0xb8, 0xb8, 0xb8);
const DESIRED: Rgb = Rgb(0x7a, 0x3c, 0xb0);
const RUNNING: Rgb = Rgb(0x2a, 0x9d, 0x3a);

/// Figure size in pixels for `runs` policies.
pub fn size(runs: usize) -> (u32, u32) {
    (WIDTH as u32, (HEADER + ROW * runs as f64 + FOOTER) as u32)
}

/// The figure as an SVG document.
pub fn to_svg(title: &str, subtitle: &str, runs: &[PlotRun<'_>]) -> String {
    let (w, h) = size(runs.len());
    let mut canvas = svg::SvgCanvas::new(w, h);
    draw(&mut canvas, title, subtitle, runs);
    canvas.finish()
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn hour_step(total_hours: f64) -> f64 {
    [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 12.0, 24.0]
        .into_iter()
        .find(|s| total_hours / s <= 6.0)
        .unwrap_or(48.0)
}

fn format_hours(h: f64) -> String {
    if (h - h.round()).abs() < 1e-9 {
        format!("{h:.0}h")
    } else {
        format!("{h:.2}h").replace("0h", "h")
    }
}

/// The samples where a series changes: the first and last of every flat stretch. Drawing
/// only these gives the same picture with a fraction of the points (a day has 2,880
/// samples, mostly flat), which keeps the SVG small.
fn corners<'s>(
    samples: &'s [Sample],
    value: fn(&Sample) -> u32,
) -> impl Iterator<Item = &'s Sample> + 's {
    samples.iter().enumerate().filter_map(move |(i, s)| {
        let v = value(s);
        let same_before = i > 0 && value(&samples[i - 1]) == v;
        let same_after = i + 1 < samples.len() && value(&samples[i + 1]) == v;
        (!(same_before && same_after)).then_some(s)
    })
}

/// Draws the whole figure.
pub fn draw(canvas: &mut dyn Canvas, title: &str, subtitle: &str, runs: &[PlotRun<'_>]) {
    let panel_width = (WIDTH - LEFT - GAP - RIGHT) / 2.0;
    let end_ms = runs
        .iter()
        .filter_map(|r| r.samples.last().map(|s| s.t_ms))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let queue_max = nice_ceiling(
        runs.iter()
            .flat_map(|r| r.samples.iter())
            .map(|s| s.visible.max(s.in_flight))
            .max()
            .unwrap_or(0) as f64,
    );
    let fleet_max = nice_ceiling(
        runs.iter()
            .flat_map(|r| r.samples.iter())
            .map(|s| s.desired_tasks.max(s.running_tasks).max(s.instances))
            .max()
            .unwrap_or(0) as f64,
    );

    canvas.text(LEFT, 26.0, title, 16.0, Anchor::Start, INK);
    canvas.text(LEFT, 46.0, subtitle, 12.0, Anchor::Start, MUTED);
    let legend: [(&str, Rgb, usize); 5] = [
        ("visible", VISIBLE, 0),
        ("in flight", IN_FLIGHT, 0),
        ("instances", INSTANCES, 1),
        ("desired tasks", DESIRED, 1),
        ("running", RUNNING, 1),
    ];
    let mut x = [LEFT, LEFT + panel_width + GAP];
    for (label, color, column) in legend {
        let at = x[column];
        canvas.polyline(&[(at, 62.0), (at + 22.0, 62.0)], color, 4.0);
        canvas.text(at + 28.0, 66.0, label, 12.0, Anchor::Start, INK);
        x[column] = at + 28.0 + 12.0 * label.len() as f64 + 20.0;
    }

    let hours = end_ms / 3_600_000.0;
    let step = hour_step(hours);
    for (index, run) in runs.iter().enumerate() {
        let row_top = HEADER + ROW * index as f64;
        canvas.text(
            LEFT,
            row_top + 16.0,
            &format!("{}  {}", run.policy, run.caption),
            12.0,
            Anchor::Start,
            INK,
        );
        let panels = [(LEFT, queue_max), (LEFT + panel_width + GAP, fleet_max)];
        for (column, (x0, y_max)) in panels.into_iter().enumerate() {
            let top = row_top + PANEL_TOP;
            let bottom = top + PANEL_HEIGHT;
            let to_x = |t_ms: u64| x0 + t_ms as f64 / end_ms * panel_width;
            let to_y = |v: u32| bottom - f64::from(v) / y_max * PANEL_HEIGHT;
            for frac in [0.0, 0.5, 1.0] {
                let y = bottom - frac * PANEL_HEIGHT;
                canvas.rect(x0, y, panel_width, 1.0, GRID);
                // The zero label sits on the axis so it clears the hour labels below.
                let baseline = if frac == 0.0 { y } else { y + 4.0 };
                canvas.text(
                    x0 - 6.0,
                    baseline,
                    &format!("{}", (frac * y_max).round()),
                    12.0,
                    Anchor::End,
                    MUTED,
                );
            }
            let mut h = 0.0;
            while h <= hours + 1e-9 {
                let x = x0 + h / hours.max(1e-9) * panel_width;
                canvas.rect(x, top, 1.0, PANEL_HEIGHT, GRID);
                canvas.text(
                    x,
                    bottom + 22.0,
                    &format_hours(h),
                    12.0,
                    Anchor::Middle,
                    MUTED,
                );
                h += step;
            }
            canvas.rect(x0, bottom, panel_width, 1.0, INK);
            canvas.rect(x0, top, 1.0, PANEL_HEIGHT, INK);
            let series: Vec<Series> = if column == 0 {
                vec![
                    (IN_FLIGHT, 1.5, |s| s.in_flight),
                    (VISIBLE, 1.5, |s| s.visible),
                ]
            } else {
                vec![
                    (INSTANCES, 5.0, |s| s.instances),
                    (DESIRED, 2.0, |s| s.desired_tasks),
                    (RUNNING, 1.5, |s| s.running_tasks),
                ]
            };
            for (color, width, value) in series {
                let points: Vec<(f64, f64)> = corners(run.samples, value)
                    .map(|s| (to_x(s.t_ms), to_y(value(s))))
                    .collect();
                canvas.polyline(&points, color, width);
            }
        }
    }
    let (_, height) = size(runs.len());
    canvas.text(
        WIDTH / 2.0,
        f64::from(height) - 8.0,
        "time since the start of the scenario",
        12.0,
        Anchor::Middle,
        MUTED,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
        assert_eq!(hour_step(24.0), 4.0);
        assert_eq!(hour_step(2.0), 0.5);
        assert_eq!(format_hours(2.0), "2h");
        assert_eq!(format_hours(0.5), "0.5h");
    }

    #[test]
    fn svg_has_one_row_per_policy() {
        let samples = [
            Sample {
                t_ms: 0,
                visible: 5,
                in_flight: 0,
                desired_tasks: 0,
                running_tasks: 0,
                instances: 0,
            },
            Sample {
                t_ms: 60_000,
                visible: 0,
                in_flight: 2,
                desired_tasks: 2,
                running_tasks: 2,
                instances: 2,
            },
        ];
        let runs = [
            PlotRun {
                policy: "geobatch",
                caption: "p95 1 s".into(),
                samples: &samples,
            },
            PlotRun {
                policy: "keda",
                caption: "p95 2 s".into(),
                samples: &samples,
            },
        ];
        let svg = to_svg("t", "s", &runs);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(">geobatch  p95 1 s<") && svg.contains(">keda  p95 2 s<"));
        assert_eq!(svg.matches("<polyline").count(), 5 + 2 * 5);
    }
}
