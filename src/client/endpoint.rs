//! Turning the user's `--endpoint` value into the chat-completions URL.
//!
//! Three forms are accepted, always with an `http://` or `https://` scheme:
//!
//! | given | chat-completions URL |
//! |---|---|
//! | the server root, `http://host:8000` or `http://host:8000/` | `http://host:8000/v1/chat/completions` |
//! | an API base, `http://host:8000/v1` or `.../v1/` | `http://host:8000/v1/chat/completions` |
//! | the full URL, `http://host:8000/v1/chat/completions` | unchanged (a trailing `/` is removed) |
//!
//! A non-empty path that does not end in `/chat/completions` is treated as an API base in the way
//! the OpenAI SDKs treat `base_url`: `/chat/completions` is appended. That keeps gateways with a
//! prefix (`https://gateway/openai/v1`) working. A query string is kept (some gateways need
//! `?api-version=`). A path that ends in another API's name (`/v1/completions`, `/v1/models`,
//! `/metrics`, ...) is rejected, because appending to it cannot be what the user meant.

use std::fmt;

use url::Url;

/// Last path segments that name an endpoint other than chat completions.
const OTHER_ENDPOINTS: [&str; 6] = [
    "completions",
    "models",
    "embeddings",
    "responses",
    "metrics",
    "health",
];

/// An `--endpoint` value that is not an accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid endpoint {value:?}: {problem}; expected an http:// or https:// URL: the /v1 base \
     (http://host:8000/v1), the full /v1/chat/completions URL or the server root \
     (http://host:8000)"
)]
pub struct EndpointError {
    /// The value as the user gave it.
    pub value: String,
    pub problem: EndpointProblem,
}

/// The reason an endpoint value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProblem {
    /// The value has no `scheme://` part, as in `localhost:8000/v1`.
    MissingScheme,
    /// The URL parser rejected the value.
    NotAUrl(url::ParseError),
    /// A scheme other than `http` or `https`.
    UnsupportedScheme(String),
    /// A `#fragment`, which HTTP never sends and so is always a mistake here.
    Fragment,
    /// The path ends in the name of another API endpoint.
    OtherEndpoint(String),
}

impl fmt::Display for EndpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointProblem::MissingScheme => f.write_str("the scheme is missing"),
            EndpointProblem::NotAUrl(error) => write!(f, "not a URL ({error})"),
            EndpointProblem::UnsupportedScheme(scheme) => {
                write!(f, "the scheme {scheme:?} is not supported")
            }
            EndpointProblem::Fragment => f.write_str("a #fragment is not allowed"),
            EndpointProblem::OtherEndpoint(segment) => {
                write!(
                    f,
                    "the path ends in /{segment}, which is not the chat-completions API"
                )
            }
        }
    }
}

/// Returns the chat-completions URL for an `--endpoint` value in any of the accepted forms.
pub fn chat_completions_url(endpoint: &str) -> Result<Url, EndpointError> {
    let mut url = base_url(endpoint)?;
    let path = format!("{}chat/completions", url.path());
    url.set_path(&path);
    Ok(url)
}

