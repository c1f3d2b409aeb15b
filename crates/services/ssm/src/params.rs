//! PutParameter, GetParameter, GetParameters, GetParametersByPath, DeleteParameter(s),
//! DescribeParameters and GetParameterHistory.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_aws_proto::pagination::epoch_seconds;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, Versioned, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{ParameterRecord, ParameterType, StoredValue, VersionMeta};
use crate::tags::{Tag, merge_tags};
use crate::wire::{
    Selector, arn, check_name, commit_with_retry, max_results, page, parameter, parameters, parse,
    required, selected, value, values,
};
use crate::{DEFAULT_KEY, EncryptionContext, KeyFailure, SsmError, SsmService};

/// Most versions a parameter keeps.
pub const MAX_VERSIONS: usize = 100;
const STANDARD_MAX: usize = 4096;
const ADVANCED_MAX: usize = 8192;

fn time(ms: u64) -> f64 {
    epoch_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

fn context(ctx: &RequestContext, name: &str) -> EncryptionContext {
    EncryptionContext::from([("PARAMETER_ARN".to_owned(), arn(ctx, name))])
}

/// A KMS refusal as Parameter Store reports it, carrying KMS's answer: `AccessDeniedException`
/// when KMS refused the caller the key, `InvalidKeyId` otherwise.
fn key_error(ctx: &RequestContext, f: KeyFailure) -> SsmError {
    if f.internal {
        return SsmError::Kms(f.message);
    }
    let message = format!(
        "{} (Service: AWSKMS; Status Code: 400; Error Code: {}; Request ID: {}; Proxy: null)",
        f.message, f.code, ctx.request_id
    );
    if f.code == "AccessDeniedException" {
        return SsmError::AccessDenied(message);
    }
    SsmError::InvalidKeyId(message)
}

pub(crate) async fn load(
    svc: &SsmService,
    ctx: &RequestContext,
    name: &str,
) -> Result<Option<Versioned<ParameterRecord>>, SsmError> {
    Ok(svc
        .store
        .get_typed::<ParameterRecord>(&parameter(&ctx.region, name))
        .await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutParameterRequest {
    name: Option<String>,
    description: Option<String>,
    value: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    overwrite: bool,
    allowed_pattern: Option<String>,
    tags: Option<Vec<Tag>>,
    tier: Option<String>,
    policies: Option<String>,
    data_type: Option<String>,
}

fn check_allowed_pattern(pattern: &str, value: &str) -> Result<(), SsmError> {
    if pattern.chars().count() > 1024 {
        return Err(SsmError::validation(
            "1 validation error detected: Value at 'allowedPattern' failed to satisfy constraint: Member must have length less than or equal to 1024",
        ));
    }
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        SsmError::InvalidAllowedPattern(format!(
            "The allowed pattern {pattern} is not a valid regular expression: {e}"
        ))
    })?;
    if !re.is_match(value) {
        return Err(SsmError::validation(format!(
            "Parameter value, cannot be validated against allowedPattern: {pattern}"
        )));
    }
    Ok(())
}

fn check_data_type(data_type: &str, value: &str) -> Result<(), SsmError> {
    match data_type {
        "text" => Ok(()),
        "aws:ec2:image" => {
            let ok = value.strip_prefix("ami-").is_some_and(|id| {
                (8..=17).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if ok {
                Ok(())
            } else {
                Err(SsmError::validation(
                    "Parameter value is not a valid AMI ID (ami-followed by 8 or 17 hexadecimal characters) for data type aws:ec2:image.",
                ))
            }
        }
        other => Err(SsmError::validation(format!(
            "The following data type is not supported: {other} (Data type names are all lowercase.)"
        ))),
    }
}

/// The tier a request ends in: the requested one (Intelligent-Tiering picks by size), never
/// below the current one, and large enough for the value.
fn tier_for(
    requested: Option<&str>,
    current: Option<&str>,
    value_len: usize,
) -> Result<String, SsmError> {
    let tier = match requested {
        Some("Standard") => "Standard",
        Some("Advanced") => "Advanced",
        Some("Intelligent-Tiering") => {
            if value_len > STANDARD_MAX || current == Some("Advanced") {
                "Advanced"
            } else {
                "Standard"
            }
        }
        Some(other) => {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value '{other}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Standard, Advanced, Intelligent-Tiering]"
            )));
        }
        None => current.unwrap_or("Standard"),
    };
    if tier == "Standard" && current == Some("Advanced") {
        return Err(SsmError::validation(
            "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.",
        ));
    }
    if tier == "Standard" && value_len > STANDARD_MAX {
        return Err(SsmError::validation(format!(
            "Standard tier parameters support a maximum parameter value of {STANDARD_MAX} characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html"
        )));
    }
    if value_len > ADVANCED_MAX {
        return Err(SsmError::validation(format!(
            "Advanced tier parameters support a maximum parameter value of {ADVANCED_MAX} characters."
        )));
    }
    Ok(tier.to_owned())
}

