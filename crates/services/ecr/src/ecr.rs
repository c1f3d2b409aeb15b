//! The ECR JSON API (`AmazonEC2ContainerRegistry_V20150921`): wire shapes with botocore's
//! member names, one function per operation, and the one mapping of [`RegistryError`] to ECR
//! exceptions. Every operation of the model is listed in [`MODEL_OPERATIONS`]; those not
//! implemented answer `ValidationException` naming the operation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::json::parse_body;
use gantry_aws_proto::pagination::{decode_token, encode_token};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, RegistryAction, authorize};
use crate::core::{PushMode, Reference, now_secs};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest;
use crate::meta::{ExclusionFilter, ManifestRecord, RepoRecord, ResourceTag};
use crate::{EcrContext, Registry};

/// Every operation of botocore's `ecr/2015-09-21` model.
pub const MODEL_OPERATIONS: &[&str] = &[
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "BatchGetRepositoryScanningConfiguration",
    "CompleteLayerUpload",
    "CreatePullThroughCacheRule",
    "CreateRepository",
    "CreateRepositoryCreationTemplate",
    "DeleteLifecyclePolicy",
    "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy",
    "DeleteRepository",
    "DeleteRepositoryCreationTemplate",
    "DeleteRepositoryPolicy",
    "DeleteSigningConfiguration",
    "DeregisterPullTimeUpdateExclusion",
    "DescribeImageReplicationStatus",
    "DescribeImageScanFindings",
    "DescribeImageSigningStatus",
    "DescribeImages",
    "DescribePullThroughCacheRules",
    "DescribeRegistry",
    "DescribeRepositories",
    "DescribeRepositoryCreationTemplates",
    "GetAccountSetting",
    "GetAuthorizationToken",
    "GetDownloadUrlForLayer",
    "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview",
    "GetRegistryPolicy",
    "GetRegistryScanningConfiguration",
    "GetRepositoryPolicy",
    "GetSigningConfiguration",
    "InitiateLayerUpload",
    "ListImageReferrers",
    "ListImages",
    "ListPullTimeUpdateExclusions",
    "ListTagsForResource",
    "PutAccountSetting",
    "PutImage",
    "PutImageScanningConfiguration",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "PutRegistryPolicy",
    "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration",
    "PutSigningConfiguration",
    "RegisterPullTimeUpdateExclusion",
    "SetRepositoryPolicy",
    "StartImageScan",
    "StartLifecyclePolicyPreview",
    "TagResource",
    "UntagResource",
    "UpdateImageStorageClass",
    "UpdatePullThroughCacheRule",
    "UpdateRepositoryCreationTemplate",
    "UploadLayerPart",
    "ValidatePullThroughCacheRule",
];

/// The operations this module implements.
pub const IMPLEMENTED_OPERATIONS: &[&str] = &[
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "BatchGetRepositoryScanningConfiguration",
    "CompleteLayerUpload",
    "CreatePullThroughCacheRule",
    "CreateRepository",
    "CreateRepositoryCreationTemplate",
    "DeleteLifecyclePolicy",
    "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy",
    "DeleteRepository",
    "DeleteRepositoryCreationTemplate",
    "DeleteRepositoryPolicy",
    "DescribeImageReplicationStatus",
    "DescribeImages",
    "DescribePullThroughCacheRules",
    "DescribeRegistry",
    "DescribeRepositories",
    "DescribeRepositoryCreationTemplates",
    "GetAuthorizationToken",
    "GetDownloadUrlForLayer",
    "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview",
    "GetRegistryPolicy",
    "GetRegistryScanningConfiguration",
    "GetRepositoryPolicy",
    "InitiateLayerUpload",
    "ListImages",
    "ListTagsForResource",
    "PutImage",
    "PutImageScanningConfiguration",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "PutRegistryPolicy",
    "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration",
    "SetRepositoryPolicy",
    "StartImageScan",
    "StartLifecyclePolicyPreview",
    "TagResource",
    "UntagResource",
    "UpdatePullThroughCacheRule",
    "UpdateRepositoryCreationTemplate",
    "UploadLayerPart",
    "ValidatePullThroughCacheRule",
];

const PART_SIZE: u64 = 10 * 1024 * 1024;
/// How long a `GetDownloadUrlForLayer` URL works (ECR's presigned S3 URLs: an hour).
const DOWNLOAD_URL_VALID_S: u64 = 3600;
const MAX_RESOURCE_TAGS: usize = 50;
const LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The single mapping of registry errors to ECR exceptions.
pub(crate) fn to_aws(e: RegistryError) -> AwsError {
    if e.is_storage_full() || e.is_store_unavailable() {
        tracing::error!(error = %e, "ECR operation refused: storage full or store unavailable");
        return AwsError::unavailable(
            "ServerException",
            gantry_aws_proto::store_retry_message(e.is_storage_full()),
        );
    }
    let (code, fault) = e.ecr_code();
    if fault {
        tracing::error!(error = %e, "ECR operation failed");
        return AwsError::server("internal error; see the server log");
    }
    AwsError::client(code, e.to_string())
}

pub(crate) fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::InvalidParameter(msg.into())
}

