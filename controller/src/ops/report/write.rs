//! The report's files, each written row by row as outcomes are read: `report.csv`,
//! `report.json` (the rows, then the totals) and `report.svg` (one rectangle per file's
//! bounding box, coloured by status), plus the text table for a terminal.
//!
//! The SVG needs the batch's extent in its header, known only at the end, so its rectangles
//! go to a temporary file that is copied behind the header when the report finishes.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::ops::OpsError;
use crate::ops::report::totals::{FileRow, Totals};

/// The CSV header; one column per [`FileRow`] field, the box as four columns.
pub const CSV_HEADER: &str = "bucket,key,status,features,vertices,geodesic_area_m2,\
geodesic_length_m,geodesic_perimeter_m,invalid_geometries,error_kind,west,south,east,north,outcome_key";

/// The three files of a report, open while rows arrive.
pub struct ReportFiles {
    dir: PathBuf,
    csv: BufWriter<File>,
    json: BufWriter<File>,
    svg_body: BufWriter<File>,
    rows: u64,
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> OpsError + '_ {
    move |cause| OpsError::Write {
        path: path.display().to_string(),
        cause,
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, OpsError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(write_error(path))
}

impl ReportFiles {
    /// Creates `dir` and the files in it; `source` is written into the JSON.
    pub fn create(dir: &Path, source: &str) -> Result<ReportFiles, OpsError> {
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
        let mut files = ReportFiles {
            dir: dir.to_owned(),
            csv: create(&dir.join("report.csv"))?,
            json: create(&dir.join("report.json"))?,
            svg_body: create(&dir.join(".report.svg.body"))?,
            rows: 0,
        };
        let source = serde_json::to_string(source).unwrap_or_default();
        let json_path = dir.join("report.json");
        write!(files.json, "{{\"source\":{source},\"files\":[").map_err(write_error(&json_path))?;
        let csv_path = dir.join("report.csv");
        writeln!(files.csv, "{CSV_HEADER}").map_err(write_error(&csv_path))?;
        Ok(files)
    }

