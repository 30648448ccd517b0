//! The process's one TLS crypto provider, ring (the SSH client builds with it too): the
//! HTTPS server (`http::server`) configures it explicitly, and [`install_default_provider`]
//! makes it the default for clients that take the process's default, such as the client
//! commands' HTTP client.

use std::sync::{Arc, Once};

use tokio_rustls::rustls::crypto::{CryptoProvider, ring};

/// The provider every TLS configuration of crowbar uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Makes [`provider`] the process's default (once; later calls do nothing). Call it before
/// building an HTTP client: without a default, building one fails.
pub fn install_default_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err only when a default is already installed, which serves as well
        let _ = ring::default_provider().install_default();
    });
}