pub(crate) async fn handle(
    reg: &Registry,
    op: &str,
    body: &[u8],
    ctx: &EcrContext,
) -> Result<Value, AwsError> {
    let principal = Principal {
        access_key_id: ctx.access_key_id.clone(),
        region: Some(ctx.region.clone()),
    };
    let e = Ecr {
        reg,
        ctx,
        principal,
    };
    tracing::debug!(op, principal = %ctx.access_key_id, "ecr call");
    match op {
        "CreateRepository" => e.create_repository(parse_body(body)?).await,
        "DescribeRepositories" => e.describe_repositories(parse_body(body)?).await,
        "DeleteRepository" => e.delete_repository(parse_body(body)?).await,
        "GetAuthorizationToken" => e.get_authorization_token(parse_body(body)?),
        "DescribeImages" => e.describe_images(parse_body(body)?).await,
        "ListImages" => e.list_images(parse_body(body)?).await,
        "BatchGetImage" => e.batch_get_image(parse_body(body)?).await,
        "BatchDeleteImage" => e.batch_delete_image(parse_body(body)?).await,
        "PutImage" => e.put_image(parse_body(body)?).await,
        "PutImageTagMutability" => e.put_image_tag_mutability(parse_body(body)?).await,
        "PutImageScanningConfiguration" => {
            e.put_image_scanning_configuration(parse_body(body)?).await
        }
        "SetRepositoryPolicy" => e.set_repository_policy(parse_body(body)?).await,
        "GetRepositoryPolicy" => e.get_repository_policy(parse_body(body)?).await,
        "DeleteRepositoryPolicy" => e.delete_repository_policy(parse_body(body)?).await,
        "TagResource" => e.tag_resource(parse_body(body)?).await,
        "UntagResource" => e.untag_resource(parse_body(body)?).await,
        "ListTagsForResource" => e.list_tags_for_resource(parse_body(body)?).await,
        "BatchCheckLayerAvailability" => e.batch_check_layer_availability(parse_body(body)?).await,
        "InitiateLayerUpload" => e.initiate_layer_upload(parse_body(body)?).await,
        "UploadLayerPart" => e.upload_layer_part(parse_body(body)?).await,
        "CompleteLayerUpload" => e.complete_layer_upload(parse_body(body)?).await,
        "GetDownloadUrlForLayer" => e.get_download_url_for_layer(parse_body(body)?).await,
        "PutRegistryPolicy" => e.put_registry_policy(parse_body(body)?).await,
        "GetRegistryPolicy" => e.get_registry_policy(false).await,
        "DeleteRegistryPolicy" => e.get_registry_policy(true).await,
        "DescribeRegistry" => e.describe_registry().await,
        "PutReplicationConfiguration" => e.put_replication_configuration(parse_body(body)?).await,
        "DescribeImageReplicationStatus" => {
            e.describe_image_replication_status(parse_body(body)?).await
        }
        "PutRegistryScanningConfiguration" => {
            e.put_registry_scanning_configuration(parse_body(body)?)
                .await
        }
        "GetRegistryScanningConfiguration" => e.get_registry_scanning_configuration().await,
        "BatchGetRepositoryScanningConfiguration" => {
            e.batch_get_repository_scanning_configuration(parse_body(body)?)
                .await
        }
        "StartImageScan" => e.start_image_scan(parse_body(body)?).await,
        "PutLifecyclePolicy"
        | "GetLifecyclePolicy"
        | "DeleteLifecyclePolicy"
        | "StartLifecyclePolicyPreview"
        | "GetLifecyclePolicyPreview" => {
            let action = if op.starts_with("Get") {
                RegistryAction::Describe
            } else {
                RegistryAction::Manage
            };
            let repo_name = |id: &Option<String>, name: &Option<String>| {
                let repo = e.repo_name(id, name)?;
                e.authorize(action, Some(&repo))?;
                Ok(repo)
            };
            crate::lifecycle::LifecycleApi {
                reg,
                ctx,
                repo_name: &repo_name,
                to_aws: &to_aws,
            }
            .handle(op, body)
            .await
        }
        op if crate::pull_through::OPERATIONS.contains(&op) => {
            e.authorize(RegistryAction::Manage, None).map_err(to_aws)?;
            crate::pull_through::PullThroughApi { reg, ctx }
                .handle(op, body)
                .await
        }
        op if MODEL_OPERATIONS.contains(&op) => Err(AwsError::client(
            "ValidationException",
            format!("The operation {op} is not supported by this endpoint."),
        )),
        op => Err(AwsError::client(
            "UnknownOperationException",
            format!("unknown ECR operation {op}"),
        )),
    }
}

pub(crate) struct Ecr<'a> {
    pub(crate) reg: &'a Registry,
    pub(crate) ctx: &'a EcrContext,
    principal: Principal,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoRef {
    registry_id: Option<String>,
    repository_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRepositoryInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    #[serde(default)]
    tags: Vec<ResourceTag>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
    image_scanning_configuration: Option<ScanningConfig>,
    encryption_configuration: Option<EncryptionConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanningConfig {
    #[serde(default)]
    scan_on_push: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfig {
    encryption_type: Option<String>,
    kms_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRepositoriesInput {
    registry_id: Option<String>,
    repository_names: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRepositoryInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetAuthorizationTokenInput {
    registry_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageId {
    pub(crate) image_digest: Option<String>,
    pub(crate) image_tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagStatusFilter {
    tag_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeImagesInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<TagStatusFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListImagesInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<TagStatusFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchImagesInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    #[serde(default)]
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutImageInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_manifest: Option<String>,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutImageTagMutabilityInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutImageScanningConfigurationInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_scanning_configuration: Option<ScanningConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetRepositoryPolicyInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    policy_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceInput {
    resource_arn: Option<String>,
    #[serde(default)]
    tags: Vec<ResourceTag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayerInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    #[serde(default)]
    layer_digests: Vec<String>,
    layer_digest: Option<String>,
    upload_id: Option<String>,
    part_first_byte: Option<u64>,
    part_last_byte: Option<u64>,
    layer_part_blob: Option<String>,
}

const MUTABILITIES: &[&str] = &[
    "MUTABLE",
    "IMMUTABLE",
    "IMMUTABLE_WITH_EXCLUSION",
    "MUTABLE_WITH_EXCLUSION",
];

pub(crate) fn validate_mutability(
    m: &str,
    filters: &Option<Vec<ExclusionFilter>>,
) -> Result<Vec<ExclusionFilter>, RegistryError> {
    if !MUTABILITIES.contains(&m) {
        return Err(invalid(format!("invalid imageTagMutability {m:?}")));
    }
    let filters = filters.clone().unwrap_or_default();
    let needs = m.ends_with("_WITH_EXCLUSION");
    if needs && filters.is_empty() {
        return Err(invalid(format!(
            "{m} requires imageTagMutabilityExclusionFilters"
        )));
    }
    if !needs && !filters.is_empty() {
        return Err(invalid(format!(
            "imageTagMutabilityExclusionFilters are not allowed with {m}"
        )));
    }
    if filters.len() > 5 {
        return Err(invalid("at most 5 imageTagMutabilityExclusionFilters"));
    }
    for f in &filters {
        let ok = f.filter_type == "WILDCARD"
            && !f.filter.is_empty()
            && f.filter.len() <= 128
            && f.filter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
        if !ok {
            return Err(invalid(format!("invalid exclusion filter {:?}", f.filter)));
        }
    }
    Ok(filters)
}

pub(crate) fn validate_tags(tags: &[ResourceTag]) -> Result<(), RegistryError> {
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 || t.key.starts_with("aws:")
        {
            return Err(RegistryError::InvalidTagParameter(format!(
                "invalid tag key {:?}",
                t.key
            )));
        }
    }
    Ok(())
}

pub(crate) fn merge_tags(
    existing: &mut Vec<ResourceTag>,
    new: &[ResourceTag],
) -> Result<(), RegistryError> {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value.clone(),
            None => existing.push(t.clone()),
        }
    }
    if existing.len() > MAX_RESOURCE_TAGS {
        return Err(RegistryError::TooManyTags(format!(
            "a repository can have at most {MAX_RESOURCE_TAGS} tags"
        )));
    }
    Ok(())
}

pub(crate) fn validate_policy(text: &str) -> Result<(), RegistryError> {
    let bad = || {
        invalid(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
        )
    };
    if text.len() > 10240 {
        return Err(bad());
    }
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let stmts = match v.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err(bad()),
    };
    for s in stmts {
        let effect = s.get("Effect").and_then(Value::as_str);
        if !matches!(effect, Some("Allow" | "Deny")) || s.get("Action").is_none() {
            return Err(bad());
        }
    }
    Ok(())
}

pub(crate) fn max_results(v: Option<i64>, default: usize) -> Result<usize, RegistryError> {
    match v {
        None => Ok(default),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "maxResults must be between 1 and 1000, not {n}"
        ))),
    }
}

