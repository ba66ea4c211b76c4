//! `services.webhook.client_ca_file`: the CA whose client certificates may call the webhook (the API
//! server presents one from its AdmissionConfiguration kubeconfig), re-read when the file changes so a
//! CA rotation needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::error::{Error, Result};

/// The current client certificate verifier and the file it came from.
pub(crate) struct ClientCa {
    file: PathBuf,
    provider: Arc<CryptoProvider>,
    /// The file's content last loaded (compared by content, as the serving certificate is).
    loaded: Mutex<Vec<u8>>,
    verifier: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("file", &self.file)
            .finish()
    }
}

fn tls_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Tls {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl ClientCa {
    /// Loads the CA bundle; errors name the file.
    pub(crate) fn load(file: &Path, provider: Arc<CryptoProvider>) -> Result<Self> {
        let pem = std::fs::read(file).map_err(|e| tls_error(file, e.to_string()))?;
        let verifier = verifier(&pem, file, &provider)?;
        Ok(ClientCa {
            file: file.to_owned(),
            provider,
            loaded: Mutex::new(pem),
            verifier: RwLock::new(verifier),
        })
    }

    /// The verifier for new handshakes: every client must present a certificate chaining to the CA.
    pub(crate) fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the file; when it changed and holds a usable CA, verifies with it from now on. A broken
    /// file is an error and the old CA stays.
    pub(crate) fn reload_if_changed(&self) -> Result<bool> {
        let pem = std::fs::read(&self.file).map_err(|e| tls_error(&self.file, e.to_string()))?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded == pem {
            return Ok(false);
        }
        let next = verifier(&pem, &self.file, &self.provider)?;
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = next;
        *loaded = pem;
        Ok(true)
    }
}

fn verifier(
    pem: &[u8],
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(file, format!("not a PEM CA bundle: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| tls_error(file, format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(tls_error(file, "contains no CERTIFICATE block"));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_error(file, format!("cannot verify clients with it: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    #[test]
    fn a_broken_rotation_keeps_the_old_ca() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client-ca.crt");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let a = certs::generate_client("apiserver").unwrap();
        std::fs::write(&file, &a.ca_pem).unwrap();
        let ca = ClientCa::load(&file, provider.clone()).unwrap();
        assert!(!ca.reload_if_changed().unwrap());
        std::fs::write(&file, "not pem").unwrap();
        let e = ca.reload_if_changed().unwrap_err().to_string();
        assert!(e.contains("client-ca.crt"), "{e}");
        let b = certs::generate_client("apiserver").unwrap();
        std::fs::write(&file, &b.ca_pem).unwrap();
        assert!(ca.reload_if_changed().unwrap());
        let e = ClientCa::load(&dir.path().join("missing.crt"), provider)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("TLS material"), "{e}");
    }
}
