//! `s3://BUCKET/PREFIX` arguments of the batch commands.

use geobatch_common::outcome::{OutputLocation, is_bucket_name};

use crate::ops::OpsError;

/// A bucket and a key prefix (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, as written (a listing prefix: `batch-1` also matches `batch-10/`).
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket/prefix`; `flag` names the argument in the error.
    pub fn parse(flag: &str, url: &str) -> Result<S3Url, OpsError> {
        let usage = |why: &str| {
            OpsError::Usage(format!(
                "{flag} `{url}` {why}; write it as s3://BUCKET/PREFIX/ (e.g. s3://uploads/batch-1/)"
            ))
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| usage("is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(usage("names no bucket"));
        }
        if !is_bucket_name(bucket) {
            return Err(usage(
                "has a bucket name S3 does not allow (3-63 lowercase letters, digits, `.` and `-`)",
            ));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// Parses the workers' output location with the worker's own parser; `flag` names the
/// argument in the error.
pub fn output_location(flag: &str, url: &str) -> Result<OutputLocation, OpsError> {
    OutputLocation::parse(url).map_err(|err| {
        OpsError::Usage(format!(
            "{flag}: {err}; give the workers' --output, e.g. s3://results/results/"
        ))
    })
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let url = S3Url::parse("SOURCE", "s3://uploads/batch-1/").expect("valid");
        assert_eq!(
            (url.bucket.as_str(), url.prefix.as_str()),
            ("uploads", "batch-1/")
        );
        let url = S3Url::parse("SOURCE", "s3://uploads").expect("valid");
        assert_eq!(url.prefix, "");
        let output = output_location("--output", "s3://out/results").expect("valid");
        assert_eq!(output.prefix, "results/");
        let err = output_location("--output", "results/").expect_err("not s3");
        assert_eq!(err.exit_status(), crate::ops::ExitStatus::Usage);
    }

    #[test]
    fn malformed_urls_are_usage_errors_that_show_the_form() {
        for bad in [
            "uploads/batch",
            "s3:///x",
            "https://b/k",
            "s3://Upper/x",
            "s3://a/x",
            "s3://-ab/x",
        ] {
            let err = S3Url::parse("SOURCE", bad).expect_err(bad);
            assert_eq!(err.exit_status(), crate::ops::ExitStatus::Usage);
            assert!(err.to_string().contains("s3://BUCKET/PREFIX/"), "{err}");
        }
    }
}
