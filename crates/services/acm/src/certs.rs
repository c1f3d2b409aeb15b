//! The served operations: import, describe, list, get, delete and tags.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gantry_aws_proto::pagination::{decode_token, encode_token};
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, TxnOutcome, Versioned, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::material::{self, CertificateFacts};
use crate::{AcmError, AcmService, ServedCertificate, keys};

/// Most tags one certificate may carry.
const MAX_TAGS: usize = 50;
const MAX_CAS_ATTEMPTS: usize = 16;

/// One imported certificate. The private key is stored only as KMS ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CertificateRecord {
    pub arn: String,
    pub id: String,
    pub certificate_pem: String,
    #[serde(default)]
    pub chain_pem: Option<String>,
    /// Base64 of the KMS blob of the PEM private key.
    pub key_ciphertext: String,
    pub key_arn: String,
    pub domain_name: String,
    pub subject_alternative_names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub key_algorithm: String,
    pub signature_algorithm: String,
    /// Epoch ms of the first import and of the last one.
    pub created_at: u64,
    pub imported_at: u64,
    #[serde(default)]
    pub tags: Vec<(String, Option<String>)>,
}

impl CertificateRecord {
    fn status(&self, now_ms: u64) -> &'static str {
        if (self.not_after as i128) * 1000 < now_ms as i128 {
            "EXPIRED"
        } else {
            "ISSUED"
        }
    }

    fn set_facts(&mut self, f: CertificateFacts) {
        self.domain_name = f.domain_name;
        self.subject_alternative_names = f.subject_alternative_names;
        self.subject = f.subject;
        self.issuer = f.issuer;
        self.serial = f.serial;
        self.not_before = f.not_before;
        self.not_after = f.not_after;
        self.key_algorithm = f.key_algorithm;
        self.signature_algorithm = f.signature_algorithm;
    }
}

/// Parses a request body without ever quoting it (it may hold a private key).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AcmError> {
    gantry_aws_proto::json::parse_body_unquoted(body).map_err(AcmError::Wire)
}

fn required<T>(v: Option<T>, member: &str) -> Result<T, AcmError> {
    v.ok_or_else(|| {
        AcmError::Validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn blob(v: &str, member: &str) -> Result<Vec<u8>, AcmError> {
    STANDARD
        .decode(v)
        .map_err(|_| AcmError::Validation(format!("{member} is not valid base64.")))
}

/// The certificate id an ARN of the request's account and region names.
fn id_of(ctx: &RequestContext, arn: &str) -> Result<String, AcmError> {
    id_in(&ctx.region, &ctx.account_id, arn)
}

fn id_in(region: &str, account: &str, arn: &str) -> Result<String, AcmError> {
    let prefix = format!("arn:aws:acm:{region}:{account}:certificate/");
    match arn.strip_prefix(&prefix) {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') => {
            Ok(id.to_owned())
        }
        _ => Err(AcmError::InvalidArn(format!(
            "The ARN {arn} is not a certificate ARN of account {account} in {region}."
        ))),
    }
}

fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

fn context(arn: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("CertificateArn".to_owned(), arn.to_owned())])
}

async fn load(
    svc: &AcmService,
    region: &str,
    arn: &str,
    id: &str,
) -> Result<Versioned<CertificateRecord>, AcmError> {
    svc.store
        .get_typed::<CertificateRecord>(&keys::certificate(region, id))
        .await?
        .filter(|r| r.value.arn == arn)
        .ok_or_else(|| AcmError::not_found(arn))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagIn {
    key: Option<String>,
    value: Option<String>,
}

fn check_tags(tags: &[TagIn]) -> Result<Vec<(String, Option<String>)>, AcmError> {
    let mut out = Vec::new();
    for t in tags {
        let key = required(t.key.clone(), "tags.member.key")?;
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(AcmError::InvalidTag(format!(
                "The tag key {key} uses the reserved prefix aws:."
            )));
        }
        out.push((key, t.value.clone()));
    }
    Ok(out)
}

fn merge_tags(
    into: &mut Vec<(String, Option<String>)>,
    add: Vec<(String, Option<String>)>,
) -> Result<(), AcmError> {
    for (k, v) in add {
        match into.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => into.push((k, v)),
        }
    }
    if into.len() > MAX_TAGS {
        return Err(AcmError::TooManyTags(format!(
            "A certificate can have at most {MAX_TAGS} tags."
        )));
    }
    Ok(())
}

fn tags_json(tags: &[(String, Option<String>)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| match v {
                Some(v) => json!({"Key": k, "Value": v}),
                None => json!({"Key": k}),
            })
            .collect(),
    )
}

