//! Reads a result JSON written by `clawperf`, checking its schema version first so that a file
//! of another layout gets a clear error rather than a missing-field message.

use std::path::{Path, PathBuf};

use crate::result::{RunResult, SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read the result file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} has no schema_version field: expected a result JSON written by `clawperf --output`"
    )]
    MissingSchemaVersion { path: PathBuf },
    #[error(
        "{path} has schema_version {found}, but this clawperf reads schema_version {SCHEMA_VERSION}; \
         open it with the clawperf version that wrote it"
    )]
    SchemaVersion { path: PathBuf, found: String },
    #[error("{path} is not a clawperf result JSON of schema_version {SCHEMA_VERSION}")]
    Layout {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads and parses the result JSON at `path`.
pub fn load_result(path: &Path) -> Result<RunResult, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| LoadError::Json {
            path: path.to_owned(),
            source,
        })?;
    match value.get("schema_version") {
        None => {
            return Err(LoadError::MissingSchemaVersion {
                path: path.to_owned(),
            });
        }
        Some(version) if version.as_u64() != Some(u64::from(SCHEMA_VERSION)) => {
            return Err(LoadError::SchemaVersion {
                path: path.to_owned(),
                found: version.to_string(),
            });
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|source| LoadError::Layout {
        path: path.to_owned(),
        source,
    })
}