pub(crate) async fn put(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: PutParameterRequest = parse(body)?;
    let name = check_name(&required(req.name, "name")?)?;
    let value_text = required(req.value, "value")?;
    if value_text.is_empty() {
        return Err(SsmError::validation(
            "1 validation error detected: Value '' at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1.",
        ));
    }
    let requested_kind = match req.kind.as_deref() {
        None => None,
        Some(k) => Some(ParameterType::parse(k).ok_or_else(|| {
            SsmError::validation(format!(
                "1 validation error detected: Value '{k}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
            ))
        })?),
    };
    if req.policies.is_some() {
        return Err(SsmError::UnsupportedOperation(
            "Parameter policies (Expiration, ExpirationNotification, NoChangeNotification) are not supported by Gantry.".to_owned(),
        ));
    }
    let tags = req.tags.unwrap_or_default();
    if req.overwrite && !tags.is_empty() {
        return Err(SsmError::validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    if req
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err(SsmError::validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1024",
        ));
    }
    if let Some(k) = &req.key_id {
        let ok = !k.is_empty()
            && k.len() <= 256
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'));
        if !ok {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value '{k}' at 'keyId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-zA-Z0-9:/_-]+)$"
            )));
        }
    }
    let mut new_tags = Vec::new();
    merge_tags(&mut new_tags, &tags)?;

    let store_key = parameter(&ctx.region, &name);
    let _guard = svc.locks.lock(&store_key).await;
    let (version, tier) = commit_with_retry(svc.store.as_ref(), || async {
        let existing = load(svc, ctx, &name).await?;
        if existing.is_some() && !req.overwrite {
            return Err(SsmError::ParameterAlreadyExists);
        }
        let current = existing.as_ref().and_then(|e| e.value.current().cloned());
        let kind = match (requested_kind, &current) {
            (Some(k), Some(c)) if k != c.kind => {
                return Err(SsmError::HierarchyTypeMismatch(format!(
                    "Parameter Store can't change the type of {name} from {} to {}: create a new parameter instead.",
                    c.kind.as_str(),
                    k.as_str()
                )));
            }
            (Some(k), _) => k,
            (None, Some(c)) => c.kind,
            (None, None) => {
                return Err(SsmError::validation(
                    "A parameter type is required when you create a parameter.",
                ));
            }
        };
        let key_id = match kind {
            ParameterType::SecureString => Some(
                req.key_id
                    .clone()
                    .or_else(|| current.as_ref().and_then(|c| c.key_id.clone()))
                    .unwrap_or_else(|| DEFAULT_KEY.to_owned()),
            ),
            _ if req.key_id.is_some() => {
                return Err(SsmError::validation(format!(
                    "KeyId is only supported for SecureString parameters; {name} is a {}.",
                    kind.as_str()
                )));
            }
            _ => None,
        };
        let description = req
            .description
            .clone()
            .or_else(|| current.as_ref().and_then(|c| c.description.clone()));
        let allowed_pattern = req
            .allowed_pattern
            .clone()
            .or_else(|| current.as_ref().and_then(|c| c.allowed_pattern.clone()));
        if let Some(p) = &allowed_pattern {
            check_allowed_pattern(p, &value_text)?;
        }
        let data_type = req
            .data_type
            .clone()
            .or_else(|| current.as_ref().map(|c| c.data_type.clone()))
            .unwrap_or_else(|| "text".to_owned());
        check_data_type(&data_type, &value_text)?;
        let tier = tier_for(
            req.tier.as_deref(),
            current.as_ref().map(|c| c.tier.as_str()),
            value_text.chars().count(),
        )?;
        let (mut record, revision) = match existing {
            Some(e) => (e.value, e.revision),
            None => (
                ParameterRecord {
                    name: name.clone(),
                    uid: uuid::Uuid::new_v4().simple().to_string(),
                    versions: Vec::new(),
                    tags: new_tags.clone(),
                },
                0,
            ),
        };
        let version = record.versions.last().map_or(1, |v| v.version + 1);
        let mut txn = Txn::new().require_revision(&store_key, revision);
        if record.versions.len() >= MAX_VERSIONS {
            let oldest = record.versions[0].clone();
            if !oldest.labels.is_empty() {
                return Err(SsmError::ParameterMaxVersionLimitExceeded(format!(
                    "You attempted to create a new version of {name} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
                    oldest.version
                )));
            }
            record.versions.remove(0);
            txn = txn.delete(value(&ctx.region, &record.uid, oldest.version));
        }
        let stored = match kind {
            ParameterType::SecureString => {
                let key = key_id.as_deref().unwrap_or(DEFAULT_KEY);
                let blob = svc
                    .cipher
                    .encrypt(ctx, key, value_text.as_bytes(), &context(ctx, &name))
                    .await
                    .map_err(|f| key_error(ctx, f))?;
                StoredValue::Encrypted(STANDARD.encode(blob))
            }
            _ => StoredValue::Plain(value_text.clone()),
        };
        record.versions.push(VersionMeta {
            version,
            labels: Vec::new(),
            last_modified_ms: ctx.now,
            last_modified_user: ctx.caller_arn(),
            kind,
            key_id,
            description,
            allowed_pattern,
            tier: tier.clone(),
            data_type,
        });
        let value_key = value(&ctx.region, &record.uid, version);
        txn = txn
            .require_absent(&value_key)
            .put(&value_key, encode(&value_key, &stored)?)
            .put(&store_key, encode(&store_key, &record)?);
        Ok((txn, (version, tier)))
    })
    .await?;
    Ok(json!({"Version": version, "Tier": tier}))
}

