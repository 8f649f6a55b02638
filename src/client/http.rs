//! Building the one `reqwest::Client` that all simulated users and the metrics poller share.

use std::path::{Path, PathBuf};

use reqwest::{Certificate, Client};
use tracing::warn;

/// Options for verifying servers' TLS certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of one or more CA certificates to trust in addition to the built-in roots,
    /// for servers with a private CA (MindIE deployments often have one).
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate, including self-signed, expired and wrong-host ones.
    pub insecure: bool,
}

/// A failure to set up the HTTP client or the chat client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to read the CA certificate file {}", path.display())]
    ReadCaCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the CA certificate file {} contains no PEM certificate; expected one or more \
         \"-----BEGIN CERTIFICATE-----\" blocks",
        path.display()
    )]
    NoCaCert { path: PathBuf },
    #[error("invalid certificate in the CA certificate file {}", path.display())]
    InvalidCaCert {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to build the HTTP client")]
    Build(#[source] reqwest::Error),
    /// The key itself is never printed.
    #[error(
        "invalid API key: it contains characters that an HTTP header cannot carry, such as a \
         line break; check for a trailing newline"
    )]
    InvalidApiKey,
}

/// Builds the HTTP client used for chat requests and metrics scraping.
///
/// The client speaks HTTP/1.1 over rustls, so every concurrent stream uses its own connection.
/// Idle connections per host are not limited, so a burst of N users keeps N warm connections for
/// their next turns. TCP_NODELAY is on so that small requests are not held back by Nagle's
/// algorithm. Redirects are not followed: reqwest would turn a redirected POST into a GET, and a
/// plain 3xx failure points at the misconfigured endpoint instead. No client-wide timeout is set
/// because the chat client enforces its own per request.
pub fn build_http_client(options: &TlsOptions) -> Result<Client, ClientError> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("clawperf/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .redirect(reqwest::redirect::Policy::none());

    if let Some(path) = &options.ca_cert {
        for certificate in load_ca_certificates(path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if options.insecure {
        warn!("TLS certificate verification is disabled: any server certificate is accepted");
        builder = builder.danger_accept_invalid_certs(true);
    }

    builder.build().map_err(ClientError::Build)
}

/// Reads every certificate of a PEM file and checks that rustls accepts each as a trust anchor.
fn load_ca_certificates(path: &Path) -> Result<Vec<Certificate>, ClientError> {
    let pem = std::fs::read(path).map_err(|source| ClientError::ReadCaCert {
        path: path.to_owned(),
        source,
    })?;
    let certificates =
        Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::InvalidCaCert {
            path: path.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(ClientError::NoCaCert {
            path: path.to_owned(),
        });
    }

    // reqwest decodes the DER only when it builds the TLS configuration, so a block that is
    // valid base64 but not a certificate would otherwise surface as an anonymous build error.
    let mut probe = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    for certificate in &certificates {
        probe = probe.add_root_certificate(certificate.clone());
    }
    probe.build().map_err(|source| ClientError::InvalidCaCert {
        path: path.to_owned(),
        source,
    })?;

    Ok(certificates)
}
