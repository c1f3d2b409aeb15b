//! TLS termination for HTTPS (application) and TLS (network) listeners, with rustls: one
//! server configuration per listener built from the certificates the configuration stream
//! delivers, the listener's security policy applied as protocol versions and cipher suites,
//! and the certificate chosen by SNI ([`SniResolver`]).
//!
//! Private keys only pass through here into rustls; they are never logged.

use std::sync::Arc;

use gantry_domain::lb::{CertificateMaterial, DEFAULT_SSL_POLICY, Listener, ssl_policy};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig, SupportedProtocolVersion};

/// The rustls suite of a cipher name of a security policy (OpenSSL's names, as AWS lists them).
pub fn suite_of(name: &str) -> Option<CipherSuite> {
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => CipherSuite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => CipherSuite::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "ECDHE-ECDSA-AES128-GCM-SHA256" => CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384" => CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "ECDHE-RSA-CHACHA20-POLY1305" => CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// The cipher names of [`suite_of`].
const SUITE_NAMES: [&str; 9] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// The name of a negotiated suite as AWS's `X-Amzn-Tls-Cipher-Suite` gives it (OpenSSL's).
pub fn suite_name(suite: CipherSuite) -> Option<&'static str> {
    SUITE_NAMES.into_iter().find(|n| suite_of(n) == Some(suite))
}

/// The name of a negotiated protocol version as `X-Amzn-Tls-Version` gives it.
pub fn version_name(v: rustls::ProtocolVersion) -> Option<&'static str> {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
        rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
        _ => None,
    }
}

fn version_of(name: &str) -> Option<&'static SupportedProtocolVersion> {
    match name {
        "TLSv1.2" => Some(&rustls::version::TLS12),
        "TLSv1.3" => Some(&rustls::version::TLS13),
        _ => None,
    }
}

/// A certificate a listener serves, with the key rustls signs with.
#[derive(Debug)]
struct Served {
    /// The end-entity certificate, for matching SNI names.
    leaf: CertificateDer<'static>,
    key: Arc<CertifiedKey>,
}

impl Served {
    fn matches(&self, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        webpki::EndEntityCert::try_from(&self.leaf)
            .is_ok_and(|c| c.verify_is_valid_for_subject_name(&server_name).is_ok())
    }
}

/// Chooses a listener's certificate by the client's SNI: the first of the default certificate
/// and then the others (in listener order) whose names cover the requested name; the default
/// certificate when none does or the client sends no SNI.
#[derive(Debug)]
pub struct SniResolver {
    /// The default certificate first.
    certs: Vec<Served>,
}

impl SniResolver {
    /// The index (in listener order, the default first) of the certificate served for `sni`.
    pub fn choose(&self, sni: Option<&str>) -> usize {
        sni.and_then(|name| self.certs.iter().position(|c| c.matches(name)))
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let i = self.choose(hello.server_name());
        self.certs.get(i).map(|c| c.key.clone())
    }
}

/// Why a listener's TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no certificate of the listener was delivered")]
    NoCertificate,
    #[error("certificate {0} could not be loaded")]
    BadCertificate(String),
    #[error("security policy {0} is not one Gantry serves")]
    UnknownPolicy(String),
}

fn load(m: &CertificateMaterial, provider: &CryptoProvider) -> Result<Served, TlsSetupError> {
    let bad = || TlsSetupError::BadCertificate(m.certificate_arn.clone());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(m.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
    let leaf = chain.first().cloned().ok_or_else(bad)?;
    let key = PrivateKeyDer::from_pem_slice(m.private_key_pem.as_bytes()).map_err(|_| bad())?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|_| bad())?;
    Ok(Served {
        leaf,
        key: Arc::new(key),
    })
}