/// One parameter read for a caller, as GetParameter answers it.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedParameter {
    pub name: String,
    pub arn: String,
    pub kind: ParameterType,
    /// The value; a SecureString read without decryption is its ciphertext (base64).
    pub value: String,
    pub version: u64,
    pub selector: Option<String>,
    pub last_modified_ms: u64,
    pub data_type: String,
}

impl std::fmt::Debug for ResolvedParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedParameter")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ResolvedParameter {
    fn to_wire(&self) -> Value {
        let mut v = json!({
            "Name": self.name,
            "Type": self.kind.as_str(),
            "Value": self.value,
            "Version": self.version,
            "LastModifiedDate": time(self.last_modified_ms),
            "ARN": self.arn,
            "DataType": self.data_type,
        });
        if let Some(s) = &self.selector {
            v["Selector"] = json!(s);
        }
        v
    }
}

/// The value of version `meta` of `r`, decrypted when asked.
async fn value_of(
    svc: &SsmService,
    ctx: &RequestContext,
    r: &ParameterRecord,
    meta: &VersionMeta,
    decrypt: bool,
) -> Result<String, SsmError> {
    let key = value(&ctx.region, &r.uid, meta.version);
    let stored = svc
        .store
        .get_typed::<StoredValue>(&key)
        .await?
        .ok_or_else(|| {
            SsmError::Store(gantry_store::StoreError::Codec {
                key: key.clone(),
                detail: "the version's value record is missing".to_owned(),
            })
        })?
        .value;
    match stored {
        StoredValue::Plain(v) => Ok(v),
        StoredValue::Encrypted(b64) if !decrypt => Ok(b64),
        StoredValue::Encrypted(b64) => {
            let blob = STANDARD.decode(b64.as_bytes()).map_err(|e| {
                SsmError::Store(gantry_store::StoreError::Codec {
                    key: key.clone(),
                    detail: e.to_string(),
                })
            })?;
            let plain = svc
                .cipher
                .decrypt(ctx, &blob, &context(ctx, &r.name))
                .await
                .map_err(|f| key_error(ctx, f))?;
            String::from_utf8(plain).map_err(|_| {
                SsmError::Store(gantry_store::StoreError::Codec {
                    key,
                    detail: "a SecureString decrypted to bytes that are not UTF-8".to_owned(),
                })
            })
        }
    }
}