pub(crate) fn token_position(token: &Option<String>) -> Result<Option<String>, RegistryError> {
    match token {
        None => Ok(None),
        Some(t) => decode_token(t)
            .map(Some)
            .ok_or_else(|| invalid("invalid nextToken")),
    }
}

/// Applies `nextToken` (strictly after position) and `maxResults` to a sorted list.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    after: Option<String>,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let mut out: Vec<T> = items
        .into_iter()
        .filter(|i| after.as_ref().is_none_or(|a| key(i).as_str() > a.as_str()))
        .collect();
    if out.len() > max {
        out.truncate(max);
        let next = out.last().map(|i| encode_token(&key(i)));
        (out, next)
    } else {
        (out, None)
    }
}

impl Ecr<'_> {
    pub(crate) fn authorize(
        &self,
        action: RegistryAction,
        repo: Option<&str>,
    ) -> Result<(), RegistryError> {
        authorize(&self.principal, action, repo)
    }

    fn check_registry(&self, id: &Option<String>) -> Result<(), RegistryError> {
        match id {
            Some(id) if id != &self.reg.cfg.account_id => Err(invalid(format!(
                "registry {id} is not this registry ({})",
                self.reg.cfg.account_id
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) fn repo_name(
        &self,
        registry_id: &Option<String>,
        name: &Option<String>,
    ) -> Result<String, RegistryError> {
        self.check_registry(registry_id)?;
        let name = name
            .as_deref()
            .ok_or_else(|| invalid("repositoryName is required"))?;
        if !manifest::valid_repository_name(name) {
            return Err(invalid(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression pattern: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*' ({name:?})"
            )));
        }
        Ok(name.to_owned())
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ecr:{}:{}:repository/{name}",
            self.ctx.region, self.reg.cfg.account_id
        )
    }

    fn repo_from_arn(&self, arn: &Option<String>) -> Result<String, RegistryError> {
        let arn = arn
            .as_deref()
            .ok_or_else(|| invalid("resourceArn is required"))?;
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", _, "ecr", region, account, res]
                if *account == self.reg.cfg.account_id
                    && *region == self.ctx.region
                    && res.starts_with("repository/") =>
            {
                Ok(res["repository/".len()..].to_owned())
            }
            _ => Err(invalid(format!("invalid resourceArn {arn:?}"))),
        }
    }

    fn repository_json(&self, r: &RepoRecord) -> Value {
        let mut v = json!({
            "repositoryArn": self.arn(&r.name),
            "registryId": self.reg.cfg.account_id,
            "repositoryName": r.name,
            "repositoryUri": format!("{}/{}", self.ctx.registry_host, r.name),
            "createdAt": r.created_at,
            "imageTagMutability": r.image_tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": r.scan_on_push},
            "encryptionConfiguration": {"encryptionType": r.encryption_type},
        });
        if !r.mutability_exclusions.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = json!(r.mutability_exclusions);
        }
        if let Some(k) = &r.kms_key {
            v["encryptionConfiguration"]["kmsKey"] = json!(k);
        }
        v
    }

    fn image_json(&self, repo: &str, m: &ManifestRecord, tag: Option<&str>) -> Value {
        let mut id = json!({"imageDigest": m.digest.to_string()});
        if let Some(t) = tag {
            id["imageTag"] = json!(t);
        }
        json!({
            "registryId": self.reg.cfg.account_id,
            "repositoryName": repo,
            "imageId": id,
            "imageManifest": m.body,
            "imageManifestMediaType": m.media_type,
        })
    }

    async fn create_repository(&self, i: CreateRepositoryInput) -> Result<Value, AwsError> {
        let run = async {
            let name = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&name))?;
            let mutability = i
                .image_tag_mutability
                .clone()
                .unwrap_or_else(|| "MUTABLE".into());
            let exclusions =
                validate_mutability(&mutability, &i.image_tag_mutability_exclusion_filters)?;
            validate_tags(&i.tags)?;
            let mut tags = Vec::new();
            merge_tags(&mut tags, &i.tags)?;
            let (encryption_type, kms_key) = match &i.encryption_configuration {
                Some(EncryptionConfig {
                    encryption_type: Some(t),
                    kms_key,
                }) => match t.as_str() {
                    "AES256" if kms_key.is_some() => {
                        return Err(invalid(
                            "a kmsKey can only be given with encryptionType KMS or KMS_DSSE",
                        ));
                    }
                    "AES256" => (t.clone(), None),
                    "KMS" | "KMS_DSSE" => {
                        // ECR records the key's ARN: the AWS-managed alias/aws/ecr by default.
                        let arn = match &self.ctx.keys {
                            Some(keys) => Some(
                                keys.key_arn(&self.ctx.region, kms_key.as_deref())
                                    .await
                                    .map_err(|p| {
                                        RegistryError::Kms(format!("{}: {}", p.code, p.message))
                                    })?,
                            ),
                            None => kms_key.clone(),
                        };
                        (t.clone(), arn)
                    }
                    _ => return Err(invalid(format!("invalid encryptionType {t:?}"))),
                },
                Some(_) => {
                    return Err(invalid(
                        "encryptionConfiguration.encryptionType is required",
                    ));
                }
                None => ("AES256".to_owned(), None),
            };
            let rec = RepoRecord {
                name,
                created_at: now_secs(),
                image_tag_mutability: mutability,
                mutability_exclusions: exclusions,
                scan_on_push: i
                    .image_scanning_configuration
                    .as_ref()
                    .is_some_and(|s| s.scan_on_push),
                encryption_type,
                kms_key,
                tags,
                policy: None,
                deleting: false,
            };
            self.reg.create_repo(&self.ctx.region, rec).await
        };
        let rec = run.await.map_err(to_aws)?;
        Ok(json!({"repository": self.repository_json(&rec)}))
    }

    async fn describe_repositories(&self, i: DescribeRepositoriesInput) -> Result<Value, AwsError> {
        let run = async {
            self.check_registry(&i.registry_id)?;
            self.authorize(RegistryAction::Describe, None)?;
            if let Some(names) = &i.repository_names {
                if i.max_results.is_some() || i.next_token.is_some() {
                    return Err(invalid(
                        "maxResults and nextToken cannot be used with repositoryNames",
                    ));
                }
                let mut out = Vec::new();
                for n in names {
                    out.push(self.reg.get_repo(&self.ctx.region, n).await?.value);
                }
                return Ok((out, None));
            }
            let max = max_results(i.max_results, 1000)?;
            let after = token_position(&i.next_token)?;
            Ok(paginate(
                self.reg.list_repos(&self.ctx.region).await?,
                |r| r.name.clone(),
                after,
                max,
            ))
        };
        let (repos, next) = run.await.map_err(to_aws)?;
        let mut v = json!({"repositories": repos.iter().map(|r| self.repository_json(r)).collect::<Vec<_>>()});
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    async fn delete_repository(&self, i: DeleteRepositoryInput) -> Result<Value, AwsError> {
        let run = async {
            let name = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&name))?;
            self.reg.delete_repo(&self.ctx.region, &name, i.force).await
        };
        let rec = run.await.map_err(to_aws)?;
        Ok(json!({"repository": self.repository_json(&rec)}))
    }

    fn get_authorization_token(&self, i: GetAuthorizationTokenInput) -> Result<Value, AwsError> {
        let ids = i
            .registry_ids
            .unwrap_or_else(|| vec![self.reg.cfg.account_id.clone()]);
        if ids.is_empty() || ids.len() > 10 {
            return Err(to_aws(invalid(
                "registryIds must hold 1 to 10 registry ids",
            )));
        }
        let expires = crate::unix_now() + crate::auth::TOKEN_VALIDITY_SECS;
        let token = self.reg.signer.authorization_token(
            &self.principal.access_key_id,
            &self.ctx.region,
            expires,
        );
        let data: Vec<Value> = ids
            .iter()
            .map(|_| {
                json!({
                    "authorizationToken": token,
                    "expiresAt": expires,
                    "proxyEndpoint": format!("http://{}", self.ctx.registry_host),
                })
            })
            .collect();
        Ok(json!({"authorizationData": data}))
    }

    async fn describe_images(&self, i: DescribeImagesInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Describe, Some(&repo))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            let tags = self.reg.tags_by_digest(&self.ctx.region, &repo).await?;
            let status = i
                .filter
                .as_ref()
                .and_then(|f| f.tag_status.clone())
                .unwrap_or_else(|| "ANY".into());
            let mut manifests: Vec<ManifestRecord> = match &i.image_ids {
                Some(ids) => {
                    if i.next_token.is_some() || i.max_results.is_some() {
                        return Err(invalid(
                            "maxResults and nextToken cannot be used with imageIds",
                        ));
                    }
                    let mut out: Vec<ManifestRecord> = Vec::new();
                    for id in ids {
                        let m = self.resolve_image_id(&repo, id).await?;
                        if !out.iter().any(|o| o.digest == m.digest) {
                            out.push(m);
                        }
                    }
                    out
                }
                None => self.reg.list_manifests(&self.ctx.region, &repo).await?,
            };
            manifests.retain(|m| match status.as_str() {
                "TAGGED" => tags.contains_key(&m.digest),
                "UNTAGGED" => !tags.contains_key(&m.digest),
                _ => true,
            });
            let max = max_results(i.max_results, 100)?;
            let after = token_position(&i.next_token)?;
            let (page, next) = paginate(manifests, |m| m.digest.to_string(), after, max);
            let details: Vec<Value> = page
                .iter()
                .map(|m| {
                    let mut d = json!({
                        "registryId": self.reg.cfg.account_id,
                        "repositoryName": repo,
                        "imageDigest": m.digest.to_string(),
                        "imageSizeInBytes": m.image_size,
                        "imagePushedAt": m.pushed_at,
                        "imageManifestMediaType": m.media_type,
                        "imageStatus": "ACTIVE",
                    });
                    if let Some(t) = tags.get(&m.digest) {
                        d["imageTags"] = json!(t);
                    }
                    if let Some(at) = m.config_media_type.as_ref().or(m.artifact_type.as_ref()) {
                        d["artifactMediaType"] = json!(at);
                    }
                    if let Some(s) = &m.subject {
                        d["subjectManifestDigest"] = json!(s.to_string());
                    }
                    d
                })
                .collect();
            Ok((details, next))
        };
        let (details, next) = run.await.map_err(to_aws)?;
        let mut v = json!({"imageDetails": details});
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    /// Resolves an `imageId` (tag and/or digest) or fails with `ImageNotFoundException`.
    pub(crate) async fn resolve_image_id(
        &self,
        repo: &str,
        id: &ImageId,
    ) -> Result<ManifestRecord, RegistryError> {
        let not_found = || {
            RegistryError::ImageNotFound(format!(
                "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{repo}' in the registry with id '{}'",
                id.image_digest.as_deref().unwrap_or("null"),
                id.image_tag.as_deref().unwrap_or("null"),
                self.reg.cfg.account_id
            ))
        };
        let m = match (&id.image_digest, &id.image_tag) {
            (_, Some(tag)) => {
                self.reg
                    .resolve(&self.ctx.region, repo, &Reference::Tag(tag.clone()))
                    .await
            }
            (Some(d), None) => {
                let d: Digest = d
                    .parse()
                    .map_err(|_| invalid(format!("invalid imageDigest {d:?}")))?;
                self.reg
                    .resolve(&self.ctx.region, repo, &Reference::Digest(d))
                    .await
            }
            (None, None) => return Err(invalid("imageId needs an imageDigest or an imageTag")),
        }
        .map_err(|e| match e {
            RegistryError::ManifestUnknown(_) => not_found(),
            e => e,
        })?;
        if let Some(d) = &id.image_digest
            && &m.digest.to_string() != d
        {
            return Err(not_found());
        }
        Ok(m)
    }

    async fn list_images(&self, i: ListImagesInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Describe, Some(&repo))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            let tags = self.reg.tags_by_digest(&self.ctx.region, &repo).await?;
            let status = i
                .filter
                .as_ref()
                .and_then(|f| f.tag_status.clone())
                .unwrap_or_else(|| "ANY".into());
            if !matches!(status.as_str(), "TAGGED" | "UNTAGGED" | "ANY") {
                return Err(invalid(format!("invalid tagStatus {status:?}")));
            }
            let mut entries: Vec<(String, Option<String>)> = Vec::new();
            for m in self.reg.list_manifests(&self.ctx.region, &repo).await? {
                match tags.get(&m.digest) {
                    Some(ts) if status != "UNTAGGED" => {
                        entries.extend(ts.iter().map(|t| (m.digest.to_string(), Some(t.clone()))));
                    }
                    None if status != "TAGGED" => entries.push((m.digest.to_string(), None)),
                    _ => {}
                }
            }
            let max = max_results(i.max_results, 100)?;
            let after = token_position(&i.next_token)?;
            Ok(paginate(
                entries,
                |(d, t)| format!("{d}#{}", t.as_deref().unwrap_or("")),
                after,
                max,
            ))
        };
        let (entries, next) = run.await.map_err(to_aws)?;
        let ids: Vec<Value> = entries
            .into_iter()
            .map(|(d, t)| match t {
                Some(t) => json!({"imageDigest": d, "imageTag": t}),
                None => json!({"imageDigest": d}),
            })
            .collect();
        let mut v = json!({"imageIds": ids});
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    fn image_id_json(id: &ImageId) -> Value {
        let mut v = json!({});
        if let Some(d) = &id.image_digest {
            v["imageDigest"] = json!(d);
        }
        if let Some(t) = &id.image_tag {
            v["imageTag"] = json!(t);
        }
        v
    }

    fn failure(id: &ImageId, code: &str, reason: impl Into<String>) -> Value {
        json!({"imageId": Self::image_id_json(id), "failureCode": code, "failureReason": reason.into()})
    }

    /// Checks an imageId's syntax; `Some(failure)` when it is unusable.
    fn image_id_failure(id: &ImageId) -> Option<Value> {
        match (&id.image_digest, &id.image_tag) {
            (None, None) => Some(Self::failure(
                id,
                "MissingDigestAndTag",
                "Missing image digest and tag",
            )),
            (Some(d), _) if d.parse::<Digest>().is_err() => Some(Self::failure(
                id,
                "InvalidImageDigest",
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
            )),
            (_, Some(t)) if !manifest::valid_tag(t) => Some(Self::failure(
                id,
                "InvalidImageTag",
                "Invalid request parameters: image tag is invalid",
            )),
            _ => None,
        }
    }

    async fn batch_get_image(&self, i: BatchImagesInput) -> Result<Value, AwsError> {
        let repo = self
            .repo_name(&i.registry_id, &i.repository_name)
            .map_err(to_aws)?;
        self.authorize(RegistryAction::Pull, Some(&repo))
            .map_err(to_aws)?;
        self.reg
            .get_repo(&self.ctx.region, &repo)
            .await
            .map_err(to_aws)?;
        if i.image_ids.is_empty() || i.image_ids.len() > 100 {
            return Err(to_aws(invalid("imageIds must hold 1 to 100 entries")));
        }
        let mut images = Vec::new();
        let mut failures = Vec::new();
        for id in &i.image_ids {
            if let Some(f) = Self::image_id_failure(id) {
                failures.push(f);
                continue;
            }
            match self.resolve_image_id(&repo, id).await {
                Ok(m) => {
                    if let Some(accepted) = &i.accepted_media_types
                        && !accepted.iter().any(|a| a == &m.media_type)
                    {
                        failures.push(Self::failure(
                            id,
                            "ImageNotFound",
                            format!(
                                "manifest media type {} is not among acceptedMediaTypes",
                                m.media_type
                            ),
                        ));
                        continue;
                    }
                    images.push(self.image_json(&repo, &m, id.image_tag.as_deref()));
                }
                Err(RegistryError::ManifestUnknown(_) | RegistryError::ImageNotFound(_)) => {
                    failures.push(Self::failure(
                        id,
                        "ImageNotFound",
                        "Requested image not found",
                    ));
                }
                Err(e) => return Err(to_aws(e)),
            }
        }
        Ok(json!({"images": images, "failures": failures}))
    }

    async fn batch_delete_image(&self, i: BatchImagesInput) -> Result<Value, AwsError> {
        let repo = self
            .repo_name(&i.registry_id, &i.repository_name)
            .map_err(to_aws)?;
        self.authorize(RegistryAction::Delete, Some(&repo))
            .map_err(to_aws)?;
        self.reg
            .get_repo(&self.ctx.region, &repo)
            .await
            .map_err(to_aws)?;
        if i.image_ids.is_empty() || i.image_ids.len() > 100 {
            return Err(to_aws(invalid("imageIds must hold 1 to 100 entries")));
        }
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for id in &i.image_ids {
            if let Some(f) = Self::image_id_failure(id) {
                failures.push(f);
                continue;
            }
            let m = match self.resolve_image_id(&repo, id).await {
                Ok(m) => m,
                Err(RegistryError::ManifestUnknown(_) | RegistryError::ImageNotFound(_)) => {
                    failures.push(Self::failure(
                        id,
                        "ImageNotFound",
                        "Requested image not found",
                    ));
                    continue;
                }
                Err(e) => return Err(to_aws(e)),
            };
            let result = match &id.image_tag {
                Some(tag) => self
                    .reg
                    .delete_tag(&self.ctx.region, &repo, tag, true)
                    .await
                    .map(|d| vec![json!({"imageDigest": d.to_string(), "imageTag": tag})]),
                None => {
                    let parents = self
                        .reg
                        .list_manifests(&self.ctx.region, &repo)
                        .await
                        .map_err(to_aws)?
                        .into_iter()
                        .any(|p| p.children.contains(&m.digest));
                    if parents {
                        failures.push(Self::failure(
                            id,
                            "ImageReferencedByManifestList",
                            "Requested image is referenced by a manifest list",
                        ));
                        continue;
                    }
                    let tags = self
                        .reg
                        .tags_by_digest(&self.ctx.region, &repo)
                        .await
                        .map_err(to_aws)?;
                    let tags = tags.get(&m.digest).cloned().unwrap_or_default();
                    self.reg
                        .delete_manifest(&self.ctx.region, &repo, &m.digest)
                        .await
                        .map(|_| {
                            if tags.is_empty() {
                                vec![json!({"imageDigest": m.digest.to_string()})]
                            } else {
                                tags.iter()
                                .map(
                                    |t| json!({"imageDigest": m.digest.to_string(), "imageTag": t}),
                                )
                                .collect()
                            }
                        })
                }
            };
            match result {
                Ok(ids) => deleted.extend(ids),
                Err(RegistryError::ManifestUnknown(_) | RegistryError::ImageNotFound(_)) => {
                    failures.push(Self::failure(
                        id,
                        "ImageNotFound",
                        "Requested image not found",
                    ));
                }
                Err(e) => return Err(to_aws(e)),
            }
        }
        Ok(json!({"imageIds": deleted, "failures": failures}))
    }

    async fn put_image(&self, i: PutImageInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Push, Some(&repo))?;
            let body = i
                .image_manifest
                .clone()
                .ok_or_else(|| invalid("imageManifest is required"))?;
            let body = Bytes::from(body.into_bytes());
            if let Some(t) = &i.image_tag
                && !manifest::valid_tag(t)
            {
                return Err(invalid(format!("invalid imageTag {t:?}")));
            }
            let reference = match (&i.image_digest, &i.image_tag) {
                (Some(d), tag) => {
                    let d: Digest = d
                        .parse()
                        .map_err(|_| invalid(format!("invalid imageDigest {d:?}")))?;
                    let actual = d.algorithm().digest(&body);
                    if actual != d {
                        return Err(RegistryError::ManifestDigestMismatch {
                            expected: d.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    match tag {
                        Some(t) => Reference::Tag(t.clone()),
                        None => Reference::Digest(d),
                    }
                }
                (None, Some(t)) => Reference::Tag(t.clone()),
                (None, None) => Reference::Digest(crate::digest::Algorithm::Sha256.digest(&body)),
            };
            let out = self
                .reg
                .put_manifest(
                    &self.ctx.region,
                    &repo,
                    &reference,
                    i.image_manifest_media_type.as_deref(),
                    body,
                    PushMode::PutImage,
                )
                .await?;
            Ok((repo, out))
        };
        let (repo, out) = run.await.map_err(to_aws)?;
        Ok(json!({"image": self.image_json(&repo, &out.record, i.image_tag.as_deref())}))
    }

    async fn put_image_tag_mutability(
        &self,
        i: PutImageTagMutabilityInput,
    ) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            let m = i
                .image_tag_mutability
                .clone()
                .ok_or_else(|| invalid("imageTagMutability is required"))?;
            let filters = validate_mutability(&m, &i.image_tag_mutability_exclusion_filters)?;
            self.reg
                .update_repo(&self.ctx.region, &repo, |r| {
                    r.image_tag_mutability = m.clone();
                    r.mutability_exclusions = filters.clone();
                    Ok(())
                })
                .await
        };
        let r = run.await.map_err(to_aws)?;
        let mut v = json!({
            "registryId": self.reg.cfg.account_id,
            "repositoryName": r.name,
            "imageTagMutability": r.image_tag_mutability,
        });
        if !r.mutability_exclusions.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = json!(r.mutability_exclusions);
        }
        Ok(v)
    }

    async fn put_image_scanning_configuration(
        &self,
        i: PutImageScanningConfigurationInput,
    ) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            let scan = i
                .image_scanning_configuration
                .as_ref()
                .ok_or_else(|| invalid("imageScanningConfiguration is required"))?
                .scan_on_push;
            self.reg
                .update_repo(&self.ctx.region, &repo, |r| {
                    r.scan_on_push = scan;
                    Ok(())
                })
                .await
        };
        let r = run.await.map_err(to_aws)?;
        Ok(json!({
            "registryId": self.reg.cfg.account_id,
            "repositoryName": r.name,
            "imageScanningConfiguration": {"scanOnPush": r.scan_on_push},
        }))
    }

    async fn set_repository_policy(&self, i: SetRepositoryPolicyInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            let text = i
                .policy_text
                .clone()
                .ok_or_else(|| invalid("policyText is required"))?;
            validate_policy(&text)?;
            self.reg
                .update_repo(&self.ctx.region, &repo, |r| {
                    r.policy = Some(text.clone());
                    Ok(())
                })
                .await
        };
        let r = run.await.map_err(to_aws)?;
        Ok(
            json!({"registryId": self.reg.cfg.account_id, "repositoryName": r.name, "policyText": r.policy}),
        )
    }

    async fn get_repository_policy(&self, i: RepoRef) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Describe, Some(&repo))?;
            let r = self.reg.get_repo(&self.ctx.region, &repo).await?.value;
            let text = r
                .policy
                .clone()
                .ok_or_else(|| self.repository_policy_missing(&repo))?;
            Ok((r.name, text))
        };
        let (name, text) = run.await.map_err(to_aws)?;
        Ok(
            json!({"registryId": self.reg.cfg.account_id, "repositoryName": name, "policyText": text}),
        )
    }

    async fn delete_repository_policy(&self, i: RepoRef) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            let mut old = None;
            let missing = |name: &str| self.repository_policy_missing(name);
            self.reg
                .update_repo(&self.ctx.region, &repo, |r| {
                    old = r.policy.take();
                    if old.is_none() {
                        return Err(missing(&r.name));
                    }
                    Ok(())
                })
                .await?;
            Ok((repo, old))
        };
        let (name, text) = run.await.map_err(to_aws)?;
        Ok(
            json!({"registryId": self.reg.cfg.account_id, "repositoryName": name, "policyText": text}),
        )
    }

    async fn tag_resource(&self, i: TagResourceInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_from_arn(&i.resource_arn)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            validate_tags(&i.tags)?;
            self.reg
                .update_repo(&self.ctx.region, &repo, |r| {
                    merge_tags(&mut r.tags, &i.tags)
                })
                .await
        };
        run.await.map_err(to_aws)?;
        Ok(json!({}))
    }

    async fn untag_resource(&self, i: TagResourceInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_from_arn(&i.resource_arn)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            self.reg
                .update_repo(&self.ctx.region, &repo, |r| {
                    r.tags.retain(|t| !i.tag_keys.contains(&t.key));
                    Ok(())
                })
                .await
        };
        run.await.map_err(to_aws)?;
        Ok(json!({}))
    }

    async fn list_tags_for_resource(&self, i: TagResourceInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_from_arn(&i.resource_arn)?;
            self.authorize(RegistryAction::Describe, Some(&repo))?;
            Ok(self.reg.get_repo(&self.ctx.region, &repo).await?.value.tags)
        };
        let tags = run.await.map_err(to_aws)?;
        Ok(json!({"tags": tags}))
    }

    async fn batch_check_layer_availability(&self, i: LayerInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Pull, Some(&repo))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            if i.layer_digests.is_empty() || i.layer_digests.len() > 100 {
                return Err(invalid("layerDigests must hold 1 to 100 entries"));
            }
            let mut layers = Vec::new();
            let mut failures = Vec::new();
            for ld in &i.layer_digests {
                let Ok(d) = ld.parse::<Digest>() else {
                    failures.push(json!({"layerDigest": ld, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}));
                    continue;
                };
                match self.reg.blob_in_repo(&self.ctx.region, &repo, &d).await? {
                    Some(size) => layers.push(json!({
                        "layerDigest": ld, "layerAvailability": "AVAILABLE",
                        "layerSize": size, "mediaType": LAYER_MEDIA_TYPE,
                    })),
                    None => failures.push(json!({"layerDigest": ld, "failureCode": "MissingLayerDigest", "failureReason": "Could not find layer"})),
                }
            }
            Ok(json!({"layers": layers, "failures": failures}))
        };
        run.await.map_err(to_aws)
    }

    async fn initiate_layer_upload(&self, i: LayerInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Push, Some(&repo))?;
            self.reg
                .start_upload(&self.ctx.region, &repo, &self.principal.access_key_id)
                .await
        };
        let id = run.await.map_err(to_aws)?;
        Ok(json!({"uploadId": id, "partSize": PART_SIZE}))
    }

    async fn upload_layer_part(&self, i: LayerInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Push, Some(&repo))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            let id = i
                .upload_id
                .clone()
                .ok_or_else(|| invalid("uploadId is required"))?;
            let (first, last) = match (i.part_first_byte, i.part_last_byte) {
                (Some(f), Some(l)) if l >= f => (f, l),
                _ => {
                    return Err(invalid(
                        "partFirstByte and partLastByte are required, first <= last",
                    ));
                }
            };
            let blob = STANDARD
                .decode(i.layer_part_blob.as_deref().unwrap_or(""))
                .map_err(|_| invalid("layerPartBlob is not valid base64"))?;
            let offset = self.reg.upload_offset(&self.ctx.region, &repo, &id).await?;
            if first != offset || (last - first + 1) != blob.len() as u64 {
                return Err(RegistryError::RangeInvalid { offset, got: first });
            }
            let stream: crate::blob::ByteStream =
                Box::pin(futures::stream::once(async move { Ok(Bytes::from(blob)) }));
            let new_offset = self
                .reg
                .append_upload(&id, offset, Some(first), stream)
                .await?;
            Ok((repo, id, new_offset))
        };
        let (repo, id, offset) = run.await.map_err(to_aws)?;
        Ok(json!({
            "registryId": self.reg.cfg.account_id,
            "repositoryName": repo,
            "uploadId": id,
            "lastByteReceived": offset.saturating_sub(1),
        }))
    }

    async fn complete_layer_upload(&self, i: LayerInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Push, Some(&repo))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            let id = i
                .upload_id
                .clone()
                .ok_or_else(|| invalid("uploadId is required"))?;
            let ld = i
                .layer_digests
                .first()
                .ok_or_else(|| invalid("layerDigests is required"))?;
            let d: Digest = ld
                .parse()
                .map_err(|_| invalid(format!("invalid layer digest {ld:?}")))?;
            let offset = self.reg.upload_offset(&self.ctx.region, &repo, &id).await?;
            if offset == 0 {
                return Err(RegistryError::EmptyUpload(id));
            }
            if self
                .reg
                .blob_in_repo(&self.ctx.region, &repo, &d)
                .await?
                .is_some()
            {
                self.reg.cancel_upload(&id).await?;
                return Err(RegistryError::LayerAlreadyExists(d.to_string()));
            }
            self.reg
                .finish_upload(&self.ctx.region, &repo, &id, &d)
                .await?;
            Ok((repo, id, d))
        };
        let (repo, id, d) = run.await.map_err(to_aws)?;
        Ok(json!({
            "registryId": self.reg.cfg.account_id,
            "repositoryName": repo,
            "uploadId": id,
            "layerDigest": d.to_string(),
        }))
    }

    async fn get_download_url_for_layer(&self, i: LayerInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Pull, Some(&repo))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            let ld = i
                .layer_digest
                .clone()
                .ok_or_else(|| invalid("layerDigest is required"))?;
            let d: Digest = ld
                .parse()
                .map_err(|_| invalid(format!("invalid layer digest {ld:?}")))?;
            if self
                .reg
                .blob_in_repo(&self.ctx.region, &repo, &d)
                .await?
                .is_none()
            {
                return Err(RegistryError::BlobUnknown(d.to_string()));
            }
            Ok((repo, d))
        };
        let (repo, d) = run.await.map_err(to_aws)?;
        let digest = d.to_string();
        let query = self.reg.signer.presign_download(
            &self.principal.access_key_id,
            &self.ctx.region,
            &repo,
            &digest,
            crate::unix_now() + DOWNLOAD_URL_VALID_S,
        );
        Ok(json!({
            "downloadUrl": format!("http://{}/v2/{repo}/blobs/{digest}?{query}", self.ctx.registry_host),
            "layerDigest": digest,
        }))
    }
}