/// Returns the API base for an `--endpoint` value, with a trailing `/` so that
/// `base.join("models")` yields the `/v1/models` URL.
pub fn base_url(endpoint: &str) -> Result<Url, EndpointError> {
    let invalid = |problem| EndpointError {
        value: endpoint.to_owned(),
        problem,
    };

    let trimmed = endpoint.trim();
    if !trimmed.contains("://") {
        return Err(invalid(EndpointProblem::MissingScheme));
    }
    let mut url = Url::parse(trimmed).map_err(|error| invalid(EndpointProblem::NotAUrl(error)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(EndpointProblem::UnsupportedScheme(
            url.scheme().to_owned(),
        )));
    }
    if url.fragment().is_some() {
        return Err(invalid(EndpointProblem::Fragment));
    }

    let path = url.path().trim_end_matches('/');
    let base_path = if let Some(prefix) = path.strip_suffix("/chat/completions") {
        prefix.to_owned()
    } else if path.is_empty() {
        "/v1".to_owned()
    } else {
        let last_segment = path.rsplit('/').next().unwrap_or_default();
        if let Some(other) = OTHER_ENDPOINTS.iter().find(|name| **name == last_segment) {
            return Err(invalid(EndpointProblem::OtherEndpoint((*other).to_owned())));
        }
        path.to_owned()
    };
    url.set_path(&format!("{base_path}/"));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases = [
            (
                "v1 base",
                "http://h:8000/v1",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "v1 base with slash",
                "http://h:8000/v1/",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "full url",
                "http://h:8000/v1/chat/completions",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "full url with slash",
                "http://h:8000/v1/chat/completions/",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "server root",
                "http://h:8000",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "server root with slash",
                "http://h:8000/",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "https with prefix",
                "https://gw.example/openai/v1",
                "https://gw.example/openai/v1/chat/completions",
            ),
            (
                "query kept",
                "https://gw.example/v1?api-version=2",
                "https://gw.example/v1/chat/completions?api-version=2",
            ),
            (
                "surrounding spaces",
                "  http://h:8000/v1 ",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "upper-case scheme",
                "HTTP://h:8000/v1",
                "http://h:8000/v1/chat/completions",
            ),
            (
                "ipv6 host",
                "http://[::1]:8000/v1",
                "http://[::1]:8000/v1/chat/completions",
            ),
        ];
        for (name, given, expected) in cases {
            let url = chat_completions_url(given).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(url.as_str(), expected, "case {name}");
        }
    }

    #[test]
    fn base_url_joins_models() {
        let cases = [
            ("v1 base", "http://h:8000/v1"),
            ("full url", "http://h:8000/v1/chat/completions"),
            ("server root", "http://h:8000"),
        ];
        for (name, given) in cases {
            let models = base_url(given).unwrap().join("models").unwrap();
            assert_eq!(models.as_str(), "http://h:8000/v1/models", "case {name}");
        }
    }

    #[test]
    fn rejected_forms() {
        let cases = [
            (
                "no scheme",
                "localhost:8000/v1",
                EndpointProblem::MissingScheme,
            ),
            ("bare host", "localhost", EndpointProblem::MissingScheme),
            ("empty", "", EndpointProblem::MissingScheme),
            (
                "ftp",
                "ftp://h/v1",
                EndpointProblem::UnsupportedScheme("ftp".to_owned()),
            ),
            (
                "unix socket",
                "unix:///tmp/s.sock",
                EndpointProblem::UnsupportedScheme("unix".to_owned()),
            ),
            (
                "empty host",
                "http://",
                EndpointProblem::NotAUrl(url::ParseError::EmptyHost),
            ),
            (
                "bad port",
                "http://h:99999/v1",
                EndpointProblem::NotAUrl(url::ParseError::InvalidPort),
            ),
            ("fragment", "http://h:8000/v1#x", EndpointProblem::Fragment),
            (
                "legacy completions",
                "http://h:8000/v1/completions",
                EndpointProblem::OtherEndpoint("completions".to_owned()),
            ),
            (
                "models",
                "http://h:8000/v1/models/",
                EndpointProblem::OtherEndpoint("models".to_owned()),
            ),
            (
                "metrics",
                "http://h:8000/metrics",
                EndpointProblem::OtherEndpoint("metrics".to_owned()),
            ),
        ];
        for (name, given, expected) in cases {
            let error = chat_completions_url(given).expect_err(name);
            assert_eq!(error.problem, expected, "case {name}");
        }
    }

    #[test]
    fn error_message_names_value_and_forms() {
        let message = chat_completions_url("ftp://h/v1").unwrap_err().to_string();
        assert!(
            message.contains("\"ftp://h/v1\""),
            "value missing from: {message}"
        );
        assert!(
            message.contains("http://host:8000/v1"),
            "accepted forms missing from: {message}"
        );
    }
}