/// Reads one `Name` (with an optional selector); `Ok(None)` when the parameter does not exist.
async fn read_one(
    svc: &SsmService,
    ctx: &RequestContext,
    raw: &str,
    decrypt: bool,
) -> Result<Option<ResolvedParameter>, SsmError> {
    let Some(sel) = selected(ctx, raw) else {
        return Ok(None);
    };
    let Some(rec) = load(svc, ctx, &sel.name).await? else {
        return Ok(None);
    };
    let r = rec.value;
    let meta = match &sel.selector {
        None => r.current(),
        Some(Selector::Version(v)) => r.version(*v),
        Some(Selector::Label(l)) => r.version_with_label(l),
    };
    let Some(meta) = meta else {
        let what = match &sel.selector {
            Some(Selector::Version(v)) => v.to_string(),
            Some(Selector::Label(l)) => l.clone(),
            None => String::new(),
        };
        return Err(SsmError::ParameterVersionNotFound(format!(
            "Systems Manager could not find version {what} of {}. Verify the version and try again.",
            sel.name
        )));
    };
    let value = value_of(svc, ctx, &r, meta, decrypt).await?;
    Ok(Some(ResolvedParameter {
        name: r.name.clone(),
        arn: arn(ctx, &r.name),
        kind: meta.kind,
        value,
        version: meta.version,
        selector: sel.selector.as_ref().map(Selector::as_wire),
        last_modified_ms: meta.last_modified_ms,
        data_type: meta.data_type.clone(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterRequest {
    name: Option<String>,
    #[serde(default)]
    with_decryption: bool,
}

pub(crate) async fn get(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: GetParameterRequest = parse(body)?;
    let name = required(req.name, "name")?;
    match read_one(svc, ctx, &name, req.with_decryption).await? {
        Some(p) => Ok(json!({"Parameter": p.to_wire()})),
        None => Err(SsmError::not_found(name.trim())),
    }
}

/// GetParameters' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetParametersResult {
    pub parameters: Vec<ResolvedParameter>,
    /// The names, as given, of parameters that do not exist.
    pub invalid: Vec<String>,
}

pub(crate) async fn read_many(
    svc: &SsmService,
    ctx: &RequestContext,
    names: &[String],
    decrypt: bool,
) -> Result<GetParametersResult, SsmError> {
    if names.is_empty() || names.len() > 10 {
        return Err(SsmError::validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
        ));
    }
    let mut out = GetParametersResult {
        parameters: Vec::new(),
        invalid: Vec::new(),
    };
    for n in names {
        match read_one(svc, ctx, n, decrypt).await {
            Ok(Some(p)) => {
                if !out
                    .parameters
                    .iter()
                    .any(|q| q.name == p.name && q.selector == p.selector)
                {
                    out.parameters.push(p);
                }
            }
            Ok(None) | Err(SsmError::ParameterVersionNotFound(_)) => {
                if !out.invalid.contains(n) {
                    out.invalid.push(n.clone());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersRequest {
    names: Option<Vec<String>>,
    #[serde(default)]
    with_decryption: bool,
}

pub(crate) async fn get_many(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: GetParametersRequest = parse(body)?;
    let names = required(req.names, "names")?;
    let r = read_many(svc, ctx, &names, req.with_decryption).await?;
    Ok(json!({
        "Parameters": r.parameters.iter().map(ResolvedParameter::to_wire).collect::<Vec<_>>(),
        "InvalidParameters": r.invalid,
    }))
}

/// A `ParameterStringFilter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StringFilter {
    key: Option<String>,
    option: Option<String>,
    values: Option<Vec<String>>,
}

/// Where a filter list is used: the keys and options each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterUse {
    ByPath,
    Describe,
}

fn check_string_filters(filters: &[StringFilter], usage: FilterUse) -> Result<(), SsmError> {
    let mut seen = Vec::new();
    for f in filters {
        let key = f.key.clone().unwrap_or_default();
        let allowed = match usage {
            FilterUse::ByPath => matches!(key.as_str(), "Type" | "KeyId" | "Label"),
            FilterUse::Describe => {
                matches!(
                    key.as_str(),
                    "Name" | "Type" | "KeyId" | "Path" | "Tier" | "DataType"
                ) || key.starts_with("tag:")
            }
        };
        if !allowed {
            let valid = match usage {
                FilterUse::ByPath => "[Type, KeyId, Label]",
                FilterUse::Describe => "[Path, Name, Type, KeyId, Tier, DataType, tag:{key}]",
            };
            return Err(SsmError::InvalidFilterKey(format!(
                "The following filter key is not valid: {key}. Valid filter keys include: {valid}."
            )));
        }
        if seen.contains(&key) {
            return Err(SsmError::InvalidFilterKey(format!(
                "The following filter is duplicated in the request: {key}. A request can contain only one occurrence of a specific filter."
            )));
        }
        seen.push(key.clone());
        let option = f.option.as_deref();
        let options: &[&str] = match (key.as_str(), usage) {
            ("Path", _) => &["Recursive", "OneLevel"],
            ("Label", _) => &["Equals"],
            ("Name", FilterUse::Describe) => &["Equals", "BeginsWith", "Contains"],
            _ => &["Equals", "BeginsWith"],
        };
        if let Some(o) = option
            && !options.contains(&o)
        {
            return Err(SsmError::InvalidFilterOption(format!(
                "The following filter option is not valid: {o}. Valid options include: [{}].",
                options.join(", ")
            )));
        }
        let values = f.values.as_deref().unwrap_or_default();
        if values.is_empty() && !key.starts_with("tag:") {
            return Err(SsmError::InvalidFilterValue(format!(
                "The following filter values are missing : null for filter key {key}."
            )));
        }
        if key == "Type" {
            for v in values {
                if ParameterType::parse(v).is_none() {
                    return Err(SsmError::InvalidFilterValue(format!(
                        "The following filter value is not valid: {v}. Valid values include: [String, StringList, SecureString]."
                    )));
                }
            }
        }
        if key == "Tier" {
            for v in values {
                if !["Standard", "Advanced", "Intelligent-Tiering"].contains(&v.as_str()) {
                    return Err(SsmError::InvalidFilterValue(format!(
                        "The following filter value is not valid: {v}. Valid values include: [Standard, Advanced, Intelligent-Tiering]."
                    )));
                }
            }
        }
    }
    Ok(())
}

fn under_path(name: &str, path: &str, recursive: bool) -> bool {
    let prefix = if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    };
    match name.strip_prefix(&prefix) {
        Some(rest) => !rest.is_empty() && (recursive || !rest.contains('/')),
        None => false,
    }
}

fn string_filters_match(r: &ParameterRecord, filters: &[StringFilter]) -> bool {
    let Some(cur) = r.current() else {
        return false;
    };
    filters.iter().all(|f| {
        let key = f.key.as_deref().unwrap_or_default();
        let option = f.option.as_deref();
        let values = f.values.as_deref().unwrap_or_default();
        let test = |actual: &str| {
            values.iter().any(|v| match option {
                Some("BeginsWith") => actual.starts_with(v.as_str()),
                Some("Contains") => actual.contains(v.as_str()),
                _ => actual == v,
            })
        };
        match key {
            "Name" => {
                let bare = r.name.trim_start_matches('/');
                values.iter().any(|v| {
                    let v = v.trim_start_matches('/');
                    match option {
                        Some("BeginsWith") => bare.starts_with(v),
                        Some("Contains") => bare.contains(v),
                        _ => bare == v,
                    }
                })
            }
            "Type" => test(cur.kind.as_str()),
            "KeyId" => cur.key_id.as_deref().is_some_and(test),
            "Tier" => test(&cur.tier),
            "DataType" => test(&cur.data_type),
            "Label" => r
                .versions
                .iter()
                .any(|v| v.labels.iter().any(|l| values.contains(l))),
            "Path" => values
                .iter()
                .any(|p| under_path(&r.name, p, option == Some("Recursive"))),
            tag => {
                let k = tag.trim_start_matches("tag:");
                r.tags
                    .iter()
                    .any(|(tk, tv)| tk == k && (values.is_empty() || values.contains(tv)))
            }
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersByPathRequest {
    path: Option<String>,
    #[serde(default)]
    recursive: bool,
    parameter_filters: Option<Vec<StringFilter>>,
    #[serde(default)]
    with_decryption: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) async fn get_by_path(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: GetParametersByPathRequest = parse(body)?;
    let path = required(req.path, "path")?.trim().to_owned();
    if !path.starts_with('/') {
        return Err(SsmError::validation(format!(
            "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\": {path}"
        )));
    }
    if path != "/" {
        check_name(&path)?;
    }
    let limit = max_results(req.max_results, 10)?;
    let filters = req.parameter_filters.unwrap_or_default();
    check_string_filters(&filters, FilterUse::ByPath)?;
    let all = svc
        .store
        .scan_all_typed::<ParameterRecord>(&parameters(&ctx.region))
        .await?;
    let items: Vec<(String, ParameterRecord)> = all
        .into_iter()
        .map(|r| r.value)
        .filter(|r| under_path(&r.name, &path, req.recursive))
        .filter(|r| string_filters_match(r, &filters))
        .map(|r| (r.name.clone(), r))
        .collect();
    let (page, next) = page(items, req.next_token.as_deref(), limit)?;
    let mut out = Vec::with_capacity(page.len());
    for r in page {
        if let Some(p) = read_one(svc, ctx, &r.name, req.with_decryption).await? {
            out.push(p.to_wire());
        }
    }
    let mut v = json!({"Parameters": out});
    if let Some(t) = next {
        v["NextToken"] = json!(t);
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameRequest {
    name: Option<String>,
}

async fn delete_one(svc: &SsmService, ctx: &RequestContext, name: &str) -> Result<bool, SsmError> {
    let store_key = parameter(&ctx.region, name);
    let _guard = svc.locks.lock(&store_key).await;
    commit_with_retry(svc.store.as_ref(), || async {
        let Some(rec) = load(svc, ctx, name).await? else {
            return Ok((Txn::new(), false));
        };
        let mut txn = Txn::new()
            .require_revision(&store_key, rec.revision)
            .delete(&store_key);
        let page = svc
            .store
            .scan(&values(&ctx.region, &rec.value.uid), None, 0)
            .await?;
        for r in page.records {
            txn = txn.delete(r.key);
        }
        Ok((txn, true))
    })
    .await
}

pub(crate) async fn delete(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: NameRequest = parse(body)?;
    let name = required(req.name, "name")?.trim().to_owned();
    if !delete_one(svc, ctx, &name).await? {
        return Err(SsmError::not_found(&name));
    }
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamesRequest {
    names: Option<Vec<String>>,
}

pub(crate) async fn delete_many(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: NamesRequest = parse(body)?;
    let names = required(req.names, "names")?;
    if names.is_empty() || names.len() > 10 {
        return Err(SsmError::validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
        ));
    }
    let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
    for n in names {
        if delete_one(svc, ctx, n.trim()).await? {
            deleted.push(n);
        } else {
            invalid.push(n);
        }
    }
    Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}

/// `ParameterMetadata` of the current version.
fn metadata(ctx: &RequestContext, r: &ParameterRecord, cur: &VersionMeta) -> Value {
    let mut v = json!({
        "Name": r.name,
        "ARN": arn(ctx, &r.name),
        "Type": cur.kind.as_str(),
        "LastModifiedDate": time(cur.last_modified_ms),
        "LastModifiedUser": cur.last_modified_user,
        "Version": cur.version,
        "Tier": cur.tier,
        "Policies": [],
        "DataType": cur.data_type,
    });
    if let Some(k) = &cur.key_id {
        v["KeyId"] = json!(k);
    }
    if let Some(d) = &cur.description {
        v["Description"] = json!(d);
    }
    if let Some(p) = &cur.allowed_pattern {
        v["AllowedPattern"] = json!(p);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ParametersFilter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeParametersRequest {
    filters: Option<Vec<ParametersFilter>>,
    parameter_filters: Option<Vec<StringFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    shared: bool,
}

pub(crate) async fn describe(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: DescribeParametersRequest = parse(body)?;
    let limit = max_results(req.max_results, 50)?;
    let filters = match (req.filters, req.parameter_filters) {
        (Some(_), Some(_)) => {
            return Err(SsmError::validation(
                "You can use either Filters or ParameterFilters in a single request.",
            ));
        }
        // The older Filters: Name (begins with), Type, KeyId (equals).
        (Some(old), None) => old
            .into_iter()
            .map(|f| {
                let key = f.key.unwrap_or_default();
                if !matches!(key.as_str(), "Name" | "Type" | "KeyId") {
                    return Err(SsmError::validation(format!(
                        "1 validation error detected: Value '{key}' at 'filters.1.member.key' failed to satisfy constraint: Member must satisfy enum value set: [Name, Type, KeyId]"
                    )));
                }
                Ok(StringFilter {
                    option: Some(if key == "Name" { "BeginsWith" } else { "Equals" }.to_owned()),
                    key: Some(key),
                    values: f.values,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(f)) => f,
        (None, None) => Vec::new(),
    };
    check_string_filters(&filters, FilterUse::Describe)?;
    if req.shared {
        // Gantry has one account: nothing is shared with it.
        return Ok(json!({"Parameters": []}));
    }
    let all = svc
        .store
        .scan_all_typed::<ParameterRecord>(&parameters(&ctx.region))
        .await?;
    let items: Vec<(String, Value)> = all
        .into_iter()
        .map(|r| r.value)
        .filter(|r| string_filters_match(r, &filters))
        .filter_map(|r| {
            let cur = r.current()?.clone();
            Some((r.name.clone(), metadata(ctx, &r, &cur)))
        })
        .collect();
    let (page, next) = page(items, req.next_token.as_deref(), limit)?;
    let mut v = json!({"Parameters": page});
    if let Some(t) = next {
        v["NextToken"] = json!(t);
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterHistoryRequest {
    name: Option<String>,
    #[serde(default)]
    with_decryption: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub(crate) async fn history(
    svc: &SsmService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, SsmError> {
    let req: GetParameterHistoryRequest = parse(body)?;
    let raw = required(req.name, "name")?;
    let limit = max_results(req.max_results, 50)?;
    let name = selected(ctx, &raw)
        .map(|s| s.name)
        .ok_or_else(|| SsmError::not_found(raw.trim()))?;
    let r = load(svc, ctx, &name)
        .await?
        .ok_or_else(|| SsmError::not_found(&name))?
        .value;
    let items: Vec<(String, VersionMeta)> = r
        .versions
        .iter()
        .map(|m| (format!("{:010}", m.version), m.clone()))
        .collect();
    let (page, next) = page(items, req.next_token.as_deref(), limit)?;
    let mut out = Vec::with_capacity(page.len());
    for m in page {
        let value = value_of(svc, ctx, &r, &m, req.with_decryption).await?;
        let mut v = json!({
            "Name": r.name,
            "Type": m.kind.as_str(),
            "LastModifiedDate": time(m.last_modified_ms),
            "LastModifiedUser": m.last_modified_user,
            "Value": value,
            "Version": m.version,
            "Labels": m.labels,
            "Tier": m.tier,
            "Policies": [],
            "DataType": m.data_type,
        });
        if let Some(k) = &m.key_id {
            v["KeyId"] = json!(k);
        }
        if let Some(d) = &m.description {
            v["Description"] = json!(d);
        }
        if let Some(p) = &m.allowed_pattern {
            v["AllowedPattern"] = json!(p);
        }
        out.push(v);
    }
    let mut v = json!({"Parameters": out});
    if let Some(t) = next {
        v["NextToken"] = json!(t);
    }
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_size_and_never_go_down() {
        assert_eq!(tier_for(None, None, 10).unwrap(), "Standard");
        assert_eq!(
            tier_for(Some("Intelligent-Tiering"), None, 5000).unwrap(),
            "Advanced"
        );
        assert_eq!(
            tier_for(Some("Intelligent-Tiering"), None, 10).unwrap(),
            "Standard"
        );
        assert!(tier_for(None, None, 5000).is_err());
        assert!(tier_for(Some("Standard"), Some("Advanced"), 10).is_err());
        assert_eq!(tier_for(None, Some("Advanced"), 10).unwrap(), "Advanced");
        assert!(tier_for(Some("Advanced"), None, 9000).is_err());
    }

    #[test]
    fn paths_select_children_or_descendants() {
        assert!(under_path("/a/b", "/a", false));
        assert!(!under_path("/a/b/c", "/a", false));
        assert!(under_path("/a/b/c", "/a", true));
        assert!(under_path("/a/b/c", "/a/", true));
        assert!(!under_path("/ab/c", "/a", true));
        assert!(under_path("/x", "/", false));
        assert!(!under_path("x", "/", true));
    }

    #[test]
    fn allowed_patterns_match_the_whole_value() {
        check_allowed_pattern("\\d+", "123").unwrap();
        let e = check_allowed_pattern("\\d+", "12a").unwrap_err();
        assert_eq!(e.aws_code(), "ValidationException");
        assert!(!e.to_string().contains("12a"));
        assert_eq!(
            check_allowed_pattern("(", "x").unwrap_err().aws_code(),
            "InvalidAllowedPatternException"
        );
    }
}
