//! Self-signed TLS for clusters without cert-manager (`fathom webhook certs`): a CA, a serving
//! certificate for the webhook's Service DNS names, and the `caBundle` patch for the
//! ValidatingWebhookConfiguration.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::Result;

/// PEM material for one webhook Service.
#[derive(Debug, Clone)]
pub struct CertBundle {
    /// The CA certificate (the `caBundle`, and the trust anchor of test clients).
    pub ca_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// Its private key (`tls.key`).
    pub key_pem: String,
}

/// The DNS names the API server may use for `service` in `namespace`.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A fresh CA and a serving certificate for the Service's names, signed by it.
pub fn generate(service: &str, namespace: &str) -> Result<CertBundle> {
    let (ca_cert, ca_key) = ca(&format!("fathom webhook CA ({namespace})"))?;

    let mut leaf = CertificateParams::new(service_names(service, namespace))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    Ok(CertBundle {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// A fresh CA and a client certificate (`CN=common_name`, client auth) signed by it: the CA is
/// `services.webhook.client_ca_file`, the certificate and key go into the API server's webhook
/// kubeconfig (`client-certificate`, `client-key`).
pub fn generate_client(common_name: &str) -> Result<CertBundle> {
    let (ca_cert, ca_key) = ca(&format!("fathom webhook client CA ({common_name})"))?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    Ok(CertBundle {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// A self-signed CA named `name` that signs leaves only.
fn ca(name: &str) -> Result<(rcgen::Certificate, KeyPair)> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    Ok((ca_cert, ca_key))
}

/// A JSON patch (`kubectl patch validatingwebhookconfiguration NAME --type json -p ...`) setting the
/// `caBundle` of each of the configuration's `webhooks` entries.
pub fn ca_bundle_patch(ca_pem: &str, webhooks: usize) -> String {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let ops: Vec<serde_json::Value> = (0..webhooks)
        .map(|i| {
            serde_json::json!({
                "op": "add",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": bundle,
            })
        })
        .collect();
    serde_json::Value::Array(ops).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_carries_the_ca_in_base64() {
        let b = generate("fathom-core", "fathom").unwrap();
        let patch: serde_json::Value =
            serde_json::from_str(&ca_bundle_patch(&b.ca_pem, 1)).unwrap();
        assert_eq!(patch[0]["path"], "/webhooks/0/clientConfig/caBundle");
        let value = patch[0]["value"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        assert_eq!(decoded, b.ca_pem.as_bytes());
        assert!(b.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
