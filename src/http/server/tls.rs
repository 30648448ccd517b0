//! TLS for the HTTP server (`--tls-cert`, `--tls-key`; docs/operations.md "The HTTP edge"):
//! the PEM files are read once, at start, into a rustls configuration on the process's
//! provider ([`crate::tls`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

/// Why the TLS files cannot be used; each message says which flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {}: {source} (--tls-cert needs a PEM file this user can read)", .path.display())]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the TLS key {}: {source} (--tls-key needs a PEM file this user can read)", .path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate ({why}); --tls-cert takes the server's certificate, then any intermediates, each as a -----BEGIN CERTIFICATE----- block", .path.display())]
    NoCert { path: PathBuf, why: String },
    #[error("{} holds no PEM private key ({why}); --tls-key takes a PKCS#8, PKCS#1 or SEC1 key as a -----BEGIN ... PRIVATE KEY----- block", .path.display())]
    NoKey { path: PathBuf, why: String },
    #[error("the TLS certificate {} and key {} cannot be used together: {source} (check that the key is the certificate's own)", .cert.display(), .key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// An acceptor for the certificate chain in `cert` and the private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_path_buf(),
        source,
    })?;
    let no_cert = |why: String| TlsError::NoCert {
        path: cert.to_path_buf(),
        why,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(no_cert("no items found".into()));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_path_buf(),
        why: e.to_string(),
    })?;
    let unusable = |source| TlsError::Unusable {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        // also checks that the key belongs to the first certificate
        .with_single_cert(chain, private_key)
        .map_err(unusable)?;
    // the server speaks HTTP/1.1 only
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_certificate_and_its_key_make_an_acceptor() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        assert!(acceptor(&cert, &key).is_ok());
    }

    #[test]
    fn unusable_files_are_refused_with_the_flag_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();

        let message = |cert: &Path, key: &Path| acceptor(cert, key).err().unwrap().to_string();
        assert!(message(&missing, &key).contains("--tls-cert"));
        assert!(message(&cert, &missing).contains("--tls-key"));
        assert!(message(&empty, &key).contains("no PEM certificate"));
        // a key where the certificate should be, and the other way round
        assert!(message(&key, &key).contains("no PEM certificate"));
        assert!(message(&cert, &cert).contains("no PEM private key"));
        assert!(message(&cert, &other_key).contains("cannot be used together"));
    }
}
