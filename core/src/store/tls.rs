//! TLS to PostgreSQL on rustls (the stack the AWS SDK's HTTPS client uses
//! too): the client configuration each `sslmode` asks for, and what a
//! refused handshake means in words an operator can act on.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{ConnInfo, RootCert, SslMode};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("DATABASE_URL sslrootcert={path}: cannot read the certificate bundle")]
    ReadRootCert {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("DATABASE_URL sslrootcert={path}: the file holds no usable PEM certificate")]
    EmptyRootCert { path: String },
    #[error("DATABASE_URL sslmode={mode}: the system trust store has no certificate; name a bundle with sslrootcert=/path.pem")]
    NoSystemRoots { mode: SslMode },
    #[error("cannot set up TLS to PostgreSQL")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn root_store(info: &ConnInfo) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match info.root_cert() {
        RootCert::File(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|source| TlsSetupError::ReadRootCert {
                    path: path.clone(),
                    source,
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsSetupError::EmptyRootCert { path });
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsSetupError::NoSystemRoots { mode: info.sslmode });
            }
        }
    }
    Ok(store)
}

/// What a server's certificate is held to under `info`'s `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Any certificate: the channel is encrypted, not authenticated.
    Encryption,
    /// The chain ends in a trusted root; any host name.
    Chain,
    /// The chain and the host name.
    ChainAndName,
}

fn check(info: &ConnInfo) -> Check {
    match (info.sslmode, &info.sslrootcert) {
        (SslMode::VerifyFull, _) => Check::ChainAndName,
        (SslMode::VerifyCa, _) => Check::Chain,
        // libpq: with a root certificate file, `require` checks the chain.
        (SslMode::Require, Some(RootCert::File(_))) => Check::Chain,
        _ => Check::Encryption,
    }
}

/// The connector for tokio-postgres; with `sslmode=disable` it is never used.
pub fn connector(info: &ConnInfo) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let chain = match check(info) {
        Check::Encryption => None,
        c => {
            let roots = Arc::new(root_store(info)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            Some((webpki, c == Check::ChainAndName))
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { chain, provider }))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The server's certificate held to what `sslmode` asks (libpq's meaning):
/// no chain (`prefer`, `require` without a root file): any certificate, the
/// channel encrypted but not authenticated; a chain without the name
/// (`verify-ca`): a certificate issued for another host passes; both
/// (`verify-full`). The handshake's signatures are checked in every case.
#[derive(Debug)]
struct Verifier {
    /// The chain's verifier, and whether the host name is checked too.
    chain: Option<(Arc<WebPkiServerVerifier>, bool)>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some((webpki, names)) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls error somewhere in `err`'s causes: a certificate refused, a
/// protocol the server does not speak. A connection cut mid-handshake has
/// none (it is an I/O error), and a database that is down is no TLS matter.
fn rustls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(r);
            }
        }
        cause = c.source();
    }
    None
}

/// Why a connection was refused in TLS, in an operator's words naming the
/// setting, or `None` when the failure is not a refusal that retrying cannot
/// mend (the database is down, the connection was cut, a password is wrong).
pub fn explain_tls_failure(info: &ConnInfo, err: &tokio_postgres::Error) -> Option<String> {
    let mode = info.sslmode;
    // tokio-postgres's own words when the server answers "no TLS here".
    let no_tls = std::error::Error::source(err)
        .is_some_and(|s| s.to_string().contains("server does not support TLS"));
    let why = if no_tls {
        format!(
            "the server does not offer TLS, and sslmode={mode} refuses a plaintext connection \
             (turn on ssl on the server; sslmode=disable is only for a server on this machine)"
        )
    } else {
        let cause = rustls_cause(err)?;
        match cause {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the server's certificate does not name the host in DATABASE_URL ({cause}); \
                 sslmode={mode} checks the host name: connect by the name the certificate carries \
                 (on RDS, the instance's endpoint)"
            ),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                let root = match info.root_cert() {
                    RootCert::File(p) => format!("sslrootcert={p}"),
                    RootCert::System => "the system trust store (no sslrootcert)".to_string(),
                };
                format!(
                    "the server's certificate was not issued by a CA in {root} ({cause}); \
                     sslmode={mode} checks the chain: name the right bundle with sslrootcert= \
                     (on RDS, the global bundle shipped in the image)"
                )
            }
            other => format!("sslmode={mode}: {other}"),
        }
    };
    Some(format!("TLS to PostgreSQL was refused: {why}"))
}