/// The rustls server configuration of an HTTPS or TLS listener: its certificates (found among
/// `materials`), its security policy, and ALPN `h2`/`http/1.1` for HTTPS.
pub fn server_config(
    listener: &Listener,
    materials: &[CertificateMaterial],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let policy_name = listener.ssl_policy.as_deref().unwrap_or(DEFAULT_SSL_POLICY);
    let policy = ssl_policy(policy_name)
        .ok_or_else(|| TlsSetupError::UnknownPolicy(policy_name.to_owned()))?;
    let mut provider = aws_lc_rs::default_provider();
    let wanted: Vec<CipherSuite> = policy.ciphers.iter().filter_map(|c| suite_of(c)).collect();
    provider
        .cipher_suites
        .retain(|s| wanted.contains(&s.suite()));
    provider
        .cipher_suites
        .sort_by_key(|s| wanted.iter().position(|w| *w == s.suite()));
    let versions: Vec<&'static SupportedProtocolVersion> = policy
        .protocols
        .iter()
        .filter_map(|v| version_of(v))
        .collect();
    let mut ordered: Vec<_> = listener.certificates.iter().collect();
    ordered.sort_by_key(|c| !c.is_default);
    let mut certs = Vec::new();
    for c in ordered {
        if let Some(m) = materials
            .iter()
            .find(|m| m.certificate_arn == c.certificate_arn)
        {
            certs.push(load(m, &provider)?);
        }
    }
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate);
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|_| TlsSetupError::UnknownPolicy(policy_name.to_owned()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs }));
    if listener.protocol == "HTTPS" {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gantry_domain::lb::{ListenerCertificate, SSL_POLICIES};

    fn material(arn: &str, names: &[&str]) -> CertificateMaterial {
        let k = rcgen::generate_simple_self_signed(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        CertificateMaterial {
            certificate_arn: arn.to_owned(),
            chain_pem: k.cert.pem(),
            private_key_pem: k.signing_key.serialize_pem(),
        }
    }

    fn listener(certs: &[(&str, bool)], policy: Option<&str>) -> Listener {
        Listener {
            arn: "l".into(),
            id: "l".into(),
            port: 443,
            protocol: "HTTPS".into(),
            default_actions: Vec::new(),
            default_rule_id: "r".into(),
            rules: Vec::new(),
            tags: Vec::new(),
            certificates: certs
                .iter()
                .map(|(a, d)| ListenerCertificate {
                    certificate_arn: (*a).to_owned(),
                    is_default: *d,
                })
                .collect(),
            ssl_policy: policy.map(str::to_owned),
            attributes: Default::default(),
        }
    }

    #[test]
    fn negotiated_suites_and_versions_have_their_names() {
        for n in SUITE_NAMES {
            assert_eq!(suite_name(suite_of(n).unwrap()), Some(n));
        }
        assert_eq!(
            version_name(rustls::ProtocolVersion::TLSv1_3),
            Some("TLSv1.3")
        );
    }

    #[test]
    fn every_cipher_of_every_served_policy_is_a_suite_rustls_offers() {
        let offered: Vec<CipherSuite> = aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        for p in SSL_POLICIES {
            for c in p.ciphers {
                let s = suite_of(c).unwrap_or_else(|| panic!("{}: {c} unmapped", p.name));
                assert!(offered.contains(&s), "{}: {c}", p.name);
            }
            for v in p.protocols {
                assert!(version_of(v).is_some(), "{}: {v}", p.name);
            }
        }
    }

    #[test]
    fn sni_picks_the_matching_certificate_and_falls_back_to_the_default() {
        let provider = aws_lc_rs::default_provider();
        let a = load(&material("a", &["a.example.test"]), &provider).unwrap();
        let b = load(&material("b", &["b.example.test"]), &provider).unwrap();
        let w = load(&material("w", &["*.wild.example.test"]), &provider).unwrap();
        let r = SniResolver {
            certs: vec![a, b, w],
        };
        assert_eq!(r.choose(Some("a.example.test")), 0);
        assert_eq!(r.choose(Some("b.example.test")), 1);
        assert_eq!(r.choose(Some("x.wild.example.test")), 2);
        assert_eq!(r.choose(Some("y.x.wild.example.test")), 0);
        assert_eq!(r.choose(Some("other.test")), 0);
        assert_eq!(r.choose(None), 0);
    }

    #[test]
    fn a_listener_config_needs_a_delivered_certificate_and_a_served_policy() {
        let m = [material("a", &["a.example.test"])];
        assert!(server_config(&listener(&[("a", true)], None), &m).is_ok());
        assert_eq!(
            server_config(&listener(&[("missing", true)], None), &m).unwrap_err(),
            TlsSetupError::NoCertificate
        );
        assert!(matches!(
            server_config(
                &listener(&[("a", true)], Some("ELBSecurityPolicy-2015-05")),
                &m
            ),
            Err(TlsSetupError::UnknownPolicy(_))
        ));
        let cfg = server_config(
            &listener(&[("a", true)], Some("ELBSecurityPolicy-TLS13-1-3-2021-06")),
            &m,
        )
        .unwrap();
        assert!(
            cfg.crypto_provider()
                .cipher_suites
                .iter()
                .all(|s| s.version() == &rustls::version::TLS13)
        );
    }
}
