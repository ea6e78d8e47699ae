//! Deadlines on the worker's AWS calls, as the controller has: a call that does not answer
//! in time fails like any other transient error instead of holding a message, a heartbeat or
//! the shutdown drain.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// Runs `call` (named `name` in the error) for at most `limit`.
pub async fn within<T, E: Display>(
    limit: Duration,
    name: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_elapsed) => Err(format!(
            "{name} did not answer within {:.1} s",
            limit.as_secs_f64()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_never_answers_fails_at_its_deadline() {
        let hung = within(
            Duration::from_millis(50),
            "DeleteMessage",
            std::future::pending::<Result<(), String>>(),
        )
        .await;
        assert_eq!(
            hung,
            Err("DeleteMessage did not answer within 0.1 s".to_owned())
        );
        let quick = within(Duration::from_secs(5), "x", async { Ok::<_, String>(3) }).await;
        assert_eq!(quick, Ok(3));
    }
}
