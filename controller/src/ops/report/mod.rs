//! `report s3://OUTPUT/PREFIX/`: one summary of a batch's outcomes.
//!
//! Outcomes are listed a page (1000 keys) at a time and read a few at once; each becomes a
//! row written straight to the CSV, JSON and SVG files, so memory holds one page and the
//! [`Totals`], whatever the batch's size. Rows come out in key order, so the same outcomes
//! always give the same report.

pub mod totals;
pub mod write;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tokio::task::JoinSet;

use crate::ops::outcomes::{Lister, get_bytes, read_outcome};
use crate::ops::s3_url::S3Url;
use crate::ops::setup::OpsClients;
use crate::ops::{OpsError, print};
use geobatch_common::outcome::MESSAGES_DIR;
pub use totals::{FileRow, Totals};
use write::{ReportFiles, text_table};

/// Writes one summary of a batch's outcomes: CSV, JSON, an SVG map and a table.
///
/// Per file (status, features, vertices, geodesic area, length and perimeter, invalid
/// geometries, error kind) and totals, as report.csv and report.json, and report.svg, a map
/// of the files' bounding boxes coloured by status (green ok, red error, orange unreadable).
///
/// On a terminal it also prints a table of the first rows and the totals; with
/// `--format json` (or when stdout is not a terminal) it prints the totals as one JSON
/// object. Reports of any size stream: rows are written as outcomes are read.
///
/// Exit codes: 0 report written (whatever the files' statuses), 2 bad URL, 3 no such
/// bucket, 4 no or refused credentials, 5 other AWS failure, 1 a report file could not be
/// written.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The batch's output location, the worker's `--output` (e.g. s3://results/results/),
    /// or a folder under it (s3://results/results/batch-1/).
    #[arg(value_name = "S3_URL")]
    pub output: String,
    /// Folder for report.csv, report.json and report.svg (created if missing).
    #[arg(long, value_name = "DIR", default_value = "out/report")]
    pub out: PathBuf,
    /// What goes to stdout: `text` (the table) or `json` (the totals). Default: text on a
    /// terminal, json otherwise.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Rows the text table shows before it says how many more there are.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub rows: usize,
    /// Outcome documents read at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

/// What a command prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

impl OutputFormat {
    /// The format asked for, else text on a terminal and JSON elsewhere.
    pub fn or_detect(format: Option<OutputFormat>) -> OutputFormat {
        format.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                OutputFormat::Text
            } else {
                OutputFormat::Json
            }
        })
    }
}

/// What a finished report says.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    /// The sums over every row.
    pub totals: Totals,
    /// Reports about unusable messages, which are not files.
    pub invalid_messages: u64,
    /// The CSV, JSON and SVG files.
    pub files: [PathBuf; 3],
}

/// Writes the report and prints the table or the totals to `stdout`.
pub async fn run(
    clients: &OpsClients,
    args: &ReportArgs,
    stdout: &mut dyn Write,
) -> Result<ReportSummary, OpsError> {
    let location = S3Url::parse("S3_URL", &args.output)?;
    let format = OutputFormat::or_detect(args.format);
    let mut files = ReportFiles::create(&args.out, &location.to_string())?;
    let mut totals = Totals::default();
    let mut shown = Vec::new();
    let mut invalid_messages = 0;
    let mut lister = Lister::new(&clients.s3, &location);
    while let Some(page) = lister.next_page().await? {
        let keys: Vec<String> = page
            .into_iter()
            .map(|listed| listed.key)
            .filter(|key| key.ends_with(".json"))
            .filter(|key| {
                let message_report = key.contains(MESSAGES_DIR);
                invalid_messages += u64::from(message_report);
                !message_report
            })
            .collect();
        for chunk in keys.chunks(usize::from(args.concurrency)) {
            for row in read_rows(clients, &location.bucket, chunk).await {
                totals.add(&row);
                files.row(&row)?;
                if shown.len() < args.rows {
                    shown.push(row);
                }
            }
        }
    }
    let title = format!(
        "geobatch report of {location}: {} files, {} ok, {} error",
        totals.files, totals.ok, totals.error
    );
    let paths = files.finish(&totals, &title)?;
    let printed = match format {
        OutputFormat::Text => {
            let more = totals.files.saturating_sub(shown.len() as u64);
            let mut text = text_table(&shown, more, &totals);
            if invalid_messages > 0 {
                text.push_str(&format!(
                    "{invalid_messages} reports about unusable messages under {MESSAGES_DIR}\n"
                ));
            }
            text.push_str(&format!(
                "written: {}, {}, {}\n",
                paths[0].display(),
                paths[1].display(),
                paths[2].display()
            ));
            text
        }
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&totals).unwrap_or_default();
            value["invalid_messages"] = invalid_messages.into();
            value["source"] = location.to_string().into();
            value["files_written"] = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .into();
            format!("{value}\n")
        }
    };
    print(stdout, &printed)?;
    Ok(ReportSummary {
        totals,
        invalid_messages,
        files: paths,
    })
}

/// Reads a few outcomes at once and returns their rows in the order of `keys`. An outcome
/// that cannot be read becomes an `unreadable` row, so one bad object does not stop a
/// report.
async fn read_rows(clients: &OpsClients, bucket: &str, keys: &[String]) -> Vec<FileRow> {
    let mut reads = JoinSet::new();
    for (index, key) in keys.iter().enumerate() {
        let (s3, bucket, key) = (clients.s3.clone(), bucket.to_owned(), key.clone());
        reads.spawn(async move { (index, get_bytes(&s3, &bucket, &key).await) });
    }
    let mut bodies: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
    while let Some(done) = reads.join_next().await {
        match done {
            Ok((index, Ok(bytes))) => bodies[index] = Some(bytes),
            Ok((index, Err(err))) => {
                tracing::warn!(key = keys[index].as_str(), error = %err, "cannot read an outcome");
            }
            Err(err) => tracing::error!(error = %err, "an outcome read stopped unexpectedly"),
        }
    }
    keys.iter()
        .zip(bodies)
        .map(|(key, body)| FileRow::new(key, read_outcome(body.as_deref().unwrap_or_default())))
        .collect()
}