async fn commit(svc: &AcmService, txn: Txn, key: &str) -> Result<bool, AcmError> {
    match svc.store.commit(txn).await? {
        TxnOutcome::Committed { .. } => Ok(true),
        TxnOutcome::Conflict { key: k } if k == key => Ok(false),
        TxnOutcome::Conflict { key } => Err(AcmError::Contention(key)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportRequest {
    certificate_arn: Option<String>,
    certificate: Option<String>,
    private_key: Option<String>,
    certificate_chain: Option<String>,
    tags: Option<Vec<TagIn>>,
}

pub(crate) async fn import(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let req: ImportRequest = parse(body)?;
    let cert = blob(&required(req.certificate, "certificate")?, "Certificate")?;
    let key = blob(&required(req.private_key, "privateKey")?, "PrivateKey")?;
    let chain = req
        .certificate_chain
        .as_deref()
        .map(|c| blob(c, "CertificateChain"))
        .transpose()?;
    let tags = check_tags(req.tags.as_deref().unwrap_or_default())?;
    let m = material::check(&cert, &key, chain.as_deref())?;
    let (arn, id) = match &req.certificate_arn {
        Some(arn) => {
            if !tags.is_empty() {
                return Err(AcmError::InvalidParameter(
                    "Tags cannot be applied when reimporting a certificate.".to_owned(),
                ));
            }
            let id = id_of(ctx, arn)?;
            load(svc, &ctx.region, arn, &id).await?;
            (arn.clone(), id)
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            (
                format!(
                    "arn:aws:acm:{}:{}:certificate/{id}",
                    ctx.region, ctx.account_id
                ),
                id,
            )
        }
    };
    let (ciphertext, key_arn) = svc
        .cipher
        .encrypt(ctx, m.private_key_pem.as_bytes(), &context(&arn))
        .await
        .map_err(|f| AcmError::Kms(format!("{}: {}", f.code, f.message)))?;
    let store_key = keys::certificate(&ctx.region, &id);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let existing = svc.store.get_typed::<CertificateRecord>(&store_key).await?;
        let (mut record, txn) = match (&existing, req.certificate_arn.is_some()) {
            (Some(cur), true) => (
                cur.value.clone(),
                Txn::new().require_revision(&store_key, cur.revision),
            ),
            (None, true) => return Err(AcmError::not_found(&arn)),
            (_, false) => {
                let mut r = CertificateRecord {
                    arn: arn.clone(),
                    id: id.clone(),
                    certificate_pem: String::new(),
                    chain_pem: None,
                    key_ciphertext: String::new(),
                    key_arn: String::new(),
                    domain_name: String::new(),
                    subject_alternative_names: Vec::new(),
                    subject: String::new(),
                    issuer: String::new(),
                    serial: String::new(),
                    not_before: 0,
                    not_after: 0,
                    key_algorithm: String::new(),
                    signature_algorithm: String::new(),
                    created_at: ctx.now,
                    imported_at: ctx.now,
                    tags: Vec::new(),
                };
                merge_tags(&mut r.tags, tags.clone())?;
                (r, Txn::new().require_absent(&store_key))
            }
        };
        record.certificate_pem = m.certificate_pem.clone();
        record.chain_pem = m.chain_pem.clone();
        record.key_ciphertext = STANDARD.encode(&ciphertext);
        record.key_arn = key_arn.clone();
        record.imported_at = ctx.now;
        record.set_facts(m.facts.clone());
        let txn = txn.put(&store_key, encode(&store_key, &record)?);
        if commit(svc, txn, &store_key).await? {
            tracing::info!(certificate = %arn, "certificate imported");
            return Ok(json!({ "CertificateArn": arn }));
        }
    }
    Err(AcmError::Contention(store_key))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnRequest {
    certificate_arn: Option<String>,
}

/// The certificate a `{"CertificateArn": ...}` request names: its ARN, id and stored record
/// (the preamble of DescribeCertificate, GetCertificate and DeleteCertificate).
async fn requested(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<(String, String, Versioned<CertificateRecord>), AcmError> {
    let req: ArnRequest = parse(body)?;
    let arn = required(req.certificate_arn, "certificateArn")?;
    let id = id_of(ctx, &arn)?;
    let cur = load(svc, &ctx.region, &arn, &id).await?;
    Ok((arn, id, cur))
}

async fn in_use_by(svc: &AcmService, region: &str, arn: &str) -> Result<Vec<String>, AcmError> {
    match &svc.users {
        Some(u) => u.users(region, arn).await.map_err(AcmError::Kms),
        None => Ok(Vec::new()),
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

pub(crate) async fn describe(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let (arn, _, cur) = requested(svc, body, ctx).await?;
    let r = cur.value;
    let users = in_use_by(svc, &ctx.region, &arn).await?;
    Ok(json!({
        "Certificate": {
            "CertificateArn": r.arn,
            "DomainName": r.domain_name,
            "SubjectAlternativeNames": r.subject_alternative_names,
            "Serial": r.serial,
            "Subject": r.subject,
            "Issuer": r.issuer,
            "CreatedAt": secs(r.created_at),
            "ImportedAt": secs(r.imported_at),
            "Status": r.status(ctx.now),
            "NotBefore": r.not_before,
            "NotAfter": r.not_after,
            "KeyAlgorithm": r.key_algorithm,
            "SignatureAlgorithm": r.signature_algorithm,
            "InUseBy": users,
            "Type": "IMPORTED",
            "RenewalEligibility": "INELIGIBLE",
            "Options": {"CertificateTransparencyLoggingPreference": "DISABLED"},
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    certificate_statuses: Option<Vec<String>>,
    includes: Option<Includes>,
    next_token: Option<String>,
    max_items: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Includes {
    extended_key_usage: Option<Vec<String>>,
    key_usage: Option<Vec<String>>,
    key_types: Option<Vec<String>>,
    export_option: Option<String>,
    managed_by: Option<String>,
}

pub(crate) async fn list(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let req: ListRequest = parse(body)?;
    // ACM lists RSA_1024 and RSA_2048 certificates unless keyTypes says otherwise.
    let mut key_types = vec!["RSA_1024".to_owned(), "RSA_2048".to_owned()];
    if let Some(inc) = req.includes {
        if inc.extended_key_usage.is_some_and(|v| !v.is_empty())
            || inc.key_usage.is_some_and(|v| !v.is_empty())
        {
            return Err(AcmError::UnsupportedOperation(
                "Filtering by keyUsage or extendedKeyUsage is not supported by Gantry's ACM."
                    .to_owned(),
            ));
        }
        // Imported certificates are managed by no service, and none is exportable.
        if inc.managed_by.is_some() || inc.export_option.as_deref() == Some("ENABLED") {
            return Ok(json!({"CertificateSummaryList": []}));
        }
        if let Some(k) = inc.key_types
            && !k.is_empty()
        {
            key_types = k;
        }
    }
    if req.sort_by.is_some() != req.sort_order.is_some() {
        return Err(AcmError::InvalidArgs(
            "SortBy and SortOrder must be given together.".to_owned(),
        ));
    }
    let max = req.max_items.unwrap_or(1000).clamp(1, 1000) as usize;
    let after = match &req.next_token {
        Some(t) => Some(
            decode_token(t)
                .ok_or_else(|| AcmError::InvalidArgs(format!("The NextToken {t} is not valid.")))?,
        ),
        None => None,
    };
    let mut all: Vec<CertificateRecord> = svc
        .store
        .scan_all_typed::<CertificateRecord>(&keys::certificates(&ctx.region))
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|r| key_types.contains(&r.key_algorithm))
        .filter(|r| {
            req.certificate_statuses
                .as_ref()
                .is_none_or(|s| s.is_empty() || s.iter().any(|s| s == r.status(ctx.now)))
        })
        .collect();
    // Listing order: by creation (then id), newest first for DESCENDING.
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if req.sort_order.as_deref() == Some("DESCENDING") {
        all.reverse();
    }
    let start = match &after {
        Some(id) => all
            .iter()
            .position(|r| r.id == *id)
            .map(|i| i + 1)
            .ok_or_else(|| AcmError::InvalidArgs("The NextToken is not valid.".to_owned()))?,
        None => 0,
    };
    let page: Vec<&CertificateRecord> = all.iter().skip(start).take(max).collect();
    let next = (start + page.len() < all.len())
        .then(|| page.last().map(|r| encode_token(&r.id)))
        .flatten();
    let mut out = Vec::new();
    for r in page {
        let users = in_use_by(svc, &ctx.region, &r.arn).await?;
        out.push(json!({
            "CertificateArn": r.arn,
            "DomainName": r.domain_name,
            "SubjectAlternativeNameSummaries": r.subject_alternative_names.iter().take(100).collect::<Vec<_>>(),
            "HasAdditionalSubjectAlternativeNames": r.subject_alternative_names.len() > 100,
            "Status": r.status(ctx.now),
            "Type": "IMPORTED",
            "KeyAlgorithm": r.key_algorithm,
            "InUse": !users.is_empty(),
            "RenewalEligibility": "INELIGIBLE",
            "NotBefore": r.not_before,
            "NotAfter": r.not_after,
            "CreatedAt": secs(r.created_at),
            "ImportedAt": secs(r.imported_at),
        }));
    }
    let mut resp = json!({ "CertificateSummaryList": out });
    if let Some(n) = next {
        resp["NextToken"] = json!(n);
    }
    Ok(resp)
}

pub(crate) async fn get(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let r = requested(svc, body, ctx).await?.2.value;
    let mut resp = json!({ "Certificate": r.certificate_pem });
    if let Some(c) = r.chain_pem {
        resp["CertificateChain"] = json!(c);
    }
    Ok(resp)
}

pub(crate) async fn delete(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let (arn, id, cur) = requested(svc, body, ctx).await?;
    let users = in_use_by(svc, &ctx.region, &arn).await?;
    if !users.is_empty() {
        return Err(AcmError::ResourceInUse(format!(
            "Certificate {arn} in account {} is in use by {}.",
            ctx.account_id,
            users.join(", ")
        )));
    }
    let key = keys::certificate(&ctx.region, &id);
    let txn = Txn::new().require_revision(&key, cur.revision).delete(&key);
    if !commit(svc, txn, &key).await? {
        return Err(AcmError::Contention(key));
    }
    tracing::info!(certificate = %arn, "certificate deleted");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsRequest {
    certificate_arn: Option<String>,
    tags: Option<Vec<TagIn>>,
}

async fn update_tags(
    svc: &AcmService,
    ctx: &RequestContext,
    arn: &str,
    f: impl Fn(&mut Vec<(String, Option<String>)>) -> Result<(), AcmError>,
) -> Result<(), AcmError> {
    let id = id_of(ctx, arn)?;
    let key = keys::certificate(&ctx.region, &id);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let cur = load(svc, &ctx.region, arn, &id).await?;
        let mut r = cur.value.clone();
        f(&mut r.tags)?;
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, encode(&key, &r)?);
        if commit(svc, txn, &key).await? {
            return Ok(());
        }
    }
    Err(AcmError::Contention(key))
}

pub(crate) async fn add_tags(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let req: TagsRequest = parse(body)?;
    let arn = required(req.certificate_arn, "certificateArn")?;
    let tags = check_tags(&required(req.tags, "tags")?)?;
    update_tags(svc, ctx, &arn, |t| merge_tags(t, tags.clone())).await?;
    Ok(json!({}))
}

pub(crate) async fn remove_tags(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let req: TagsRequest = parse(body)?;
    let arn = required(req.certificate_arn, "certificateArn")?;
    let remove = check_tags(&required(req.tags, "tags")?)?;
    update_tags(svc, ctx, &arn, |t| {
        // A tag given with a value is removed only when the value matches.
        t.retain(|(k, v)| {
            !remove
                .iter()
                .any(|(rk, rv)| rk == k && (rv.is_none() || rv == v))
        });
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn list_tags(
    svc: &AcmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, AcmError> {
    let req: ArnRequest = parse(body)?;
    let arn = required(req.certificate_arn, "certificateArn")?;
    let id = id_of(ctx, &arn)?;
    let r = load(svc, &ctx.region, &arn, &id).await?.value;
    Ok(json!({ "Tags": tags_json(&r.tags) }))
}

pub(crate) async fn exists(svc: &AcmService, region: &str, arn: &str) -> Result<bool, AcmError> {
    let Some(account) = account_of(arn) else {
        return Ok(false);
    };
    let Ok(id) = id_in(region, account, arn) else {
        return Ok(false);
    };
    match load(svc, region, arn, &id).await {
        Ok(_) => Ok(true),
        Err(AcmError::ResourceNotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) async fn served(
    svc: &AcmService,
    ctx: &RequestContext,
    arn: &str,
) -> Result<Option<ServedCertificate>, AcmError> {
    let Ok(id) = id_of(ctx, arn) else {
        return Ok(None);
    };
    let r = match load(svc, &ctx.region, arn, &id).await {
        Ok(r) => r.value,
        Err(AcmError::ResourceNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let blob = STANDARD
        .decode(&r.key_ciphertext)
        .map_err(|_| AcmError::Kms(format!("the stored key of {arn} is not base64")))?;
    let key = svc
        .cipher
        .decrypt(ctx, &blob, &context(arn))
        .await
        .map_err(|f| AcmError::Kms(format!("{}: {}", f.code, f.message)))?;
    let private_key_pem = String::from_utf8(key)
        .map_err(|_| AcmError::Kms(format!("the key of {arn} did not decrypt to PEM")))?;
    let mut chain_pem = r.certificate_pem;
    if let Some(c) = r.chain_pem {
        chain_pem.push_str(&c);
    }
    Ok(Some(ServedCertificate {
        arn: r.arn,
        chain_pem,
        private_key_pem,
    }))
}
