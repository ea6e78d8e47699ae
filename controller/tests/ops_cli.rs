//! The batch commands as a script runs them: `--help` that explains, and the documented exit
//! codes for a wrong URL, a missing bucket or queue, and missing credentials.

use std::process::{Command, Output};

use geobatch_common::testing::{Emulator, unique_name};

const BINARY: &str = env!("CARGO_BIN_EXE_geobatch-controller");

/// Runs the binary against the shared emulator with `args`.
fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .envs(Emulator::shared().child_env())
        .env_remove("GEOBATCH_QUEUE_URL")
        .env_remove("GEOBATCH_OUTPUT")
        .output()
        .expect("run the controller binary")
}

fn code_and_stderr(output: &Output) -> (Option<i32>, String) {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_batch_command_has_help_with_its_exit_codes() {
    for command in ["backfill", "status", "redrive", "report"] {
        let output = Command::new(BINARY)
            .args([command, "--help"])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{command} --help failed");
        assert!(
            text.contains("Exit codes:"),
            "{command} --help says no exit codes:\n{text}"
        );
    }
}

#[test]
fn a_malformed_url_exits_2_and_shows_the_form() {
    let (code, stderr) = code_and_stderr(&run(&[
        "report",
        "results/batch-1",
        "--out",
        "/tmp/unused-report",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("s3://BUCKET/PREFIX/"), "{stderr}");
}

#[test]
fn a_missing_bucket_or_queue_exits_3_and_names_it() {
    let bucket = unique_name("missing");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().into_owned();
    let (code, stderr) = code_and_stderr(&run(&[
        "report",
        &format!("s3://{bucket}/results/"),
        "--out",
        &out,
    ]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("bucket {bucket} does not exist")),
        "{stderr}"
    );

    let queue = format!(
        "{}/123456789012/{}",
        Emulator::shared().endpoint_url(),
        unique_name("noqueue")
    );
    let (code, stderr) = code_and_stderr(&run(&["redrive", "--queue-url", &queue]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("queue") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn missing_credentials_exit_4_and_name_the_variables() {
    let home = tempfile::tempdir().expect("empty home");
    let output = Command::new(BINARY)
        .args([
            "report",
            "s3://results/batch/",
            "--out",
            &home.path().to_string_lossy(),
        ])
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
        .env("AWS_ENDPOINT_URL", Emulator::shared().endpoint_url())
        .output()
        .expect("run");
    let (code, stderr) = code_and_stderr(&output);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("AWS_ACCESS_KEY_ID") && stderr.contains("AWS_PROFILE"),
        "{stderr}"
    );
}
