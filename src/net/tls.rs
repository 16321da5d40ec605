//! TLS for protocol v1 (rustls with the `ring` provider): the coordinator's certificate and key,
//! the worker's trusted certificate authority, and the name a worker checks.
//!
//! The handshake itself runs in the session task (see `server`), under the handshake timeout, never
//! in the accept loop. Certificates and keys are read from PEM files; both types below print as
//! `{ .. }` so that key material can never reach a log.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Setting up TLS failed (unreadable or invalid PEM, a key that does not match, …).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(String);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError(format!("{what}: not a valid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsSetupError(format!(
            "{what}: no certificate found (expected -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path)
        .map_err(|e| TlsSetupError(format!("cannot read {what} {}: {e}", path.display())))
}

/// The coordinator's side: its certificate chain and private key.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl TlsServer {
    /// From PEM text: a certificate chain (leaf first) and a PKCS#8, PKCS#1 or SEC1 private key.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsServer, TlsSetupError> {
        let certs = certificates(cert_chain, "the certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
            TlsSetupError(format!("the private key: not a valid PEM private key: {e}"))
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                TlsSetupError(format!(
                    "the certificate and the private key do not go together: {e}"
                ))
            })?;
        Ok(TlsServer {
            config: Arc::new(config),
        })
    }

    /// From the files given to `--tls-cert` and `--tls-key`.
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<TlsServer, TlsSetupError> {
        let cert_pem = read(cert_chain, "the certificate")?;
        let key_pem = read(key, "the private key")?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|TlsSetupError(m)| {
            TlsSetupError(format!("{m} ({}, {})", cert_chain.display(), key.display()))
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsServer { .. }")
    }
}

/// The worker's side: the certificate authorities it trusts for the coordinator's certificate.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    /// From PEM text holding one or more CA certificates (or the coordinator's self-signed one).
    pub fn from_ca_pem(ca: &[u8]) -> Result<TlsClient, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca, "the certificate authority")? {
            roots
                .add(cert)
                .map_err(|e| TlsSetupError(format!("the certificate authority: {e}")))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// From the file given to `--tls-ca`.
    pub fn from_ca_file(ca: &Path) -> Result<TlsClient, TlsSetupError> {
        let pem = read(ca, "the certificate authority")?;
        Self::from_ca_pem(&pem)
            .map_err(|TlsSetupError(m)| TlsSetupError(format!("{m} ({})", ca.display())))
    }

    /// Runs the TLS handshake on a connected stream, checking the certificate against `name`.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsClient { .. }")
    }
}

/// The name a worker expects in the coordinator's certificate: `name` if given, else the host part
/// of `HOST:PORT` (a DNS name or an IP address; `[::1]:5050` gives `::1`).
pub fn server_name(connect: &str, name: Option<&str>) -> Result<ServerName<'static>, String> {
    let host = match name {
        Some(n) => n,
        None => {
            let host = connect.rsplit_once(':').map_or(connect, |(h, _)| h);
            host.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
        }
    };
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("'{host}' is neither a DNS name nor an IP address"))
}

/// The first byte of a TLS connection: a handshake record (the ClientHello).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        let show = |c: &str, n: Option<&str>| match server_name(c, n).unwrap() {
            ServerName::DnsName(d) => format!("dns {}", d.as_ref()),
            ServerName::IpAddress(ip) => format!("ip {}", std::net::IpAddr::from(ip)),
            other => format!("{other:?}"),
        };
        assert_eq!(show("127.0.0.1:5050", None), "ip 127.0.0.1");
        assert_eq!(show("[::1]:5050", None), "ip ::1");
        assert_eq!(
            show("coordinator.example:5050", None),
            "dns coordinator.example"
        );
        assert_eq!(show("localhost:1", None), "dns localhost");
        assert_eq!(show("10.0.0.1:1", Some("pi.example")), "dns pi.example");
        assert!(server_name("bad host:1", None).is_err());
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let e = TlsServer::from_pem(b"nonsense", b"nonsense").unwrap_err();
        assert!(e.to_string().contains("no certificate found"), "{e}");
        let e = TlsClient::from_ca_pem(b"").unwrap_err();
        assert!(e.to_string().contains("certificate authority"), "{e}");
    }
}
