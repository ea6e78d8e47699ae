//! Writes a figure as SVG text.

use std::fmt::Write as _;

use super::{Anchor, Canvas, Rgb};

/// An SVG document being drawn.
pub struct SvgCanvas {
    body: String,
    width: u32,
    height: u32,
}

impl SvgCanvas {
    /// An empty white canvas.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            body: String::new(),
            width,
            height,
        }
    }

    /// The finished document.
    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n{body}</svg>\n",
            w = self.width,
            h = self.height,
            body = self.body
        )
    }
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Canvas for SvgCanvas {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Rgb) {
        let _ = writeln!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
            hex(fill)
        );
    }

    fn polyline(&mut self, points: &[(f64, f64)], color: Rgb, width: f64) {
        if points.len() < 2 {
            return;
        }
        let mut d = String::with_capacity(points.len() * 12);
        for (x, y) in points {
            let _ = write!(d, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            self.body,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width:.1}\" stroke-linejoin=\"round\"/>",
            d.trim_end(),
            hex(color)
        );
    }

    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: Rgb) {
        let anchor = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let _ = writeln!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size:.0}\" text-anchor=\"{anchor}\" fill=\"{}\">{}</text>",
            hex(color),
            escape(text)
        );
    }
}
