//! HTTPS: rustls with a certificate that reloads itself, and optional client certificates.
//!
//! The server certificate and key are read from PEM files and watched: when either file
//! changes (a certbot renewal, say), the pair is loaded and checked, and new connections get it;
//! a bad pair is refused with an error in the log and the old one keeps serving. Connections
//! already open are not disturbed.
//!
//! When the `tradingview-cert` scheme is on, the handshake *asks* for a client certificate
//! without requiring one, so other senders still connect. The handshake itself only checks that
//! the client holds the certificate's key; whether the certificate chains to the trust store, is
//! valid now and is meant for client authentication is decided right after the handshake and
//! recorded on the connection, so a bad certificate gets a clear HTTP answer (or falls through
//! to the request's own credentials) instead of a torn-down handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{
    ClientHello, ResolvesServerCert, ServerConnection, WebPkiClientVerifier,
};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    DigitallySignedStruct, DistinguishedName, Error, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio_rustls::TlsAcceptor;

use crate::auth::ClientCertificate;

/// How often the certificate files are checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Reads a certificate chain and its key from PEM files and checks that they belong together.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        format!(
            "{} and {} do not form a usable pair: {e}",
            cert_path.display(),
            key_path.display()
        )
    })
}

/// Reads a PEM bundle of CA certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate found", path.display()));
    }
    Ok(roots)
}

/// Mozilla's root store (the `webpki-roots` crate).
pub fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// The current certificate, swapped when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ReloadingCert, String> {
        Ok(ReloadingCert {
            current: RwLock::new(Arc::new(load_pair(cert_path, key_path)?)),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        })
    }

    /// Loads the files again; keeps the current pair when the new one is bad.
    pub fn reload(&self) -> Result<(), String> {
        let pair = load_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// Polls the files' modification times and reloads on change, until dropped.
    pub async fn watch(self: Arc<Self>) {
        let stamp = |me: &ReloadingCert| (modified(&me.cert_path), modified(&me.key_path));
        let mut seen = stamp(&self);
        loop {
            tokio::time::sleep(RELOAD_POLL).await;
            let now = stamp(&self);
            if now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded")
                }
                Err(error) => {
                    tracing::error!(%error, "new TLS certificate refused; the previous one keeps serving")
                }
            }
        }
    }
}

/// Asks for a client certificate, requires none, and checks only the handshake signature (the
/// client's proof that it holds the key); the chain is judged after the handshake.
#[derive(Debug)]
struct DeferredClientVerifier {
    strict: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.strict.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.strict.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}

/// An HTTPS endpoint's TLS side.
#[derive(Clone)]
pub struct TlsEndpoint {
    pub acceptor: TlsAcceptor,
    /// Judges client certificates after the handshake (when client certificates are asked for).
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub cert: Arc<ReloadingCert>,
}

impl std::fmt::Debug for TlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsEndpoint")
            .field("client_auth", &self.client_verifier.is_some())
            .finish()
    }
}

impl TlsEndpoint {
    /// The server side; `client_roots` turns on client certificates, judged against it.
    pub fn new(
        cert_path: &Path,
        key_path: &Path,
        client_roots: Option<RootCertStore>,
    ) -> Result<TlsEndpoint, String> {
        let cert = Arc::new(ReloadingCert::load(cert_path, key_path)?);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let (builder, client_verifier) = match client_roots {
            Some(roots) => {
                let strict: Arc<dyn ClientCertVerifier> =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| format!("client certificate trust store: {e}"))?;
                let deferred = Arc::new(DeferredClientVerifier {
                    strict: strict.clone(),
                });
                (builder.with_client_cert_verifier(deferred), Some(strict))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsEndpoint {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            client_verifier,
            cert,
        })
    }

    /// What the finished handshake says about the client's certificate.
    pub fn client_certificate(&self, connection: &ServerConnection) -> Option<ClientCertificate> {
        let verifier = self.client_verifier.as_ref()?;
        let chain = connection.peer_certificates()?;
        let (end_entity, intermediates) = chain.split_first()?;
        let verified = verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| describe(&e));
        Some(ClientCertificate::from_der(
            end_entity.as_ref(),
            verified,
            "tls",
        ))
    }
}

/// A short reason for a refused certificate.
fn describe(error: &Error) -> String {
    use tokio_rustls::rustls::CertificateError as C;
    match error {
        Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "it has expired".into(),
        Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "it is not valid yet".into()
        }
        Error::InvalidCertificate(C::UnknownIssuer) => "it is not issued by a trusted CA".into(),
        Error::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => {
            "it is not meant for client authentication".into()
        }
        Error::InvalidCertificate(C::Revoked) => "it is revoked".into(),
        other => format!("it failed verification ({other})"),
    }
}
