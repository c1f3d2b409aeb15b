//! Certificate material: the PEM certificate, chain and private key of ImportCertificate parsed
//! and checked (each parses, the key is one rustls can sign with and matches the certificate's
//! public key), and the facts DescribeCertificate reports read from the certificate.

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::*;

use crate::AcmError;

/// What ACM reports of a certificate, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The subject's common name, else the first DNS name.
    pub domain_name: String,
    /// The DNS names of the subjectAltName extension (the common name first when it is not
    /// among them, as ACM lists it).
    pub subject_alternative_names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    /// Colon-separated hex, as ACM shows it.
    pub serial: String,
    /// Epoch seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// `RSA_2048`, `EC_prime256v1`, ...
    pub key_algorithm: String,
    /// `SHA256WITHRSA`, `SHA256WITHECDSA`, ...
    pub signature_algorithm: String,
}

/// A checked certificate, chain and key, PEM-encoded as given back by GetCertificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub certificate_pem: String,
    pub chain_pem: Option<String>,
    pub private_key_pem: String,
    pub facts: CertificateFacts,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("facts", &self.facts)
            .field("private_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn invalid(msg: &str) -> AcmError {
    AcmError::Validation(msg.to_owned())
}

/// Parses and checks ImportCertificate's material (the blobs as raw PEM bytes).
pub fn check(
    certificate: &[u8],
    private_key: &[u8],
    chain: Option<&[u8]>,
) -> Result<Material, AcmError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("The certificate field contains more than one certificate or is not a valid PEM-encoded X.509 certificate."))?;
    let [leaf] = <[CertificateDer<'static>; 1]>::try_from(certs).map_err(|_| {
        invalid("The certificate field contains more than one certificate or is not a valid PEM-encoded X.509 certificate.")
    })?;
    let facts = facts(&leaf)?;
    let mut full_chain = vec![leaf.clone()];
    if let Some(chain) = chain {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                invalid(
                    "The certificate chain is not a valid PEM-encoded list of X.509 certificates.",
                )
            })?;
        if certs.is_empty() {
            return Err(invalid(
                "The certificate chain is not a valid PEM-encoded list of X.509 certificates.",
            ));
        }
        for c in &certs {
            if X509Certificate::from_der(c).is_err() {
                return Err(invalid(
                    "The certificate chain is not a valid PEM-encoded list of X.509 certificates.",
                ));
            }
        }
        full_chain.extend(certs);
    }
    let key = PrivateKeyDer::from_pem_slice(private_key)
        .map_err(|_| invalid("The private key is not a valid PEM-encoded, unencrypted private key (PKCS#8, PKCS#1 or SEC1)."))?;
    let provider = aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| invalid("The private key is not supported: use an RSA (2048 bits or more) or ECDSA P-256/P-384 key."))?;
    CertifiedKey::new(full_chain, signing)
        .keys_match()
        .map_err(|_| {
            invalid("The private key does not match the public key in the certificate.")
        })?;
    Ok(Material {
        certificate_pem: to_pem(&[leaf]),
        chain_pem: chain.map(|c| {
            to_pem(
                &CertificateDer::pem_slice_iter(c)
                    .filter_map(Result::ok)
                    .collect::<Vec<_>>(),
            )
        }),
        private_key_pem: String::from_utf8_lossy(private_key).trim().to_owned() + "\n",
        facts,
    })
}

/// PEM text of certificates, one block each.
pub fn to_pem(certs: &[CertificateDer<'_>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for c in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// The facts of a DER certificate.
pub fn facts(der: &[u8]) -> Result<CertificateFacts, AcmError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| invalid("The certificate field contains more than one certificate or is not a valid PEM-encoded X.509 certificate."))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let mut sans: Vec<String> = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let GeneralName::DNSName(d) = n {
                sans.push((*d).to_owned());
            }
        }
    }
    let domain_name = cn
        .clone()
        .or_else(|| sans.first().cloned())
        .ok_or_else(|| invalid("The certificate names no domain: it has neither a subject common name nor a DNS subject alternative name."))?;
    if let Some(cn) = &cn
        && !sans.contains(cn)
    {
        sans.insert(0, cn.clone());
    }
    let key_algorithm = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA_{}", rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "EC_prime256v1".to_owned(),
                Some("1.3.132.0.34") => "EC_secp384r1".to_owned(),
                Some("1.3.132.0.35") => "EC_secp521r1".to_owned(),
                _ => {
                    return Err(invalid(
                        "The certificate's elliptic curve is not supported.",
                    ));
                }
            }
        }
        _ => {
            return Err(invalid(
                "The certificate's public key algorithm is not supported: use RSA or ECDSA.",
            ));
        }
    };
    let signature_algorithm = match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.11" => "SHA256WITHRSA",
        "1.2.840.113549.1.1.12" => "SHA384WITHRSA",
        "1.2.840.113549.1.1.13" => "SHA512WITHRSA",
        "1.2.840.113549.1.1.5" => "SHA1WITHRSA",
        "1.2.840.10045.4.3.2" => "SHA256WITHECDSA",
        "1.2.840.10045.4.3.3" => "SHA384WITHECDSA",
        "1.2.840.10045.4.3.4" => "SHA512WITHECDSA",
        "1.2.840.113549.1.1.10" => "SHA256WITHRSAPSS",
        _ => "UNKNOWN",
    }
    .to_owned();
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertificateFacts {
        domain_name,
        subject_alternative_names: sans,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key_algorithm,
        signature_algorithm,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A self-signed certificate for `names` (the first as its common name) and its key.
    fn leaf(names: &[&str]) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_certificate_and_key_are_accepted_with_their_facts() {
        let (cert, key) = leaf(&["a.example.test", "www.a.example.test"]);
        let m = check(cert.as_bytes(), key.as_bytes(), None).unwrap();
        assert_eq!(m.facts.domain_name, "a.example.test");
        assert!(
            m.facts
                .subject_alternative_names
                .contains(&"www.a.example.test".to_owned())
        );
        assert_eq!(m.facts.key_algorithm, "EC_prime256v1");
        assert_eq!(m.facts.signature_algorithm, "SHA256WITHECDSA");
        assert!(m.facts.not_before < m.facts.not_after);
        assert!(!format!("{m:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = leaf(&["a.example.test"]);
        let (_, other_key) = leaf(&["b.example.test"]);
        let e = check(cert.as_bytes(), other_key.as_bytes(), None).unwrap_err();
        assert_eq!(e.aws_code(), "ValidationException");
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn garbage_and_bundles_are_refused() {
        let (cert, key) = leaf(&["a.example.test"]);
        for (c, k, ch) in [
            ("not pem".to_owned(), key.clone(), None),
            (format!("{cert}{cert}"), key.clone(), None),
            (
                cert.clone(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
                None,
            ),
            (cert.clone(), key.clone(), Some("junk".to_owned())),
        ] {
            let e =
                check(c.as_bytes(), k.as_bytes(), ch.as_deref().map(str::as_bytes)).unwrap_err();
            assert_eq!(e.aws_code(), "ValidationException", "{e}");
            assert!(!e.to_string().contains("BEGIN"), "no material quoted: {e}");
        }
    }

    #[test]
    fn a_chain_is_kept_as_pem() {
        let (cert, key) = leaf(&["a.example.test"]);
        let (ca, _) = leaf(&["ca.example.test"]);
        let m = check(cert.as_bytes(), key.as_bytes(), Some(ca.as_bytes())).unwrap();
        assert_eq!(m.chain_pem.unwrap().matches("BEGIN CERTIFICATE").count(), 1);
    }
}
