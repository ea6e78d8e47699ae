//! ECS task scale-in protection: on while the worker holds messages, off when idle.
//!
//! A service scale-in picks tasks to stop; a protected task is never picked. The worker asks
//! the ECS agent (`PUT $ECS_AGENT_URI/task-protection/v1/state`) for protection as soon as it
//! holds a message, renews it while it stays busy (each request expires, so a hung worker
//! cannot pin capacity for ever), and drops it once idle for a moment (so a worker pulling
//! batch after batch does not flap). Failures are logged and retried; they never stop
//! processing: the visibility timeout still protects the message itself.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the worker must stay idle before protection is dropped.
const IDLE_DELAY: Duration = Duration::from_secs(2);
/// Wait after a failed request before trying again.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// Timeout of one request to the agent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The body the ECS agent expects.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ProtectionRequest {
    /// Whether the task must not be stopped by a scale-in.
    pub protection_enabled: bool,
    /// Lifetime of the protection; only sent when enabling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_minutes: Option<u32>,
}

/// Talks to the ECS agent.
#[derive(Debug, Clone)]
pub struct TaskProtection {
    client: reqwest::Client,
    state_url: String,
    expires_in_minutes: u32,
}

impl TaskProtection {
    /// A client for the agent at `agent_uri` (the value of `ECS_AGENT_URI`).
    pub fn new(agent_uri: &str, expires_in_minutes: u32) -> Result<TaskProtection, String> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        Ok(TaskProtection {
            client,
            state_url: format!("{agent_uri}/task-protection/v1/state"),
            expires_in_minutes,
        })
    }

    /// Asks for protection on or off.
    pub async fn set(&self, enabled: bool) -> Result<(), String> {
        let request = ProtectionRequest {
            protection_enabled: enabled,
            expires_in_minutes: enabled.then_some(self.expires_in_minutes),
        };
        let response = self
            .client
            .put(&self.state_url)
            .json(&request)
            .send()
            .await
            .map_err(|err| crate::sdk_error::error_chain(&err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!(
            "the ECS agent answered {status}: {}",
            crate::results::excerpt(&body, 500)
        ))
    }

    /// Keeps protection in line with the number of held messages until `held` closes, then
    /// turns it off.
    pub async fn follow(self, mut held: watch::Receiver<usize>) {
        let renew_every = Duration::from_secs(u64::from(self.expires_in_minutes) * 60 / 2);
        // What the agent last confirmed, and when; `None` until the first success.
        let mut confirmed: Option<(bool, Instant)> = None;
        let mut idle_since: Option<Instant> = None;
        let mut open = true;
        while open {
            let busy = *held.borrow_and_update() > 0;
            let now = Instant::now();
            idle_since = if busy { None } else { idle_since.or(Some(now)) };
            let wanted = busy || idle_since.is_some_and(|since| now - since < IDLE_DELAY);
            let due = match confirmed {
                None => busy,
                Some((state, at)) => state != wanted || (wanted && now - at >= renew_every),
            };
            let mut wake_at = None;
            if due {
                match self.set(wanted).await {
                    Ok(()) => {
                        tracing::info!(protection_enabled = wanted, "ECS task protection set");
                        confirmed = Some((wanted, Instant::now()));
                    }
                    Err(error) => {
                        tracing::warn!(
                            protection_enabled = wanted,
                            error,
                            "setting ECS task protection failed; processing continues"
                        );
                        wake_at = Some(Instant::now() + RETRY_DELAY);
                    }
                }
            }
            if let Some((true, at)) = confirmed {
                let next = match idle_since {
                    Some(since) => since + IDLE_DELAY,
                    None => at + renew_every,
                };
                wake_at = Some(wake_at.map_or(next, |w: Instant| w.min(next)));
            }
            tokio::select! {
                changed = held.changed() => open = changed.is_ok(),
                () = sleep_until(wake_at) => {}
            }
        }
        if matches!(confirmed, Some((true, _))) {
            match self.set(false).await {
                Ok(()) => tracing::info!(protection_enabled = false, "ECS task protection set"),
                Err(error) => tracing::warn!(error, "turning ECS task protection off failed"),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_the_agent_api() {
        let on = ProtectionRequest {
            protection_enabled: true,
            expires_in_minutes: Some(60),
        };
        assert_eq!(
            serde_json::to_value(&on).expect("json"),
            serde_json::json!({"ProtectionEnabled": true, "ExpiresInMinutes": 60})
        );
        let off = ProtectionRequest {
            protection_enabled: false,
            expires_in_minutes: None,
        };
        assert_eq!(
            serde_json::to_value(&off).expect("json"),
            serde_json::json!({"ProtectionEnabled": false})
        );
    }
}
