//! Listener certificates and security policies: the `Certificates` and `SslPolicy` of HTTPS
//! and TLS listeners, AddListenerCertificates, RemoveListenerCertificates,
//! DescribeListenerCertificates and DescribeSSLPolicies.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{
    DEFAULT_SSL_POLICY, Listener, ListenerCertificate, LoadBalancer, SSL_POLICIES, ssl_policy,
};
use gantry_front::RequestContext;
use gantry_store::{Store, Txn, encode};

use crate::error::Elbv2Error;
use crate::keys;
use crate::listeners::listener_by_arn;
use crate::wire::{self, Params};
use crate::{Elbv2Service, commit_with_retry};

/// Most certificates besides the default one on a listener (AWS's default quota).
const MAX_CERTIFICATES: usize = 25;

/// Whether a listener protocol terminates TLS.
pub(crate) fn is_tls(protocol: &str) -> bool {
    matches!(protocol, "HTTPS" | "TLS")
}

/// `Certificates.member.N.CertificateArn` (and `IsDefault`) of a request.
fn parse_certificates(p: &Params) -> Result<Vec<(String, Option<bool>)>, Elbv2Error> {
    p.structs("Certificates")
        .iter()
        .map(|c| {
            let arn = c
                .get("CertificateArn")
                .ok_or_else(|| Elbv2Error::validation("A certificate ARN must be specified"))?
                .to_owned();
            Ok((arn, c.bool("IsDefault")?))
        })
        .collect()
}

/// Checks that ACM has `arn` in the request's region.
async fn check_exists(svc: &Elbv2Service, region: &str, arn: &str) -> Result<(), Elbv2Error> {
    let Some(acm) = &svc.certificates else {
        return Err(Elbv2Error::CertificateNotFound(arn.to_owned()));
    };
    match acm.exists(region, arn).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Elbv2Error::CertificateNotFound(arn.to_owned())),
        Err(e) => Err(Elbv2Error::CertificateLookup(e)),
    }
}

/// The TLS settings of a CreateListener or ModifyListener request, applied to `l` whose protocol
/// is already the new one: an HTTPS or TLS listener needs a default certificate (given now or
/// kept) and gets `SslPolicy` (default [`DEFAULT_SSL_POLICY`]); other listeners take neither.
pub(crate) async fn apply_tls_settings(
    svc: &Elbv2Service,
    ctx: &RequestContext,
    p: &Params,
    l: &mut Listener,
) -> Result<(), Elbv2Error> {
    let certs = parse_certificates(p)?;
    let policy = p.get("SslPolicy");
    if let Some(a) = p.list("AlpnPolicy").first()
        && a != "None"
    {
        return Err(Elbv2Error::AlpnPolicyNotSupported(format!(
            "ALPN policy '{a}' is not supported by Gantry: HTTPS listeners offer HTTP/2 and HTTP/1.1, TLS listeners no ALPN"
        )));
    }
    if p.has("MutualAuthentication.Mode") && p.get("MutualAuthentication.Mode") != Some("off") {
        return Err(Elbv2Error::InvalidConfiguration(
            "Mutual TLS authentication is not supported by Gantry".into(),
        ));
    }
    if !is_tls(&l.protocol) {
        if !certs.is_empty() || policy.is_some() {
            return Err(Elbv2Error::InvalidConfiguration(format!(
                "Certificates and an SSL policy can be specified only for HTTPS and TLS listeners, not {}",
                l.protocol
            )));
        }
        l.certificates.clear();
        l.ssl_policy = None;
        return Ok(());
    }
    if certs.len() > 1 {
        return Err(Elbv2Error::TooManyCertificates(
            "A listener's default certificate is one certificate; add the others with AddListenerCertificates".into(),
        ));
    }
    if let Some((arn, _)) = certs.first() {
        check_exists(svc, &ctx.region, arn).await?;
        l.certificates
            .retain(|c| !c.is_default && c.certificate_arn != *arn);
        l.certificates.insert(
            0,
            ListenerCertificate {
                certificate_arn: arn.clone(),
                is_default: true,
            },
        );
    }
    if !l.certificates.iter().any(|c| c.is_default) {
        return Err(Elbv2Error::validation(format!(
            "A certificate must be specified for {} listeners",
            l.protocol
        )));
    }
    match policy {
        Some(name) => {
            if ssl_policy(name).is_none() {
                return Err(Elbv2Error::SslPolicyNotFound(name.to_owned()));
            }
            l.ssl_policy = Some(name.to_owned());
        }
        None => {
            if l.ssl_policy.is_none() {
                l.ssl_policy = Some(DEFAULT_SSL_POLICY.to_owned());
            }
        }
    }
    Ok(())
}

