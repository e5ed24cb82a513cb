//! Cluster certificates and TLS 1.3 configurations.
//!
//! A cluster CA signs every master, agent and client certificate. Masters present a
//! certificate valid for the name [`MASTER_SERVER_NAME`], so a client verifies "a master of
//! this cluster" whatever address it dialled; agents must present a certificate of the
//! cluster CA (checked by the master on the agent ALPN). Frameworks need not present one:
//! they authenticate with a principal and secret instead.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The DNS name every master certificate carries and every client verifies.
pub const MASTER_SERVER_NAME: &str = "fleet-master";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate {what}: {reason}")]
    Generate { what: String, reason: String },
    #[error("invalid PEM in {what}: {reason}")]
    Pem { what: String, reason: String },
    #[error("{what} holds no certificate")]
    NoCertificate { what: String },
    #[error("TLS configuration failed: {0}")]
    Config(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Agent,
    Client,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }
}

fn generate_err(what: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Generate {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// Creates a new cluster CA.
pub fn new_ca(cluster: &str) -> Result<CertifiedKey, TlsError> {
    let key = KeyPair::generate().map_err(generate_err("CA key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("fleet cluster CA {cluster}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(generate_err("CA certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `role` named `name`, signed by `ca`. Extra subject alternative
/// names (host names or IP addresses) may be given; masters always get
/// [`MASTER_SERVER_NAME`].
pub fn issue(
    ca: &CertifiedKey,
    role: Role,
    name: &str,
    extra_names: &[String],
) -> Result<CertifiedKey, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| TlsError::Pem {
        what: "CA key".into(),
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| TlsError::Pem {
        what: "CA certificate".into(),
        reason: e.to_string(),
    })?;
    let mut names = vec![format!("fleet-{}", role.name())];
    if role == Role::Master {
        names.push("localhost".into());
    }
    names.extend(extra_names.iter().cloned());
    names.sort();
    names.dedup();
    let mut params = CertificateParams::new(names).map_err(generate_err("certificate names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, role.name());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match role {
        Role::Master => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Agent | Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let key = KeyPair::generate().map_err(generate_err("key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate_err("certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, "CA certificate")? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA certificate rejected: {e}")))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side of a master: TLS 1.3 only, client certificates verified against the cluster
/// CA when presented (agents must; frameworks may not), the given ALPN protocols.
pub fn server_config(
    ca_pem: &str,
    identity: &CertifiedKey,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&identity.cert_pem, "server certificate")?,
            private_key(&identity.key_pem, "server key")?,
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Client side (agent, framework, operator): verifies the master against the cluster CA and
/// presents `identity` when given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                certs(&id.cert_pem, "client certificate")?,
                private_key(&id.key_pem, "client key")?,
            )
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Whether `cert`, a peer's end-entity certificate already verified against the cluster
/// CA, is a master's (valid for [`MASTER_SERVER_NAME`]): only masters may speak Raft to
/// a master; agent and client certificates carry other names.
pub fn is_master_certificate(cert: &CertificateDer<'_>) -> bool {
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(cert) else {
        return false;
    };
    let Ok(name) = rustls_pki_types::ServerName::try_from(MASTER_SERVER_NAME) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_certificates_that_build_configs() {
        let ca = new_ca("test").unwrap();
        let master = issue(&ca, Role::Master, "m1", &["127.0.0.1".into()]).unwrap();
        let agent = issue(&ca, Role::Agent, "a1", &[]).unwrap();
        server_config(&ca.cert_pem, &master, &[b"x"]).unwrap();
        client_config(&ca.cert_pem, Some(&agent), b"x").unwrap();
        client_config(&ca.cert_pem, None, b"x").unwrap();
    }

    #[test]
    fn only_master_certificates_are_masters() {
        let ca = new_ca("test").unwrap();
        let master = issue(&ca, Role::Master, "m1", &[]).unwrap();
        let agent = issue(&ca, Role::Agent, "a1", &[]).unwrap();
        let der = |pem: &str| certs(pem, "test").unwrap().remove(0);
        assert!(is_master_certificate(&der(&master.cert_pem)));
        assert!(!is_master_certificate(&der(&agent.cert_pem)));
    }

    #[test]
    fn garbage_pem_is_named() {
        let err = client_config("not pem", None, b"x").unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");
    }
}
