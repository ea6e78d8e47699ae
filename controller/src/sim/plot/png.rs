//! Rasterises a figure and encodes it as PNG (8-bit RGB, zlib via `flate2`), with the
//! built-in bitmap font for text.

use std::io::Write as _;

use super::font;
use super::{Anchor, Canvas, Rgb};

/// An RGB raster being drawn.
pub struct PngCanvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl PngCanvas {
    /// A white canvas.
    pub fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width as usize, height as usize);
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        }
    }

    fn stamp(&mut self, x: i64, y: i64, size: i64, c: Rgb) {
        let lo = -(size - 1) / 2;
        for dy in lo..lo + size {
            for dx in lo..lo + size {
                self.put(x + dx, y + dy, c);
            }
        }
    }

    /// Font pixels per glyph pixel for a nominal text size.
    fn scale(size: f64) -> i64 {
        ((size / 7.0).round() as i64).max(1)
    }

    /// Width in pixels of `text` at `size`.
    pub fn text_width(text: &str, size: f64) -> i64 {
        let s = Self::scale(size);
        text.chars().count() as i64 * (font::WIDTH as i64 + 1) * s
    }

    /// The encoded PNG file.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.pixels.chunks(self.width * 3) {
            raw.push(0); // filter type None
            raw.extend_from_slice(row);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&raw)?;
        let idat = z.finish()?;
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, no interlace
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
        Ok(out)
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

impl Canvas for PngCanvas {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Rgb) {
        let (x0, y0) = (x.round() as i64, y.round() as i64);
        let (x1, y1) = ((x + w).round() as i64, (y + h).round() as i64);
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.put(xx, yy, fill);
            }
        }
    }

    fn polyline(&mut self, points: &[(f64, f64)], color: Rgb, width: f64) {
        let size = (width.round() as i64).max(1);
        for pair in points.windows(2) {
            let (x0, y0) = (pair[0].0.round() as i64, pair[0].1.round() as i64);
            let (x1, y1) = (pair[1].0.round() as i64, pair[1].1.round() as i64);
            // Bresenham, stamping a square of the line width at each step.
            let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
            let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
            let (mut x, mut y, mut err) = (x0, y0, dx + dy);
            loop {
                self.stamp(x, y, size, color);
                if x == x1 && y == y1 {
                    break;
                }
                let e2 = 2 * err;
                if e2 >= dy {
                    err += dy;
                    x += sx;
                }
                if e2 <= dx {
                    err += dx;
                    y += sy;
                }
            }
        }
    }

    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: Rgb) {
        let s = Self::scale(size);
        let width = Self::text_width(text, size);
        let left = match anchor {
            Anchor::Start => x.round() as i64,
            Anchor::Middle => x.round() as i64 - width / 2,
            Anchor::End => x.round() as i64 - width,
        };
        // `y` is the baseline, as in SVG.
        let top = y.round() as i64 - font::HEIGHT as i64 * s;
        for (i, c) in text.chars().enumerate() {
            let gx = left + i as i64 * (font::WIDTH as i64 + 1) * s;
            for (row, bits) in font::glyph(c).iter().enumerate() {
                for col in 0..font::WIDTH {
                    if bits & (1 << (font::WIDTH - 1 - col)) != 0 {
                        for dy in 0..s {
                            for dx in 0..s {
                                self.put(
                                    gx + col as i64 * s + dx,
                                    top + row as i64 * s + dy,
                                    color,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_valid_png_with_the_drawn_pixels() {
        let mut c = PngCanvas::new(20, 10);
        c.rect(0.0, 0.0, 5.0, 5.0, Rgb(255, 0, 0));
        assert_eq!(&c.pixels[0..3], &[255, 0, 0]);
        let bytes = c.finish().expect("encode");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!(
            u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]),
            20
        );
        assert!(bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "IEND CRC");
    }
}
