//! BMC certificates pinned like SSH host keys. BMCs present self-signed certificates no CA
//! vouches for, so the first one a BMC presents is pinned (its SHA-256 fingerprint) and
//! every later connection must present the same: a changed certificate fails the handshake,
//! before a request (and the credentials in it) is sent. The handshake's signature is still
//! checked, so the peer holds the pinned certificate's key.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio_rustls::rustls::{
    self, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// The SHA-256 of a certificate (DER), shown as `sha256:<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Reads `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let hex_digits = text.strip_prefix("sha256:")?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
        Some(Fingerprint(bytes))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Accepts the pinned certificate only, or on first contact (nothing pinned) any, and
/// remembers what was presented.
#[derive(Debug)]
pub struct PinnedCertificate {
    pinned: Option<Fingerprint>,
    presented: Mutex<Option<Fingerprint>>,
    provider: Arc<CryptoProvider>,
}

/// The message of the handshake error a changed certificate causes (looked for in the
/// error chain to tell it from other failures).
pub const CHANGED: &str = "the BMC's certificate is not the pinned one";

impl PinnedCertificate {
    pub fn new(pinned: Option<Fingerprint>) -> Arc<PinnedCertificate> {
        Arc::new(PinnedCertificate {
            pinned,
            presented: Mutex::new(None),
            provider: crate::tls::provider(),
        })
    }

    /// The certificate the BMC presented last.
    pub fn presented(&self) -> Option<Fingerprint> {
        *self.presented.lock().expect("pin lock poisoned")
    }

    /// A TLS client configuration that checks the BMC's certificate with `self`.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        Ok(
            rustls::ClientConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(self.clone())
                .with_no_client_auth(),
        )
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        *self.presented.lock().expect("pin lock poisoned") = Some(presented);
        match self.pinned {
            Some(pinned) if pinned != presented => Err(rustls::Error::General(CHANGED.into())),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_back_what_they_show() {
        let fp = Fingerprint::of(b"a certificate");
        let shown = fp.to_string();
        assert!(shown.starts_with("sha256:") && shown.len() == 7 + 64);
        assert_eq!(Fingerprint::parse(&shown), Some(fp));
        assert_eq!(Fingerprint::parse("sha256:zz"), None);
        assert_eq!(Fingerprint::parse(&shown[7..]), None);
    }

    #[test]
    fn only_the_pinned_certificate_passes() {
        let (a, b) = (
            CertificateDer::from(vec![1u8]),
            CertificateDer::from(vec![2u8]),
        );
        let name = ServerName::try_from("bmc").unwrap();
        let check = |pin: &Arc<PinnedCertificate>, cert: &CertificateDer<'_>| {
            pin.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
                .is_ok()
        };
        let first = PinnedCertificate::new(None);
        assert!(check(&first, &a), "first contact takes any");
        assert_eq!(first.presented(), Some(Fingerprint::of(&a)));
        let pinned = PinnedCertificate::new(first.presented());
        assert!(check(&pinned, &a));
        assert!(!check(&pinned, &b));
        assert_eq!(pinned.presented(), Some(Fingerprint::of(&b)));
    }
}
