//! The pre-flight check: one `GET /v1/models` before the run, so that a wrong endpoint, key
//! or model fails in a second with the server's own message instead of as a run of failed
//! turns.
//!
//! `/v1/models` is used rather than a tiny chat request because it leaves the server's
//! prefix-cache and token counters untouched, so the run's deltas describe only its own
//! traffic. Transport errors are retried with exponential backoff (the server may still be
//! starting); an HTTP 4xx fails at once.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Attempts for transport errors and 5xx responses, and the delay before the second one;
/// the delay doubles after each attempt.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "endpoint {url} is unreachable after {ATTEMPTS} attempts ({reason}); check --endpoint and that the server is running"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "endpoint {url} rejected the API key (HTTP {status}: {message}); pass a valid --api-key"
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    #[error("endpoint {url} answered HTTP {status}: {message}; check --endpoint")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "model {model:?} is not served by {url}; it serves {served}; pass one of them as --model"
    )]
    UnknownModel {
        model: String,
        url: String,
        served: String,
    },
}

#[derive(Debug, Deserialize)]
struct ModelList {
    #[serde(default)]
    data: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
struct ModelEntry {
    id: String,
}

/// Checks that `models_url` responds, accepts the key and lists `model`. A server whose
/// `/v1/models` is missing (404) or returns an unexpected body passes with a warning, since
/// some gateways only proxy chat completions.
pub async fn check(
    http: &reqwest::Client,
    models_url: &Url,
    api_key: Option<&str>,
    model: &str,
) -> Result<(), PreflightError> {
    let mut backoff = FIRST_BACKOFF;
    let mut last_reason = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut request = http.get(models_url.clone()).timeout(ATTEMPT_TIMEOUT);
        if let Some(key) = api_key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return check_model_list(models_url, &body, model);
                }
                let message = server_message(&body);
                match status.as_u16() {
                    401 | 403 => {
                        return Err(PreflightError::Unauthorized {
                            url: models_url.to_string(),
                            status: status.as_u16(),
                            message,
                        });
                    }
                    404 => {
                        tracing::warn!(url = %models_url, "the server has no /v1/models; skipping the model check");
                        return Ok(());
                    }
                    400..=499 => {
                        return Err(PreflightError::Status {
                            url: models_url.to_string(),
                            status: status.as_u16(),
                            message,
                        });
                    }
                    _ => last_reason = format!("HTTP {}: {message}", status.as_u16()),
                }
            }
            Err(err) => last_reason = transport_reason(&err),
        }
        if attempt < ATTEMPTS {
            tracing::debug!(attempt, reason = %last_reason, "pre-flight check failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(PreflightError::Unreachable {
        url: models_url.to_string(),
        reason: last_reason,
    })
}

fn check_model_list(url: &Url, body: &str, model: &str) -> Result<(), PreflightError> {
    let Ok(list) = serde_json::from_str::<ModelList>(body) else {
        tracing::warn!(url = %url, "/v1/models returned no model list; skipping the model check");
        return Ok(());
    };
    if list.data.is_empty() || list.data.iter().any(|entry| entry.id == model) {
        return Ok(());
    }
    let served = list
        .data
        .iter()
        .map(|entry| format!("{:?}", entry.id))
        .collect::<Vec<_>>()
        .join(", ");
    Err(PreflightError::UnknownModel {
        model: model.to_owned(),
        url: url.to_string(),
        served,
    })
}

/// Returns the `error.message` of an OpenAI-style error body, else the body itself, shortened.
fn server_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        message: String,
    }
    let message = match serde_json::from_str::<Body>(body) {
        Ok(parsed) => parsed.error.message,
        Err(_) => body.trim().to_owned(),
    };
    message.chars().take(300).collect()
}

fn transport_reason(err: &reqwest::Error) -> String {
    let mut reason = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:1/v1/models").unwrap()
    }

    #[test]
    fn listed_model_passes() {
        assert!(check_model_list(&url(), r#"{"data":[{"id":"a"},{"id":"b"}]}"#, "b").is_ok());
    }

    #[test]
    fn unlisted_model_names_the_served_ones() {
        let err = check_model_list(&url(), r#"{"data":[{"id":"a"}]}"#, "b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"b\""), "{err}");
        assert!(err.contains("\"a\""), "{err}");
    }

    #[test]
    fn server_message_prefers_the_error_field() {
        assert_eq!(
            server_message(r#"{"error":{"message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(server_message("plain text"), "plain text");
    }
}