    /// Writes one row to every file.
    pub fn row(&mut self, row: &FileRow) -> Result<(), OpsError> {
        let csv_path = self.dir.join("report.csv");
        writeln!(self.csv, "{}", csv_line(row)).map_err(write_error(&csv_path))?;
        let json_path = self.dir.join("report.json");
        let separator = if self.rows == 0 { "" } else { "," };
        let line = serde_json::to_string(row).unwrap_or_default();
        write!(self.json, "{separator}\n{line}").map_err(write_error(&json_path))?;
        if let Some(rect) = svg_rect(row) {
            let body_path = self.dir.join(".report.svg.body");
            writeln!(self.svg_body, "{rect}").map_err(write_error(&body_path))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the totals and closes the files; returns their paths (CSV, JSON, SVG).
    pub fn finish(mut self, totals: &Totals, title: &str) -> Result<[PathBuf; 3], OpsError> {
        let csv_path = self.dir.join("report.csv");
        let json_path = self.dir.join("report.json");
        let svg_path = self.dir.join("report.svg");
        let body_path = self.dir.join(".report.svg.body");
        self.csv.flush().map_err(write_error(&csv_path))?;
        let totals_json = serde_json::to_string(totals).unwrap_or_default();
        write!(self.json, "\n],\"totals\":{totals_json}}}\n")
            .and_then(|()| self.json.flush())
            .map_err(write_error(&json_path))?;
        self.svg_body.flush().map_err(write_error(&body_path))?;
        drop(self.svg_body);
        let mut svg = create(&svg_path)?;
        let mut body = File::open(&body_path).map_err(write_error(&body_path))?;
        svg.write_all(svg_header(totals, title).as_bytes())
            .and_then(|()| std::io::copy(&mut body, &mut svg).map(drop))
            .and_then(|()| svg.write_all(SVG_FOOTER.as_bytes()))
            .and_then(|()| svg.flush())
            .map_err(write_error(&svg_path))?;
        std::fs::remove_file(&body_path).map_err(write_error(&body_path))?;
        Ok([csv_path, json_path, svg_path])
    }
}

/// One CSV line, quoted where a field needs it (RFC 4180).
pub fn csv_line(row: &FileRow) -> String {
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let optf = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    let bbox = |i: usize| {
        row.figures
            .bbox
            .map(|b| format!("{}", b[i]))
            .unwrap_or_default()
    };
    [
        csv_field(&row.bucket),
        csv_field(&row.key),
        row.status.to_owned(),
        opt(row.figures.features),
        opt(row.figures.vertices),
        optf(row.figures.area_m2),
        optf(row.figures.length_m),
        optf(row.figures.perimeter_m),
        opt(row.figures.invalid_geometries),
        csv_field(row.error_kind.as_deref().unwrap_or("")),
        bbox(0),
        bbox(1),
        bbox(2),
        bbox(3),
        csv_field(&row.outcome_key),
    ]
    .join(",")
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The colour of a status on the map.
fn colour(status: &str) -> &'static str {
    match status {
        "ok" => "#2a9d8f",
        "error" => "#e63946",
        _ => "#f4a261",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A file's box in degrees; latitude is negated so north is up in SVG's y-down space.
fn svg_rect(row: &FileRow) -> Option<String> {
    let [w, s, e, n] = row.figures.bbox?;
    Some(format!(
        r#"<rect x="{w}" y="{}" width="{}" height="{}" fill="{c}" fill-opacity="0.25" stroke="{c}" vector-effect="non-scaling-stroke"><title>{} ({})</title></rect>"#,
        -n,
        (e - w).max(0.0),
        (n - s).max(0.0),
        xml_escape(&row.key),
        row.status,
        c = colour(row.status),
    ))
}

const SVG_FOOTER: &str = "</g>\n</svg>\n";

fn svg_header(totals: &Totals, title: &str) -> String {
    // The batch's extent with a margin; a world view when nothing had a box.
    let [w, s, e, n] = totals.bbox.unwrap_or([-180.0, -90.0, 180.0, 90.0]);
    let margin = ((e - w).max(n - s) * 0.05).max(0.01);
    let (x, y) = (w - margin, -n - margin);
    let (width, height) = (e - w + 2.0 * margin, n - s + 2.0 * margin);
    let mut legend = String::new();
    for (status, count) in [
        ("ok", totals.ok),
        ("error", totals.error),
        ("unreadable", totals.unreadable),
    ] {
        let _ = write!(legend, "{status} {count} ({}) · ", colour(status));
    }
    let _ = write!(legend, "{} without a bounding box", totals.without_bbox);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{x} {y} {width} {height}\" \
         width=\"960\" height=\"{}\" preserveAspectRatio=\"xMidYMid meet\">\n\
         <title>{}</title>\n<desc>{}</desc>\n\
         <rect x=\"{x}\" y=\"{y}\" width=\"{width}\" height=\"{height}\" fill=\"#f8f9fa\"/>\n<g>\n",
        (960.0 * height / width).clamp(120.0, 1920.0).round(),
        xml_escape(title),
        xml_escape(&legend),
    )
}

/// The text table a terminal shows: up to `limit` rows, then the totals.
pub fn text_table(rows: &[FileRow], more: u64, totals: &Totals) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<10} {:>9} {:>10} {:>13} {:>11} {:>11} {:>7}  error",
        "file", "status", "features", "vertices", "area km²", "length km", "perim. km", "invalid"
    );
    for row in rows {
        let key = if row.key.chars().count() > 40 {
            let tail: String = row
                .key
                .chars()
                .rev()
                .take(39)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            row.key.clone()
        };
        let _ = writeln!(
            out,
            "{key:<40} {:<10} {:>9} {:>10} {:>13} {:>11} {:>11} {:>7}  {}",
            row.status,
            row.figures
                .features
                .map(|v| v.to_string())
                .unwrap_or_default(),
            row.figures
                .vertices
                .map(|v| v.to_string())
                .unwrap_or_default(),
            row.figures
                .area_m2
                .map(|v| format!("{:.1}", v / 1e6))
                .unwrap_or_default(),
            row.figures
                .length_m
                .map(|v| format!("{:.1}", v / 1e3))
                .unwrap_or_default(),
            row.figures
                .perimeter_m
                .map(|v| format!("{:.1}", v / 1e3))
                .unwrap_or_default(),
            row.figures
                .invalid_geometries
                .map(|v| v.to_string())
                .unwrap_or_default(),
            row.error_kind.as_deref().unwrap_or(""),
        );
    }
    if more > 0 {
        let _ = writeln!(
            out,
            "… and {more} more files (all of them are in report.csv)"
        );
    }
    let _ = writeln!(
        out,
        "{:<40} {:<10} {:>9} {:>10} {:>13.1} {:>11.1} {:>11.1} {:>7}",
        format!("TOTAL {} files", totals.files),
        format!("{} ok", totals.ok),
        totals.features,
        totals.vertices,
        totals.area_m2 / 1e6,
        totals.length_m / 1e3,
        totals.perimeter_m / 1e3,
        totals.invalid_geometries,
    );
    if !totals.error_kinds.is_empty() {
        let kinds: Vec<String> = totals
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "errors by kind: {}", kinds.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::outcomes::{complete_document, read_outcome};

    fn row(doc: &str) -> FileRow {
        FileRow::new("out/k.json", read_outcome(&complete_document(doc)))
    }

    #[test]
    fn csv_lines_quote_what_needs_it_and_have_every_column() {
        let r = row(
            r#"{"status":"ok","source":{"bucket":"b","key":"a, \"b\".geojson"},
                       "analysis":{"features":1,"bbox":[1,2,3,4]}}"#,
        );
        let line = csv_line(&r);
        assert!(line.starts_with(r#"b,"a, ""b"".geojson",ok,1,"#), "{line}");
        assert!(line.ends_with(",1,2,3,4,out/k.json"), "{line}");
        assert_eq!(CSV_HEADER.split(',').count(), 15);
    }

    #[test]
    fn boxes_become_rectangles_coloured_by_status_with_north_up() {
        let r = row(
            r#"{"status":"ok","source":{"bucket":"b","key":"<k>"},"analysis":{"bbox":[10,20,30,50]}}"#,
        );
        let rect = svg_rect(&r).expect("has a box");
        assert!(
            rect.contains(r#"x="10" y="-50" width="20" height="30""#),
            "{rect}"
        );
        assert!(
            rect.contains(colour("ok")) && rect.contains("&lt;k&gt;"),
            "{rect}"
        );
        assert_eq!(
            svg_rect(&row(r#"{"status":"error","error":{"kind":"x"}}"#)),
            None
        );
    }

    #[test]
    fn written_files_hold_every_row_and_the_totals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = ReportFiles::create(dir.path(), "s3://out/p/").expect("create");
        let mut totals = Totals::default();
        for doc in [
            r#"{"status":"ok","source":{"bucket":"b","key":"one"},"analysis":{"features":2,"bbox":[0,0,1,1]}}"#,
            r#"{"status":"error","source":{"bucket":"b","key":"two"},"error":{"kind":"invalid_json"}}"#,
        ] {
            let r = row(doc);
            totals.add(&r);
            files.row(&r).expect("row");
        }
        let [csv, json, svg] = files.finish(&totals, "t").expect("finish");
        assert_eq!(
            std::fs::read_to_string(csv).expect("csv").lines().count(),
            3
        );
        let parsed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).expect("json"))
                .expect("valid json");
        assert_eq!(parsed["files"].as_array().map(Vec::len), Some(2));
        assert_eq!(parsed["totals"]["features"], 2);
        assert_eq!(parsed["totals"]["error_kinds"]["invalid_json"], 1);
        let svg = std::fs::read_to_string(svg).expect("svg");
        assert!(
            svg.starts_with("<?xml")
                && svg.ends_with("</svg>\n")
                && svg.matches("<rect").count() == 2
        );
        assert!(!dir.path().join(".report.svg.body").exists());
    }
}