/// The registry's policy in `region` (a registry is one account's in one region).
fn registry_policy_key(region: &str) -> String {
    format!("{}registry/policy", crate::meta::region_prefix(region))
}

/// The registry's scanning configuration in `region`.
fn registry_scanning_key(region: &str) -> String {
    format!("{}registry/scanning", crate::meta::region_prefix(region))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRegistryPolicyInput {
    policy_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRegistryScanningConfigurationInput {
    scan_type: Option<String>,
    rules: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchGetRepositoryScanningConfigurationInput {
    repository_names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartImageScanInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_id: Option<ImageId>,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct RegistryPolicyRecord {
    text: String,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct ScanningRecord {
    scan_type: String,
    rules: Vec<Value>,
}

const SCAN_FREQUENCIES: &[&str] = &["SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"];

impl Ecr<'_> {
    fn repository_policy_missing(&self, repo: &str) -> RegistryError {
        RegistryError::RepositoryPolicyNotFound(format!(
            "Repository policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
            self.reg.cfg.account_id
        ))
    }

    async fn put_registry_policy(&self, i: PutRegistryPolicyInput) -> Result<Value, AwsError> {
        let policy_key = registry_policy_key(&self.ctx.region);
        let run = async {
            self.authorize(RegistryAction::Manage, None)?;
            let text = i
                .policy_text
                .ok_or_else(|| invalid("policyText is required"))?;
            validate_policy(&text).map_err(|_| {
                invalid(
                    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'",
                )
            })?;
            let rec = RegistryPolicyRecord { text: text.clone() };
            self.reg
                .store
                .commit(
                    gantry_store::Txn::new().put(&policy_key, crate::meta::enc(&policy_key, &rec)?),
                )
                .await?;
            Ok(text)
        };
        let text = run.await.map_err(to_aws)?;
        Ok(json!({"registryId": self.reg.cfg.account_id, "policyText": text}))
    }

    async fn get_registry_policy(&self, delete: bool) -> Result<Value, AwsError> {
        let policy_key = registry_policy_key(&self.ctx.region);
        use gantry_store::StoreExt;
        let run = async {
            let action = if delete {
                RegistryAction::Manage
            } else {
                RegistryAction::Describe
            };
            self.authorize(action, None)?;
            let Some(rec) = self
                .reg
                .store
                .get_typed::<RegistryPolicyRecord>(&policy_key)
                .await?
            else {
                return Err(RegistryError::RegistryPolicyNotFound(format!(
                    "Registry policy does not exist in the registry with id '{}'",
                    self.reg.cfg.account_id
                )));
            };
            if delete {
                let txn = gantry_store::Txn::new()
                    .require_revision(&policy_key, rec.revision)
                    .delete(&policy_key);
                if !self.reg.store.commit(txn).await?.is_committed() {
                    return Err(RegistryError::Contention(policy_key.clone()));
                }
            }
            Ok(rec.value.text)
        };
        let text = run.await.map_err(to_aws)?;
        Ok(json!({"registryId": self.reg.cfg.account_id, "policyText": text}))
    }

    async fn put_registry_scanning_configuration(
        &self,
        i: PutRegistryScanningConfigurationInput,
    ) -> Result<Value, AwsError> {
        let scanning_key = registry_scanning_key(&self.ctx.region);
        let run = async {
            self.authorize(RegistryAction::Manage, None)?;
            let scan_type = i.scan_type.unwrap_or_else(|| "BASIC".to_owned());
            if !["BASIC", "ENHANCED"].contains(&scan_type.as_str()) {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{scan_type}' at 'scanType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, ENHANCED]"
                )));
            }
            let rules = i.rules.unwrap_or_default();
            for r in &rules {
                let freq = r.get("scanFrequency").and_then(Value::as_str).unwrap_or("");
                if !SCAN_FREQUENCIES.contains(&freq) {
                    return Err(invalid(format!(
                        "1 validation error detected: Value '{freq}' at 'rules.member.scanFrequency' failed to satisfy constraint: Member must satisfy enum value set: [SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL]"
                    )));
                }
                if scan_type == "BASIC" && freq == "CONTINUOUS_SCAN" {
                    return Err(invalid(
                        "CONTINUOUS_SCAN is only valid with the ENHANCED scan type",
                    ));
                }
                let filters_ok = r
                    .get("repositoryFilters")
                    .and_then(Value::as_array)
                    .is_some_and(|f| {
                        !f.is_empty()
                            && f.iter().all(|x| {
                                x.get("filter").and_then(Value::as_str).is_some()
                                    && x.get("filterType").and_then(Value::as_str)
                                        == Some("WILDCARD")
                            })
                    });
                if !filters_ok {
                    return Err(invalid(
                        "Each scanning rule needs repositoryFilters with a filter and filterType WILDCARD",
                    ));
                }
            }
            let rec = ScanningRecord { scan_type, rules };
            self.reg
                .store
                .commit(
                    gantry_store::Txn::new()
                        .put(&scanning_key, crate::meta::enc(&scanning_key, &rec)?),
                )
                .await?;
            Ok(rec)
        };
        let rec = run.await.map_err(to_aws)?;
        Ok(
            json!({"registryScanningConfiguration": {"scanType": rec.scan_type, "rules": rec.rules}}),
        )
    }

    async fn scanning_record(&self) -> Result<ScanningRecord, RegistryError> {
        let scanning_key = registry_scanning_key(&self.ctx.region);
        use gantry_store::StoreExt;
        Ok(self
            .reg
            .store
            .get_typed::<ScanningRecord>(&scanning_key)
            .await?
            .map(|v| v.value)
            .unwrap_or(ScanningRecord {
                scan_type: "BASIC".to_owned(),
                rules: Vec::new(),
            }))
    }

    async fn get_registry_scanning_configuration(&self) -> Result<Value, AwsError> {
        self.authorize(RegistryAction::Describe, None)
            .map_err(to_aws)?;
        let rec = self.scanning_record().await.map_err(to_aws)?;
        Ok(json!({
            "registryId": self.reg.cfg.account_id,
            "scanningConfiguration": {"scanType": rec.scan_type, "rules": rec.rules},
        }))
    }

    async fn batch_get_repository_scanning_configuration(
        &self,
        i: BatchGetRepositoryScanningConfigurationInput,
    ) -> Result<Value, AwsError> {
        let names = i.repository_names.unwrap_or_default();
        if names.is_empty() || names.len() > 25 {
            return Err(to_aws(invalid("repositoryNames must hold 1 to 25 names")));
        }
        let registry = self.scanning_record().await.map_err(to_aws)?;
        let mut configs = Vec::new();
        let mut failures = Vec::new();
        for name in names {
            let repo = self.repo_name(&None, &Some(name.clone())).map_err(to_aws)?;
            self.authorize(RegistryAction::Describe, Some(&repo))
                .map_err(to_aws)?;
            match self.reg.get_repo(&self.ctx.region, &repo).await {
                Ok(r) => {
                    // The registry's rules, when one matches, decide the frequency.
                    let rule = registry.rules.iter().find(|rule| {
                        rule.get("repositoryFilters")
                            .and_then(Value::as_array)
                            .is_some_and(|fs| {
                                fs.iter().any(|f| {
                                    f.get("filter")
                                        .and_then(Value::as_str)
                                        .is_some_and(|p| crate::meta::wildcard_match(p, &repo))
                                })
                            })
                    });
                    let (freq, filters) = match rule {
                        Some(rule) => (
                            rule.get("scanFrequency")
                                .cloned()
                                .unwrap_or(json!("MANUAL")),
                            rule.get("repositoryFilters").cloned().unwrap_or(json!([])),
                        ),
                        None if r.value.scan_on_push => (json!("SCAN_ON_PUSH"), json!([])),
                        None => (json!("MANUAL"), json!([])),
                    };
                    configs.push(json!({
                        "repositoryArn": self.arn(&repo),
                        "repositoryName": repo,
                        "scanOnPush": r.value.scan_on_push,
                        "scanFrequency": freq,
                        "appliedScanFilters": filters,
                    }));
                }
                Err(RegistryError::NameUnknown { .. }) => failures.push(json!({
                    "repositoryName": repo,
                    "failureCode": "REPOSITORY_NOT_FOUND",
                    "failureReason": "REPOSITORY_NOT_FOUND",
                })),
                Err(e) => return Err(to_aws(e)),
            }
        }
        Ok(json!({"scanningConfigurations": configs, "failures": failures}))
    }

    async fn start_image_scan(&self, i: StartImageScanInput) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Manage, Some(&repo))?;
            let id = i
                .image_id
                .clone()
                .ok_or_else(|| invalid("imageId is required"))?;
            self.reg.get_repo(&self.ctx.region, &repo).await?;
            self.resolve_image_id(&repo, &id).await?;
            Err::<(), _>(RegistryError::Unsupported(
                "image scanning: this registry has no vulnerability scanner, so StartImageScan cannot scan images and no findings are ever produced".to_owned(),
            ))
        };
        run.await.map_err(to_aws)?;
        Ok(json!({}))
    }
}
