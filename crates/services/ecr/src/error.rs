//! The registry's error type and its two wire mappings: OCI distribution error bodies and ECR
//! exception names. Both mappings live here and nowhere else.

use gantry_store::StoreError;

use crate::digest::DigestError;

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository does not exist (never created, or deleted); worded as ECR words it.
    #[error(
        "The repository with name '{name}' does not exist in the registry with id '{registry}'"
    )]
    NameUnknown { name: String, registry: String },
    /// The repository name is not a valid repository name.
    #[error("invalid repository name {0:?}")]
    NameInvalid(String),
    /// The blob is not stored in (or not linked to) the repository.
    #[error("blob {0} is unknown to this repository")]
    BlobUnknown(String),
    /// The upload session does not exist (finished, cancelled, purged, or never started).
    #[error("upload {0} does not exist")]
    BlobUploadUnknown(String),
    /// The upload request is malformed (bad `Content-Range`, missing digest, ...).
    #[error("invalid upload: {0}")]
    BlobUploadInvalid(String),
    /// A chunk did not start at the session's current offset; carries that offset.
    #[error("chunk starts at {got}, upload is at {offset}")]
    RangeInvalid { offset: u64, got: u64 },
    /// The uploaded bytes do not hash to the digest the client gave.
    #[error("uploaded content has digest {actual}, not {expected}")]
    BlobDigestMismatch { expected: String, actual: String },
    /// A digest is malformed or uses an unsupported algorithm.
    #[error(transparent)]
    DigestInvalid(#[from] DigestError),
    /// A manifest was pushed by digest and its bytes hash to another digest.
    #[error("manifest has digest {actual}, not {expected}")]
    ManifestDigestMismatch { expected: String, actual: String },
    /// The manifest cannot be parsed or is not one of the supported media types.
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    /// A manifest references a blob (config or layer) the repository does not have.
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(String),
    /// An index references a child manifest the repository does not have.
    #[error("index references unknown manifest {0}")]
    ManifestChildUnknown(String),
    /// No manifest with this tag or digest exists in the repository.
    #[error("manifest {0} is unknown to this repository")]
    ManifestUnknown(String),
    /// An ECR API image id names no image of the repository (the message is ECR's).
    #[error("{0}")]
    ImageNotFound(String),
    /// The tag is not a valid tag.
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    /// The tag exists, points elsewhere, and the repository's tags are immutable.
    #[error(
        "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable."
    )]
    TagImmutable { repository: String, tag: String },
    /// A request body or parameter is too large.
    #[error("too large: {0}")]
    SizeInvalid(String),
    /// Starting an upload would leave more sessions open in the repository, or for the client,
    /// than allowed.
    #[error("{0}")]
    TooManyUploads(String),
    /// No or invalid credentials.
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated, but not allowed.
    #[error("access denied: {0}")]
    Denied(String),
    /// The operation is not supported by this registry.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A request parameter is invalid (ECR `InvalidParameterException`).
    #[error("{0}")]
    InvalidParameter(String),
    /// KMS refused the repository's key (missing, disabled, pending deletion): its code and
    /// message.
    #[error("{0}")]
    Kms(String),
    /// A tag (resource tag) parameter is invalid.
    #[error("{0}")]
    InvalidTagParameter(String),
    /// More resource tags than allowed.
    #[error("{0}")]
    TooManyTags(String),
    /// `CreateRepository` for a name that exists; worded as ECR words it.
    #[error(
        "The repository with name '{name}' already exists in the registry with id '{registry}'"
    )]
    RepositoryAlreadyExists { name: String, registry: String },
    /// `DeleteRepository` without `force` on a repository that holds images; worded as ECR
    /// words it.
    #[error(
        "The repository with name '{name}' in registry with id '{registry}' cannot be deleted because it still contains images"
    )]
    RepositoryNotEmpty { name: String, registry: String },
    /// No repository policy set (the message is ECR's).
    #[error("{0}")]
    RepositoryPolicyNotFound(String),
    /// No registry policy set (the message is ECR's).
    #[error("{0}")]
    RegistryPolicyNotFound(String),
    /// The repository has no lifecycle policy (the message is ECR's).
    #[error("{0}")]
    LifecyclePolicyNotFound(String),
    /// GetLifecyclePolicyPreview before any StartLifecyclePolicyPreview (the message is ECR's).
    #[error("{0}")]
    LifecyclePolicyPreviewNotFound(String),
    /// `PutImage` of a manifest (and tag) that is already there.
    #[error("image {0} already exists")]
    ImageAlreadyExists(String),
    /// `CompleteLayerUpload` of a layer the repository already has.
    #[error("layer {0} already exists in the repository")]
    LayerAlreadyExists(String),
    /// `CompleteLayerUpload` of an upload that received no bytes.
    #[error("upload {0} is empty")]
    EmptyUpload(String),
    /// `CreatePullThroughCacheRule` for a prefix that already has a rule (the message is ECR's).
    #[error("{0}")]
    PullThroughCacheRuleAlreadyExists(String),
    /// No pull through cache rule has the prefix (the message is ECR's).
    #[error("{0}")]
    PullThroughCacheRuleNotFound(String),
    /// The upstream registry (its kind or its URL) is not one a rule can name.
    #[error("{0}")]
    UnsupportedUpstreamRegistry(String),
    /// A registry-wide quota (pull through cache rules) is reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// `CreateRepositoryCreationTemplate` for a prefix that already has a template.
    #[error("{0}")]
    TemplateAlreadyExists(String),
    /// No repository creation template has the prefix.
    #[error("{0}")]
    TemplateNotFound(String),
    /// A rule's `credentialArn` names no secret.
    #[error("{0}")]
    SecretNotFound(String),
    /// A rule's secret exists but cannot be read, or is not `{"username", "password"}`.
    #[error("{0}")]
    UnableToAccessSecret(String),
    /// A rule's secret cannot be decrypted with its KMS key.
    #[error("{0}")]
    UnableToDecryptSecretValue(String),
    /// The upstream registry of a pull through cache rule failed, refused or could not be
    /// reached while an image was fetched from it.
    #[error("upstream registry: {0}")]
    Upstream(String),
    /// The metadata store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Reading or writing blob data failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Compare-and-swap kept conflicting; the request can be retried.
    #[error("too much contention on {0}, retry")]
    Contention(String),
    /// An internal invariant failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistryError {
    /// Whether the registry's disk (blobs, upload sessions) or the store is full (or over
    /// quota): nothing was stored, and a retry succeeds once space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            RegistryError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            RegistryError::Store(e) => e.is_storage_full(),
            _ => false,
        }
    }

    /// Whether the state store (etcd) cannot be reached: nothing was applied, and a retry
    /// succeeds once it is back.
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, RegistryError::Store(e) if e.is_unavailable())
    }

    /// The OCI distribution error code (`errors[].code`). A full disk answers `UNAVAILABLE`
    /// (distribution's code for a temporary failure, which docker, containerd and skopeo retry),
    /// not `UNKNOWN`.
    pub fn oci_code(&self) -> &'static str {
        use RegistryError::*;
        if self.is_storage_full() || self.is_store_unavailable() {
            return "UNAVAILABLE";
        }
        match self {
            NameUnknown { .. } => "NAME_UNKNOWN",
            NameInvalid(_) => "NAME_INVALID",
            BlobUnknown(_) => "BLOB_UNKNOWN",
            BlobUploadUnknown(_) => "BLOB_UPLOAD_UNKNOWN",
            BlobUploadInvalid(_) | RangeInvalid { .. } | EmptyUpload(_) => "BLOB_UPLOAD_INVALID",
            BlobDigestMismatch { .. } | DigestInvalid(_) | ManifestDigestMismatch { .. } => {
                "DIGEST_INVALID"
            }
            ManifestInvalid(_) => "MANIFEST_INVALID",
            ManifestBlobUnknown(_) | ManifestChildUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            ManifestUnknown(_) | ImageNotFound(_) => "MANIFEST_UNKNOWN",
            TagInvalid(_) | TagImmutable { .. } => "TAG_INVALID",
            SizeInvalid(_) => "SIZE_INVALID",
            Unauthorized => "UNAUTHORIZED",
            Denied(_) => "DENIED",
            Unsupported(_) => "UNSUPPORTED",
            Contention(_) | TooManyUploads(_) => "TOOMANYREQUESTS",
            Upstream(_) => "UNAVAILABLE",
            PullThroughCacheRuleAlreadyExists(_)
            | PullThroughCacheRuleNotFound(_)
            | UnsupportedUpstreamRegistry(_)
            | LimitExceeded(_)
            | TemplateAlreadyExists(_)
            | TemplateNotFound(_)
            | SecretNotFound(_)
            | UnableToAccessSecret(_)
            | UnableToDecryptSecretValue(_)
            | InvalidParameter(_)
            | Kms(_)
            | InvalidTagParameter(_)
            | TooManyTags(_)
            | RepositoryAlreadyExists { .. }
            | RepositoryNotEmpty { .. }
            | RepositoryPolicyNotFound(_)
            | RegistryPolicyNotFound(_)
            | LifecyclePolicyNotFound(_)
            | LifecyclePolicyPreviewNotFound(_)
            | ImageAlreadyExists(_)
            | LayerAlreadyExists(_) => "DENIED",
            Store(_) | Io(_) | Internal(_) => "UNKNOWN",
        }
    }

    /// The HTTP status of the OCI error response.
    pub fn http_status(&self) -> http::StatusCode {
        use RegistryError::*;
        use http::StatusCode as S;
        if self.is_storage_full() || self.is_store_unavailable() {
            return S::SERVICE_UNAVAILABLE;
        }
        match self {
            NameUnknown { .. } | BlobUnknown(_) | BlobUploadUnknown(_) | ManifestUnknown(_) => {
                S::NOT_FOUND
            }
            RangeInvalid { .. } => S::RANGE_NOT_SATISFIABLE,
            Unauthorized => S::UNAUTHORIZED,
            Denied(_) => S::FORBIDDEN,
            Unsupported(_) => S::METHOD_NOT_ALLOWED,
            SizeInvalid(_) => S::PAYLOAD_TOO_LARGE,
            Contention(_) | TooManyUploads(_) => S::TOO_MANY_REQUESTS,
            Upstream(_) => S::BAD_GATEWAY,
            RepositoryAlreadyExists { .. } | ImageAlreadyExists(_) | LayerAlreadyExists(_) => {
                S::CONFLICT
            }
            Store(_) | Io(_) | Internal(_) => S::INTERNAL_SERVER_ERROR,
            _ => S::BAD_REQUEST,
        }
    }

    /// The ECR exception name (`__type`) and whether it is a server fault.
    pub fn ecr_code(&self) -> (&'static str, bool) {
        use RegistryError::*;
        let code = match self {
            NameUnknown { .. } => "RepositoryNotFoundException",
            BlobUnknown(_) | ManifestBlobUnknown(_) => "LayersNotFoundException",
            ManifestChildUnknown(_) => "ReferencedImagesNotFoundException",
            BlobUploadUnknown(_) => "UploadNotFoundException",
            BlobUploadInvalid(_) | RangeInvalid { .. } => "InvalidLayerPartException",
            BlobDigestMismatch { .. } => "InvalidLayerException",
            ManifestDigestMismatch { .. } => "ImageDigestDoesNotMatchException",
            ManifestUnknown(_) | ImageNotFound(_) => "ImageNotFoundException",
            TagImmutable { .. } => "ImageTagAlreadyExistsException",
            TooManyTags(_) => "TooManyTagsException",
            InvalidTagParameter(_) => "InvalidTagParameterException",
            RepositoryAlreadyExists { .. } => "RepositoryAlreadyExistsException",
            RepositoryNotEmpty { .. } => "RepositoryNotEmptyException",
            RepositoryPolicyNotFound(_) => "RepositoryPolicyNotFoundException",
            RegistryPolicyNotFound(_) => "RegistryPolicyNotFoundException",
            LifecyclePolicyNotFound(_) => "LifecyclePolicyNotFoundException",
            LifecyclePolicyPreviewNotFound(_) => "LifecyclePolicyPreviewNotFoundException",
            ImageAlreadyExists(_) => "ImageAlreadyExistsException",
            LayerAlreadyExists(_) => "LayerAlreadyExistsException",
            EmptyUpload(_) => "EmptyUploadException",
            Kms(_) => "KmsException",
            Unauthorized | Denied(_) => "AccessDeniedException",
            Unsupported(_) => "ValidationException",
            Contention(_) | TooManyUploads(_) | LimitExceeded(_) => "LimitExceededException",
            PullThroughCacheRuleAlreadyExists(_) => "PullThroughCacheRuleAlreadyExistsException",
            PullThroughCacheRuleNotFound(_) => "PullThroughCacheRuleNotFoundException",
            UnsupportedUpstreamRegistry(_) => "UnsupportedUpstreamRegistryException",
            TemplateAlreadyExists(_) => "TemplateAlreadyExistsException",
            TemplateNotFound(_) => "TemplateNotFoundException",
            SecretNotFound(_) => "SecretNotFoundException",
            UnableToAccessSecret(_) => "UnableToAccessSecretException",
            UnableToDecryptSecretValue(_) => "UnableToDecryptSecretValueException",
            NameInvalid(_) | DigestInvalid(_) | ManifestInvalid(_) | TagInvalid(_)
            | SizeInvalid(_) | InvalidParameter(_) => "InvalidParameterException",
            Store(_) | Io(_) | Internal(_) | Upstream(_) => return ("ServerException", true),
        };
        (code, false)
    }

    pub(crate) fn is_internal(&self) -> bool {
        matches!(
            self,
            RegistryError::Store(_) | RegistryError::Io(_) | RegistryError::Internal(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_over_quota_disk_is_unavailable_not_unknown() {
        for errno in [28, 122] {
            let e = RegistryError::Io(std::io::Error::from_raw_os_error(errno));
            assert!(e.is_storage_full(), "errno {errno}");
            assert_eq!(e.oci_code(), "UNAVAILABLE");
            assert_eq!(e.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        }
        let e = RegistryError::Store(StoreError::StorageFull("disk".into()));
        assert_eq!(e.oci_code(), "UNAVAILABLE");
        let other = RegistryError::Io(std::io::Error::from_raw_os_error(5));
        assert_eq!(other.oci_code(), "UNKNOWN");
    }
}
