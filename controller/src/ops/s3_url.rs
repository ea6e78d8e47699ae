//! `s3://BUCKET/PREFIX` arguments of the batch commands.

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
        if !valid_bucket_name(bucket) {
            return Err(usage(
                "has a bucket name S3 does not allow (3-63 lowercase letters, digits, `.` and `-`)",
            ));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix as a folder: with a trailing `/` unless empty. Output locations are
    /// folders, as the worker's `--output` treats them.
    pub fn folder(&self) -> S3Url {
        let prefix = if self.prefix.is_empty() || self.prefix.ends_with('/') {
            self.prefix.clone()
        } else {
            format!("{}/", self.prefix)
        };
        S3Url {
            bucket: self.bucket.clone(),
            prefix,
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
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
        assert_eq!(
            S3Url::parse("O", "s3://out/results")
                .expect("valid")
                .folder()
                .prefix,
            "results/"
        );
        assert_eq!(
            S3Url::parse("O", "s3://out/")
                .expect("valid")
                .folder()
                .prefix,
            ""
        );
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
