//! Pushes built images (and multi-arch indexes) to a registry over plain HTTP.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::header::HeaderValue;

use super::image::{index_json, BuiltImage};
use fathom_analyzer::source::manifest::OCI_INDEX;

/// A client for a plain-HTTP registry at `addr`, authenticated when `auth` is given.
pub struct Pusher {
    client: Client,
    addr: String,
    auth: RegistryAuth,
}

impl Pusher {
    /// A pusher for `addr` (`127.0.0.1:PORT`).
    pub fn new(addr: &str, auth: Option<(&str, &str)>) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![addr.to_string()]),
            use_monolithic_push: true,
            ..Default::default()
        });
        Pusher {
            client,
            addr: addr.to_string(),
            auth: auth
                .map(|(u, p)| RegistryAuth::Basic(u.into(), p.into()))
                .unwrap_or(RegistryAuth::Anonymous),
        }
    }

    fn reference(&self, repo: &str, tag: &str) -> Result<Reference, String> {
        format!("{}/{repo}:{tag}", self.addr)
            .parse()
            .map_err(|e: oci_client::ParseError| e.to_string())
    }

    async fn push_blobs(&self, reference: &Reference, image: &BuiltImage) -> Result<(), String> {
        self.client
            .auth(reference, &self.auth, RegistryOperation::Push)
            .await
            .map_err(|e| format!("auth: {e}"))?;
        for layer in &image.layers {
            self.client
                .push_blob(reference, &layer.blob, &layer.digest())
                .await
                .map_err(|e| format!("push layer: {e}"))?;
        }
        let config_digest = fathom_analyzer::source::manifest::sha256_digest(&image.config);
        self.client
            .push_blob(reference, &image.config, &config_digest)
            .await
            .map_err(|e| format!("push config: {e}"))?;
        Ok(())
    }

    /// Pushes an image as `addr/repo:tag`; returns the full reference.
    pub async fn push(&self, repo: &str, tag: &str, image: &BuiltImage) -> Result<String, String> {
        let reference = self.reference(repo, tag)?;
        self.push_blobs(&reference, image).await?;
        let content_type =
            HeaderValue::from_str(&image.manifest_media_type()).map_err(|e| e.to_string())?;
        self.client
            .push_manifest_raw(&reference, image.manifest.clone(), content_type)
            .await
            .map_err(|e| format!("push manifest: {e}"))?;
        Ok(reference.whole())
    }

    /// Pushes several platform images and an index over them as `addr/repo:tag`.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        images: &[&BuiltImage],
    ) -> Result<String, String> {
        let reference = self.reference(repo, tag)?;
        for image in images {
            self.push_blobs(&reference, image).await?;
            let by_digest = reference.clone_with_digest(image.manifest_digest());
            let content_type =
                HeaderValue::from_str(&image.manifest_media_type()).map_err(|e| e.to_string())?;
            self.client
                .push_manifest_raw(&by_digest, image.manifest.clone(), content_type)
                .await
                .map_err(|e| format!("push manifest: {e}"))?;
        }
        self.client
            .push_manifest_raw(
                &reference,
                index_json(images),
                HeaderValue::from_static(OCI_INDEX),
            )
            .await
            .map_err(|e| format!("push index: {e}"))?;
        Ok(reference.whole())
    }
}
