//! TLS on the reverse proxy's listener (feature `tls`): rustls with the `ring`
//! provider, ALPN `h2` and `http/1.1`.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::TlsFiles;
use crate::error::{Error, ErrorKind};
use crate::server::Handshake;

fn tls_error(what: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::Tls, what, e)
}

/// Reads the certificate chain and key and builds the acceptor.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<Acceptor, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error(format!("cannot read {}", files.cert.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(format!("bad certificate in {}", files.cert.display()), e))?;
    if certs.is_empty() {
        return Err(Error::with_source(
            ErrorKind::Tls,
            format!("no certificate in {}", files.cert.display()),
            std::io::Error::other("empty PEM"),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        tls_error(
            format!("cannot read a private key from {}", files.key.display()),
            e,
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions".into(), e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_error(
                "certificate and key do not make a TLS configuration".into(),
                e,
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
}

/// The TLS handshake of an accepted connection.
#[derive(Clone)]
pub(crate) struct Acceptor(TlsAcceptor);

impl Handshake for Acceptor {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Stream> {
        self.0.accept(tcp).await
    }
}