/// The listeners of `region` that serve `certificate_arn` (for ACM's `InUseBy`).
pub async fn listeners_using_certificate(
    store: &dyn Store,
    region: &str,
    certificate_arn: &str,
) -> Result<Vec<String>, Elbv2Error> {
    let mut out = Vec::new();
    for lb in crate::all_load_balancers(store, region).await? {
        for l in &lb.listeners {
            if l.certificates
                .iter()
                .any(|c| c.certificate_arn == certificate_arn)
            {
                out.push(l.arn.clone());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn write_certificates(w: &mut XmlWriter, certs: &[&ListenerCertificate]) {
    wire::write_list(w, "Certificates", certs, |w, c| {
        w.leaf("CertificateArn", &c.certificate_arn);
        w.leaf("IsDefault", wire::bool_str(c.is_default));
    });
}

/// Loads the listener, applies `f` and stores it.
async fn update_listener<R: Send>(
    svc: &Elbv2Service,
    ctx: &RequestContext,
    arn: &str,
    f: impl Fn(&mut Listener) -> Result<R, Elbv2Error> + Send + Sync,
) -> Result<(LoadBalancer, R), Elbv2Error> {
    let store = svc.store.as_ref();
    commit_with_retry(store, || async {
        let (cur, i) = listener_by_arn(store, &ctx.region, arn).await?;
        let mut lb = cur.value.clone();
        let r = f(&mut lb.listeners[i])?;
        let key = keys::load_balancer(&ctx.region, &lb.name);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &lb)?);
        Ok((txn, (lb, r)))
    })
    .await
}

pub(crate) async fn add(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("ListenerArn")?;
    let certs = parse_certificates(p)?;
    if certs.is_empty() {
        return Err(Elbv2Error::validation(
            "At least one certificate must be specified",
        ));
    }
    if certs.iter().any(|(_, d)| *d == Some(true)) {
        return Err(Elbv2Error::validation(
            "The default certificate cannot be set with AddListenerCertificates; use ModifyListener",
        ));
    }
    let (lb, i) = listener_by_arn(svc.store.as_ref(), &ctx.region, arn).await?;
    if !is_tls(&lb.value.listeners[i].protocol) {
        return Err(Elbv2Error::InvalidConfiguration(
            "Certificates can be added only to HTTPS and TLS listeners".into(),
        ));
    }
    for (c, _) in &certs {
        check_exists(svc, &ctx.region, c).await?;
    }
    let (_, added) = update_listener(svc, ctx, arn, |l| {
        let mut added = Vec::new();
        for (c, _) in &certs {
            if !l.certificates.iter().any(|e| e.certificate_arn == *c) {
                l.certificates.push(ListenerCertificate {
                    certificate_arn: c.clone(),
                    is_default: false,
                });
            }
            added.push(ListenerCertificate {
                certificate_arn: c.clone(),
                is_default: false,
            });
        }
        if l.certificates.iter().filter(|c| !c.is_default).count() > MAX_CERTIFICATES {
            return Err(Elbv2Error::TooManyCertificates(format!(
                "A listener can have at most {MAX_CERTIFICATES} certificates besides its default one"
            )));
        }
        Ok(added)
    })
    .await?;
    let mut w = XmlWriter::new();
    write_certificates(&mut w, &added.iter().collect::<Vec<_>>());
    Ok(w.finish())
}

pub(crate) async fn remove(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("ListenerArn")?;
    let certs = parse_certificates(p)?;
    if certs.is_empty() {
        return Err(Elbv2Error::validation(
            "At least one certificate must be specified",
        ));
    }
    update_listener(svc, ctx, arn, |l| {
        for (c, _) in &certs {
            if l
                .certificates
                .iter()
                .any(|e| e.is_default && e.certificate_arn == *c)
            {
                return Err(Elbv2Error::OperationNotPermitted(format!(
                    "The default certificate '{c}' cannot be removed; set another with ModifyListener"
                )));
            }
        }
        l.certificates
            .retain(|e| e.is_default || !certs.iter().any(|(c, _)| *c == e.certificate_arn));
        Ok(())
    })
    .await?;
    Ok(String::new())
}

pub(crate) async fn describe(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arn = p.req("ListenerArn")?;
    let (lb, i) = listener_by_arn(svc.store.as_ref(), &ctx.region, arn).await?;
    let items: Vec<(String, ListenerCertificate)> = lb.value.listeners[i]
        .certificates
        .iter()
        .map(|c| (c.certificate_arn.clone(), c.clone()))
        .collect();
    let mut items = items;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = wire::paginate(items, p)?;
    let mut w = XmlWriter::new();
    write_certificates(&mut w, &page.iter().collect::<Vec<_>>());
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    Ok(w.finish())
}

pub(crate) fn describe_ssl_policies(p: &Params) -> Result<String, Elbv2Error> {
    let names = p.list("Names");
    for n in &names {
        if ssl_policy(n).is_none() {
            return Err(Elbv2Error::SslPolicyNotFound(n.clone()));
        }
    }
    let types: &[&str] = match p.get("LoadBalancerType") {
        None => &["application", "network"],
        Some("application") => &["application"],
        Some("network") => &["network"],
        Some(other) => {
            return Err(Elbv2Error::validation(format!(
                "Load balancer type '{other}' does not support SSL policies"
            )));
        }
    };
    let items: Vec<(String, &gantry_domain::lb::SslPolicy)> = SSL_POLICIES
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
        .map(|s| (s.name.to_owned(), s))
        .collect();
    let (page, next) = wire::paginate(items, p)?;
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "SslPolicies", &page, |w, s| {
        let protocols: Vec<String> = s.protocols.iter().map(|s| (*s).to_owned()).collect();
        wire::write_strings(w, "SslProtocols", &protocols);
        let ciphers: Vec<(usize, &str)> = s.ciphers.iter().copied().enumerate().collect();
        wire::write_list(w, "Ciphers", &ciphers, |w, (i, c)| {
            w.leaf("Name", c);
            w.leaf("Priority", &(i + 1).to_string());
        });
        w.leaf("Name", s.name);
        let types: Vec<String> = types.iter().map(|s| (*s).to_owned()).collect();
        wire::write_strings(w, "SupportedLoadBalancerTypes", &types);
    });
    if let Some(n) = next {
        w.leaf("NextMarker", &n);
    }
    Ok(w.finish())
}
