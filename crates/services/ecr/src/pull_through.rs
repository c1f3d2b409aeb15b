//! Pull through cache rules and repository creation templates.
//!
//! A rule maps the repositories under `<ecrRepositoryPrefix>/` to an upstream registry that
//! speaks the Docker Registry HTTP API v2. The first pull (`GET`/`HEAD` of a manifest under
//! `/v2/`) of an image the registry does not hold fetches it from the upstream: the manifest (and,
//! for an index, its child manifests) and every blob they reference, each blob through the
//! verified upload path (hashed while written, committed only when its digest matches). The
//! repository is created on first use with the repository creation template that applies
//! (`appliedFor` `PULL_THROUGH_CACHE`), and the image is served from the registry afterwards,
//! whether or not the upstream is still reachable.
//!
//! Upstream authentication: a rule's `credentialArn` names a Secrets Manager secret holding
//! `{"username", "password"}`, read through [`UpstreamCredentials`] (implemented by the
//! composition root over Secrets Manager) and answered to the upstream's `Basic` or `Bearer`
//! challenge. The credentials are never logged nor stored here.
//!
//! The upstream URL is `host[:port]` or `https://host[:port]` (TLS, verified against the
//! platform's roots), or `http://host[:port]` for an upstream on a loopback address only:
//! a plain-HTTP upstream elsewhere is refused.
//!
//! ```text
//! ecr/ptc/<prefix>        RuleRecord
//! ecr/rct/<prefix>        TemplateRecord
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::StreamExt;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::json::parse_body;
use gantry_store::{StoreExt, Txn};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::blob::ByteStream;
use crate::core::{PushMode, Reference, now_secs};
use crate::digest::Digest;
use crate::ecr::{max_results, merge_tags, paginate, to_aws, token_position, validate_mutability};
use crate::error::RegistryError;
use crate::lifecycle::{PolicyRecord, parse_policy, policy_key};
use crate::manifest;
use crate::meta::{ExclusionFilter, ManifestRecord, RepoRecord, ResourceTag, dec, enc};
use crate::{EcrContext, Registry};

/// The operations of this module.
pub(crate) const OPERATIONS: &[&str] = &[
    "CreatePullThroughCacheRule",
    "DescribePullThroughCacheRules",
    "DeletePullThroughCacheRule",
    "UpdatePullThroughCacheRule",
    "ValidatePullThroughCacheRule",
    "CreateRepositoryCreationTemplate",
    "DescribeRepositoryCreationTemplates",
    "UpdateRepositoryCreationTemplate",
    "DeleteRepositoryCreationTemplate",
];

/// ECR's quota of pull through cache rules per registry.
const MAX_RULES: usize = 50;
/// The `appliedFor` values Gantry honours.
const APPLIED_FOR: &[&str] = &["PULL_THROUGH_CACHE", "REPLICATION"];
/// Who the upload sessions of fetched blobs belong to (the per-client upload cap).
const FETCH_CLIENT: &str = "pull-through-cache";
const FETCH_LOCK_STRIPES: usize = 16;
/// What a manifest fetch accepts, as docker asks.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// The `upstreamRegistry` values other than `ecr` (which Gantry refuses).
const UPSTREAM_REGISTRIES: &[&str] = &[
    "ecr-public",
    "quay",
    "k8s",
    "docker-hub",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
    "chainguard",
];
/// Upstream kinds whose registries ECR only reaches with credentials.
const NEEDS_CREDENTIALS: &[&str] = &[
    "docker-hub",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
];

fn rule_prefix(region: &str) -> String {
    format!("{}ptc/", crate::meta::region_prefix(region))
}

fn template_prefix(region: &str) -> String {
    format!("{}rct/", crate::meta::region_prefix(region))
}

fn rule_key(region: &str, prefix: &str) -> String {
    format!("{}{prefix}", rule_prefix(region))
}

fn template_key(region: &str, prefix: &str) -> String {
    format!("{}{prefix}", template_prefix(region))
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::InvalidParameter(msg.into())
}

/// A username and password for an upstream registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a rule's secret could not be used, worded for the caller (never carrying the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblem {
    /// No such secret (`SecretNotFoundException`).
    NotFound(String),
    /// The secret cannot be read or is not `{"username", "password"}`
    /// (`UnableToAccessSecretException`).
    Unreadable(String),
    /// Its KMS key cannot decrypt it (`UnableToDecryptSecretValueException`).
    Undecryptable(String),
}

impl From<SecretProblem> for RegistryError {
    fn from(p: SecretProblem) -> Self {
        match p {
            SecretProblem::NotFound(m) => RegistryError::SecretNotFound(m),
            SecretProblem::Unreadable(m) => RegistryError::UnableToAccessSecret(m),
            SecretProblem::Undecryptable(m) => RegistryError::UnableToDecryptSecretValue(m),
        }
    }
}

/// Reads the credentials of a rule's `credentialArn`; implemented by the composition root over
/// Secrets Manager (the path a task's `repositoryCredentials` are read through).
#[async_trait]
pub trait UpstreamCredentials: Send + Sync + std::fmt::Debug {
    async fn login(&self, credential_arn: &str) -> Result<UpstreamLogin, SecretProblem>;
}

/// The registry's pull-through state: the secrets reader, the HTTP client and the locks that
/// make concurrent first pulls of one repository fetch once.
#[derive(Debug)]
pub(crate) struct PullThrough {
    credentials: std::sync::OnceLock<Arc<dyn UpstreamCredentials>>,
    http: std::sync::OnceLock<reqwest::Client>,
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl Default for PullThrough {
    fn default() -> Self {
        Self {
            credentials: std::sync::OnceLock::new(),
            http: std::sync::OnceLock::new(),
            locks: (0..FETCH_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl PullThrough {
    pub(crate) fn set_credentials(&self, c: Arc<dyn UpstreamCredentials>) {
        let _ = self.credentials.set(c);
    }

    fn http(&self) -> Result<&reqwest::Client, RegistryError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Internal(format!("building the HTTP client: {e}")))?;
        Ok(self.http.get_or_init(|| client))
    }

    fn lock(&self, repo: &str) -> &tokio::sync::Mutex<()> {
        let h = repo
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.locks[h % FETCH_LOCK_STRIPES]
    }

    async fn login(&self, arn: &str) -> Result<UpstreamLogin, RegistryError> {
        match self.credentials.get() {
            Some(c) => Ok(c.login(arn).await?),
            None => Err(RegistryError::UnableToAccessSecret(format!(
                "secret {arn} cannot be read: Secrets Manager is not wired to the registry"
            ))),
        }
    }
}

/// A pull through cache rule as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RuleRecord {
    /// Without a trailing `/`.
    pub prefix: String,
    /// As given.
    pub upstream_url: String,
    #[serde(default)]
    pub upstream_registry: Option<String>,
    #[serde(default)]
    pub credential_arn: Option<String>,
    /// Without a trailing `/`; `None` is `ROOT`.
    #[serde(default)]
    pub upstream_repository_prefix: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
}

/// A repository creation template as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct TemplateRecord {
    /// Without a trailing `/`, or `ROOT`.
    pub prefix: String,
    #[serde(default)]
    pub description: Option<String>,
    pub encryption_type: String,
    #[serde(default)]
    pub kms_key: Option<String>,
    #[serde(default)]
    pub resource_tags: Vec<ResourceTag>,
    pub image_tag_mutability: String,
    #[serde(default)]
    pub mutability_exclusions: Vec<ExclusionFilter>,
    #[serde(default)]
    pub repository_policy: Option<String>,
    #[serde(default)]
    pub lifecycle_policy: Option<String>,
    pub applied_for: Vec<String>,
    pub created_at: f64,
    pub updated_at: f64,
}

/// Where an upstream registry is reached: `http(s)://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub base: String,
    pub host: String,
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Parses an `upstreamRegistryUrl`: `host[:port]`, `https://host[:port]`, or
/// `http://host[:port]` with a loopback host.
pub(crate) fn parse_upstream_url(url: &str) -> Result<Endpoint, RegistryError> {
    let bad = || {
        invalid(format!(
            "Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: 'must be a registry host name with an optional port and scheme' ({url:?})"
        ))
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("https") => ("https", r),
        Some((s, r)) if s.eq_ignore_ascii_case("http") => ("http", r),
        Some(_) => return Err(bad()),
        None => ("https", url),
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty()
        || !hostport
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() || (host.contains(['[', ']']) && !host.starts_with('[')) {
        return Err(bad());
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(bad());
    }
    if scheme == "http" && !is_loopback(&host) {
        return Err(RegistryError::UnsupportedUpstreamRegistry(format!(
            "the upstream registry {url} uses plain HTTP; only an upstream on a loopback address may (give an https:// URL or a host name for TLS)"
        )));
    }
    let authority = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    Ok(Endpoint {
        base: format!("{scheme}://{authority}"),
        host,
    })
}

/// The upstream kind a well-known registry host is, for rules created without
/// `upstreamRegistry`.
fn infer_upstream_registry(host: &str) -> Option<&'static str> {
    let h = host.to_ascii_lowercase();
    Some(match h.as_str() {
        "registry-1.docker.io" => "docker-hub",
        "public.ecr.aws" => "ecr-public",
        "quay.io" => "quay",
        "registry.k8s.io" => "k8s",
        "ghcr.io" => "github-container-registry",
        "registry.gitlab.com" => "gitlab-container-registry",
        "cgr.dev" => "chainguard",
        _ if h.ends_with(".azurecr.io") => "azure-container-registry",
        _ => return None,
    })
}

/// A prefix without its trailing `/` (ECR always assumes one).
fn normalize_prefix(p: &str) -> String {
    p.strip_suffix('/').unwrap_or(p).to_owned()
}

/// The rule that applies to repository `repo` (the longest prefix `repo` is under) and the name
/// of the upstream repository it maps `repo` to.
pub(crate) fn match_rule<'a>(
    rules: &'a [RuleRecord],
    repo: &str,
) -> Option<(&'a RuleRecord, String)> {
    let rule = rules
        .iter()
        .filter(|r| {
            repo.strip_prefix(r.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty())
        })
        .max_by_key(|r| r.prefix.len())?;
    let rest = &repo[rule.prefix.len() + 1..];
    let upstream = match &rule.upstream_repository_prefix {
        Some(p) => format!("{p}/{rest}"),
        None => rest.to_owned(),
    };
    Some((rule, upstream))
}

/// The template that applies to a repository `repo` created for `applied_for`: the longest
/// prefix `repo` is under, else the `ROOT` template.
pub(crate) fn match_template<'a>(
    templates: &'a [TemplateRecord],
    repo: &str,
    applied_for: &str,
) -> Option<&'a TemplateRecord> {
    let eligible = templates
        .iter()
        .filter(|t| t.applied_for.iter().any(|a| a == applied_for));
    let mut best: Option<&TemplateRecord> = None;
    let mut root: Option<&TemplateRecord> = None;
    for t in eligible {
        if t.prefix == "ROOT" {
            root = Some(t);
        } else if repo
            .strip_prefix(t.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
            && best.is_none_or(|b| t.prefix.len() > b.prefix.len())
        {
            best = Some(t);
        }
    }
    best.or(root)
}

/// Parses a `WWW-Authenticate` challenge: its scheme and its parameters.
pub(crate) fn parse_challenge(h: &str) -> Option<(String, Vec<(String, String)>)> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some((scheme.to_ascii_lowercase(), params))
}

/// One conversation with an upstream registry about one repository: answers its
/// authentication challenge once and reuses the result.
struct Upstream<'a> {
    http: &'a reqwest::Client,
    endpoint: Endpoint,
    repository: String,
    login: Option<UpstreamLogin>,
    authorization: Option<String>,
}

fn upstream_err(what: impl std::fmt::Display) -> RegistryError {
    RegistryError::Upstream(what.to_string())
}

impl Upstream<'_> {
    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        method: reqwest::Method,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut req = self.http.request(method, url);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some(auth) = &self.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        // The error's text names the URL, never a header.
        req.send().await.map_err(|e| {
            upstream_err(format!(
                "{} cannot be reached: {}",
                self.endpoint.base,
                e.without_url()
            ))
        })
    }

    /// A GET of `path` (under `/v2/`), authenticating when challenged.
    async fn get(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = format!("{}/v2/{path}", self.endpoint.base);
        let resp = self.send(&url, accept, reqwest::Method::GET).await?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED || self.authorization.is_some() {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let Some((scheme, params)) = challenge else {
            return Ok(resp);
        };
        self.authorization = Some(self.answer(&scheme, &params).await?);
        self.send(&url, accept, reqwest::Method::GET).await
    }

    /// The `Authorization` value answering a challenge.
    async fn answer(
        &self,
        scheme: &str,
        params: &[(String, String)],
    ) -> Result<String, RegistryError> {
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match scheme {
            "basic" => {
                let Some(l) = &self.login else {
                    return Err(upstream_err(format!(
                        "{} requires credentials and the rule has no credentialArn",
                        self.endpoint.base
                    )));
                };
                Ok(format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", l.username, l.password))
                ))
            }
            "bearer" => {
                let realm = param("realm")
                    .ok_or_else(|| upstream_err("a Bearer challenge without a realm"))?;
                let scope = param("scope")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let query = {
                    let mut q = form_urlencoded::Serializer::new(String::new());
                    q.append_pair("scope", &scope);
                    if let Some(service) = param("service") {
                        q.append_pair("service", service);
                    }
                    q.finish()
                };
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut req = self.http.get(format!("{realm}{sep}{query}"));
                if let Some(l) = &self.login {
                    req = req.basic_auth(&l.username, Some(&l.password));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| upstream_err(format!("token service: {}", e.without_url())))?;
                if !resp.status().is_success() {
                    return Err(upstream_err(format!(
                        "the token service of {} answered {}",
                        self.endpoint.base,
                        resp.status()
                    )));
                }
                let raw = resp
                    .bytes()
                    .await
                    .map_err(|e| upstream_err(format!("token service: {}", e.without_url())))?;
                let body: Value = serde_json::from_slice(&raw)
                    .map_err(|e| upstream_err(format!("token service answer: {e}")))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| upstream_err("the token service answered no token"))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(upstream_err(format!(
                "unsupported authentication scheme {other:?}"
            ))),
        }
    }

    fn refused(&self, status: reqwest::StatusCode, what: &str) -> RegistryError {
        let msg = format!(
            "{} answered {status} for {what} of {}",
            self.endpoint.base, self.repository
        );
        match status {
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => upstream_err(
                format!("{msg}: the rule's credentials are missing or refused"),
            ),
            _ => upstream_err(msg),
        }
    }

    /// The manifest `reference` names: its bytes and media type; `None` when the upstream
    /// has no such manifest.
    async fn manifest(
        &mut self,
        reference: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, RegistryError> {
        let path = format!("{}/manifests/{reference}", self.repository);
        let resp = self.get(&path, Some(MANIFEST_ACCEPT)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.refused(resp.status(), "a manifest"));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > manifest::MAX_MANIFEST_BYTES as u64)
        {
            return Err(upstream_err("the upstream manifest is too large"));
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let body = resp
            .bytes()
            .await
            .map_err(|e| upstream_err(format!("reading a manifest: {}", e.without_url())))?;
        if body.len() > manifest::MAX_MANIFEST_BYTES {
            return Err(upstream_err("the upstream manifest is too large"));
        }
        Ok(Some((body, ct)))
    }

    /// The bytes of blob `d`, streamed.
    async fn blob(&mut self, d: &Digest) -> Result<ByteStream, RegistryError> {
        let path = format!("{}/blobs/{d}", self.repository);
        let resp = self.get(&path, None).await?;
        if !resp.status().is_success() {
            return Err(self.refused(resp.status(), &format!("blob {d}")));
        }
        Ok(Box::pin(resp.bytes_stream().map(|r| {
            r.map_err(|e| std::io::Error::other(e.without_url()))
        })))
    }
}

impl Registry {
    async fn rules(&self, region: &str) -> Result<Vec<RuleRecord>, RegistryError> {
        Ok(self
            .store
            .scan_all_typed::<RuleRecord>(&rule_prefix(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    async fn templates(&self, region: &str) -> Result<Vec<TemplateRecord>, RegistryError> {
        Ok(self
            .store
            .scan_all_typed::<TemplateRecord>(&template_prefix(region))
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// Sets how rules' secrets are read (once, at wiring).
    pub fn set_upstream_credentials(&self, c: Arc<dyn UpstreamCredentials>) {
        self.pull_through.set_credentials(c);
    }

    /// Whether a first pull of `repo` would go to an upstream registry.
    pub(crate) async fn is_pull_through(
        &self,
        region: &str,
        repo: &str,
    ) -> Result<bool, RegistryError> {
        Ok(match_rule(&self.rules(region).await?, repo).is_some())
    }

    /// Creates repository `name` as ECR does for `applied_for` (`PULL_THROUGH_CACHE`,
    /// `REPLICATION`): with the settings of the creation template that applies, if any, else
    /// the defaults. `Ok(None)` when the repository already exists.
    pub(crate) async fn create_repo_from_template(
        &self,
        region: &str,
        name: &str,
        applied_for: &str,
    ) -> Result<Option<RepoRecord>, RegistryError> {
        let templates = self.templates(region).await?;
        let t = match_template(&templates, name, applied_for);
        let rec = RepoRecord {
            name: name.to_owned(),
            created_at: now_secs(),
            image_tag_mutability: t
                .map(|t| t.image_tag_mutability.clone())
                .unwrap_or_else(|| "MUTABLE".into()),
            mutability_exclusions: t
                .map(|t| t.mutability_exclusions.clone())
                .unwrap_or_default(),
            scan_on_push: false,
            encryption_type: t
                .map(|t| t.encryption_type.clone())
                .unwrap_or_else(|| "AES256".into()),
            kms_key: t.and_then(|t| t.kms_key.clone()),
            tags: t.map(|t| t.resource_tags.clone()).unwrap_or_default(),
            policy: t.and_then(|t| t.repository_policy.clone()),
            deleting: false,
        };
        let rec = match self.create_repo(region, rec).await {
            Ok(r) => r,
            Err(RegistryError::RepositoryAlreadyExists { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(text) = t.and_then(|t| t.lifecycle_policy.clone()) {
            let key = policy_key(region, name);
            let p = PolicyRecord {
                text,
                last_evaluated_at: None,
            };
            self.store
                .commit(Txn::new().put(&key, enc(&key, &p)?))
                .await?;
        }
        tracing::info!(
            repository = name,
            applied_for,
            template = t.map(|t| t.prefix.as_str()).unwrap_or("(none)"),
            "repository created from a creation template"
        );
        Ok(Some(rec))
    }

    /// The manifest `reference` names in `repo`, fetched from the upstream registry of the
    /// rule `repo` falls under when the registry does not hold it. `Ok(None)`: no rule applies.
    /// `before_create` runs before the repository is created (the caller's authorization of
    /// `ecr:CreateRepository`).
    pub(crate) async fn pull_through<F, Fut>(
        &self,
        region: &str,
        repo: &str,
        reference: &Reference,
        before_create: F,
    ) -> Result<Option<ManifestRecord>, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), RegistryError>>,
    {
        let rules = self.rules(region).await?;
        let Some((rule, upstream_repo)) = match_rule(&rules, repo) else {
            return Ok(None);
        };
        let _guard = self.pull_through.lock(repo).lock().await;
        // Another pull may have fetched it meanwhile.
        match self.resolve(region, repo, reference).await {
            Ok(m) => return Ok(Some(m)),
            Err(RegistryError::NameUnknown { .. } | RegistryError::ManifestUnknown(_)) => {}
            Err(e) => return Err(e),
        }
        let endpoint = parse_upstream_url(&rule.upstream_url)?;
        let login = match &rule.credential_arn {
            Some(arn) => Some(self.pull_through.login(arn).await.map_err(|e| {
                upstream_err(format!("the credentials of rule {}: {e}", rule.prefix))
            })?),
            None => None,
        };
        let mut up = Upstream {
            http: self.pull_through.http()?,
            endpoint,
            repository: upstream_repo,
            login,
            authorization: None,
        };
        let Some((body, ct)) = up.manifest(&reference.to_string()).await? else {
            return Err(RegistryError::ManifestUnknown(reference.to_string()));
        };
        let parsed = manifest::parse(&body, ct.as_deref())?;
        if self.get_repo(region, repo).await.is_err() {
            before_create().await?;
            self.create_repo_from_template(region, repo, "PULL_THROUGH_CACHE")
                .await?;
        }
        for child in &parsed.children {
            if self
                .get_manifest_by_digest(region, repo, &child.digest)
                .await?
                .is_some()
            {
                continue;
            }
            let Some((cbody, cct)) = up.manifest(&child.digest.to_string()).await? else {
                return Err(upstream_err(format!(
                    "the upstream index names manifest {} it does not have",
                    child.digest
                )));
            };
            let cparsed = manifest::parse(&cbody, cct.as_deref())?;
            self.fetch_blobs(region, repo, &mut up, &cparsed).await?;
            self.put_manifest(
                region,
                repo,
                &Reference::Digest(child.digest.clone()),
                cct.as_deref(),
                cbody,
                PushMode::Oci,
            )
            .await?;
        }
        self.fetch_blobs(region, repo, &mut up, &parsed).await?;
        let out = self
            .put_manifest(region, repo, reference, ct.as_deref(), body, PushMode::Oci)
            .await?;
        tracing::info!(
            repository = repo,
            reference = %reference,
            digest = %out.digest,
            upstream = %up.endpoint.base,
            "image cached from the upstream registry"
        );
        Ok(Some(out.record))
    }

    /// Stores (through the verified upload path) and links every blob of `m` that `repo`
    /// lacks.
    async fn fetch_blobs(
        &self,
        region: &str,
        repo: &str,
        up: &mut Upstream<'_>,
        m: &manifest::ParsedManifest,
    ) -> Result<(), RegistryError> {
        for b in &m.blobs {
            if !b.urls.is_empty() || self.blob_in_repo(region, repo, &b.digest).await?.is_some() {
                continue;
            }
            if let Some(info) = self.blobs.stat(&b.digest).await? {
                // Already stored for another repository: link it.
                let _guard = self.blob_lock(&b.digest).lock().await;
                if self.blobs.stat(&b.digest).await?.is_some() {
                    self.link_blob(region, repo, &b.digest, info.size).await?;
                    continue;
                }
            }
            let stream = up.blob(&b.digest).await?;
            let id = self.start_upload(region, repo, FETCH_CLIENT).await?;
            let stored = async {
                self.append_upload(&id, 0, Some(0), stream).await?;
                self.finish_upload(region, repo, &id, &b.digest).await
            }
            .await;
            if let Err(e) = stored {
                let _ = self.cancel_upload(&id).await;
                return Err(match e {
                    RegistryError::Io(io) if io.kind() == std::io::ErrorKind::Other => {
                        upstream_err(format!("reading blob {}: {io}", b.digest))
                    }
                    e => e,
                });
            }
        }
        Ok(())
    }
}

// ---- the ECR API ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRuleInput {
    registry_id: Option<String>,
    ecr_repository_prefix: Option<String>,
    upstream_registry_url: Option<String>,
    upstream_registry: Option<String>,
    credential_arn: Option<String>,
    custom_role_arn: Option<String>,
    upstream_repository_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleRefInput {
    registry_id: Option<String>,
    ecr_repository_prefix: Option<String>,
    credential_arn: Option<String>,
    custom_role_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRulesInput {
    registry_id: Option<String>,
    ecr_repository_prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateEncryption {
    encryption_type: Option<String>,
    kms_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateInput {
    prefix: Option<String>,
    description: Option<String>,
    encryption_configuration: Option<TemplateEncryption>,
    resource_tags: Option<Vec<ResourceTag>>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
    repository_policy: Option<String>,
    lifecycle_policy: Option<String>,
    applied_for: Option<Vec<String>>,
    custom_role_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTemplatesInput {
    prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// The pull through cache and creation template operations of the ECR API.
pub(crate) struct PullThroughApi<'a> {
    pub reg: &'a Registry,
    pub ctx: &'a EcrContext,
}

impl PullThroughApi<'_> {
    fn account(&self) -> &str {
        &self.reg.cfg.account_id
    }

    fn check_registry(&self, id: &Option<String>) -> Result<(), RegistryError> {
        match id {
            Some(id) if id != self.account() => Err(invalid(format!(
                "registry {id} is not this registry ({})",
                self.account()
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) async fn handle(&self, op: &str, body: &[u8]) -> Result<Value, AwsError> {
        let r = match op {
            "CreatePullThroughCacheRule" => self.create_rule(parse_body(body)?).await,
            "DescribePullThroughCacheRules" => self.describe_rules(parse_body(body)?).await,
            "DeletePullThroughCacheRule" => self.delete_rule(parse_body(body)?).await,
            "UpdatePullThroughCacheRule" => self.update_rule(parse_body(body)?).await,
            "ValidatePullThroughCacheRule" => self.validate_rule(parse_body(body)?).await,
            "CreateRepositoryCreationTemplate" => self.put_template(parse_body(body)?, true).await,
            "UpdateRepositoryCreationTemplate" => self.put_template(parse_body(body)?, false).await,
            "DescribeRepositoryCreationTemplates" => {
                self.describe_templates(parse_body(body)?).await
            }
            "DeleteRepositoryCreationTemplate" => self.delete_template(parse_body(body)?).await,
            other => Err(RegistryError::Internal(format!(
                "{other} is not a pull through cache operation"
            ))),
        };
        r.map_err(to_aws)
    }

    fn rule_json(&self, r: &RuleRecord) -> Value {
        let mut v = json!({
            "registryId": self.account(),
            "ecrRepositoryPrefix": r.prefix,
            "upstreamRegistryUrl": r.upstream_url,
            "createdAt": r.created_at,
            "updatedAt": r.updated_at,
        });
        if let Some(u) = &r.upstream_registry {
            v["upstreamRegistry"] = json!(u);
        }
        if let Some(c) = &r.credential_arn {
            v["credentialArn"] = json!(c);
        }
        if let Some(p) = &r.upstream_repository_prefix {
            v["upstreamRepositoryPrefix"] = json!(p);
        }
        v
    }

    fn rule_missing(&self, prefix: &str) -> RegistryError {
        RegistryError::PullThroughCacheRuleNotFound(format!(
            "The pull through cache rule with prefix '{prefix}' does not exist in the registry with id '{}'",
            self.account()
        ))
    }

    fn required<'v>(v: &'v Option<String>, name: &str) -> Result<&'v str, RegistryError> {
        v.as_deref()
            .ok_or_else(|| invalid(format!("{name} is required")))
    }

    async fn load_rule(
        &self,
        prefix: &str,
    ) -> Result<gantry_store::Versioned<RuleRecord>, RegistryError> {
        self.reg
            .store
            .get_typed::<RuleRecord>(&rule_key(&self.ctx.region, prefix))
            .await?
            .ok_or_else(|| self.rule_missing(prefix))
    }

    /// Checks that the secret exists and holds a username and password.
    async fn check_secret(&self, arn: &str) -> Result<(), RegistryError> {
        self.reg.pull_through.login(arn).await.map(|_| ())
    }

    async fn create_rule(&self, i: CreateRuleInput) -> Result<Value, RegistryError> {
        self.check_registry(&i.registry_id)?;
        let prefix = normalize_prefix(Self::required(
            &i.ecr_repository_prefix,
            "ecrRepositoryPrefix",
        )?);
        if prefix == "ROOT" {
            return Err(invalid(
                "the ecrRepositoryPrefix ROOT is only valid for an ECR upstream registry, which Gantry does not support",
            ));
        }
        let url = Self::required(&i.upstream_registry_url, "upstreamRegistryUrl")?;
        let endpoint = parse_upstream_url(url)?;
        let kind = match i.upstream_registry.as_deref() {
            Some("ecr") => {
                return Err(RegistryError::UnsupportedUpstreamRegistry(
                    "the upstream registry ecr (a private Amazon ECR registry, reached with customRoleArn) is not supported by Gantry".into(),
                ));
            }
            Some(k) if UPSTREAM_REGISTRIES.contains(&k) => Some(k.to_owned()),
            Some(k) => {
                return Err(invalid(format!(
                    "Invalid parameter at 'upstreamRegistry' failed to satisfy constraint: 'Member must satisfy enum value set: [{}]' ({k:?})",
                    UPSTREAM_REGISTRIES.join(", ")
                )));
            }
            None => infer_upstream_registry(&endpoint.host).map(str::to_owned),
        };
        if i.custom_role_arn.is_some() {
            return Err(invalid(
                "customRoleArn is only valid for an ECR upstream registry, which Gantry does not support",
            ));
        }
        let upstream_prefix = match i
            .upstream_repository_prefix
            .as_deref()
            .map(normalize_prefix)
        {
            None => None,
            Some(p) if p == "ROOT" => None,
            Some(p) => Some(p),
        };
        if let Some(k) = &kind
            && NEEDS_CREDENTIALS.contains(&k.as_str())
            && i.credential_arn.is_none()
        {
            return Err(invalid(format!(
                "a credentialArn is required for the upstream registry {k}"
            )));
        }
        if let Some(arn) = &i.credential_arn {
            self.check_secret(arn).await?;
        }
        if self.reg.rules(&self.ctx.region).await?.len() >= MAX_RULES {
            return Err(RegistryError::LimitExceeded(format!(
                "The maximum number of pull through cache rules ({MAX_RULES}) has been reached for the registry with id '{}'",
                self.account()
            )));
        }
        let now = now_secs();
        let rec = RuleRecord {
            prefix: prefix.clone(),
            upstream_url: url.to_owned(),
            upstream_registry: kind,
            credential_arn: i.credential_arn.clone(),
            upstream_repository_prefix: upstream_prefix,
            created_at: now,
            updated_at: now,
        };
        let key = rule_key(&self.ctx.region, &prefix);
        let txn = Txn::new().require_absent(&key).put(&key, enc(&key, &rec)?);
        if !self.reg.store.commit(txn).await?.is_committed() {
            return Err(RegistryError::PullThroughCacheRuleAlreadyExists(format!(
                "A pull through cache rule with the prefix '{prefix}' already exists in the registry with id '{}'",
                self.account()
            )));
        }
        tracing::info!(prefix = %prefix, upstream = %endpoint.base, "pull through cache rule created");
        let mut v = self.rule_json(&rec);
        if let Some(o) = v.as_object_mut() {
            o.remove("updatedAt");
        }
        Ok(v)
    }

    async fn describe_rules(&self, i: DescribeRulesInput) -> Result<Value, RegistryError> {
        self.check_registry(&i.registry_id)?;
        let rules = match &i.ecr_repository_prefixes {
            Some(prefixes) => {
                if i.next_token.is_some() || i.max_results.is_some() {
                    return Err(invalid(
                        "maxResults and nextToken cannot be used with ecrRepositoryPrefixes",
                    ));
                }
                let mut out = Vec::new();
                for p in prefixes {
                    out.push(self.load_rule(&normalize_prefix(p)).await?.value);
                }
                (out, None)
            }
            None => {
                let max = max_results(i.max_results, 100)?;
                let after = token_position(&i.next_token)?;
                paginate(
                    self.reg.rules(&self.ctx.region).await?,
                    |r| r.prefix.clone(),
                    after,
                    max,
                )
            }
        };
        let mut v = json!({"pullThroughCacheRules": rules.0.iter().map(|r| self.rule_json(r)).collect::<Vec<_>>()});
        if let Some(n) = rules.1 {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    async fn delete_rule(&self, i: RuleRefInput) -> Result<Value, RegistryError> {
        self.check_registry(&i.registry_id)?;
        let prefix = normalize_prefix(Self::required(
            &i.ecr_repository_prefix,
            "ecrRepositoryPrefix",
        )?);
        let cur = self.load_rule(&prefix).await?;
        let key = rule_key(&self.ctx.region, &prefix);
        let txn = Txn::new().require_revision(&key, cur.revision).delete(&key);
        if !self.reg.store.commit(txn).await?.is_committed() {
            return Err(RegistryError::Contention(key));
        }
        tracing::info!(prefix = %prefix, "pull through cache rule deleted");
        let mut v = self.rule_json(&cur.value);
        if let Some(o) = v.as_object_mut() {
            o.remove("updatedAt");
            o.remove("upstreamRegistry");
        }
        Ok(v)
    }

    async fn update_rule(&self, i: RuleRefInput) -> Result<Value, RegistryError> {
        self.check_registry(&i.registry_id)?;
        let prefix = normalize_prefix(Self::required(
            &i.ecr_repository_prefix,
            "ecrRepositoryPrefix",
        )?);
        if i.custom_role_arn.is_some() {
            return Err(invalid(
                "customRoleArn is only valid for an ECR upstream registry, which Gantry does not support",
            ));
        }
        let arn = Self::required(&i.credential_arn, "credentialArn")?;
        let cur = self.load_rule(&prefix).await?;
        self.check_secret(arn).await?;
        let mut rec = cur.value.clone();
        rec.credential_arn = Some(arn.to_owned());
        rec.updated_at = now_secs();
        let key = rule_key(&self.ctx.region, &prefix);
        let txn = Txn::new()
            .require_revision(&key, cur.revision)
            .put(&key, enc(&key, &rec)?);
        if !self.reg.store.commit(txn).await?.is_committed() {
            return Err(RegistryError::Contention(key));
        }
        let mut v = json!({
            "registryId": self.account(),
            "ecrRepositoryPrefix": rec.prefix,
            "updatedAt": rec.updated_at,
            "credentialArn": arn,
        });
        if let Some(p) = &rec.upstream_repository_prefix {
            v["upstreamRepositoryPrefix"] = json!(p);
        }
        Ok(v)
    }

    /// Reaches the upstream's `/v2/` with the rule's credentials.
    async fn validate_rule(&self, i: RuleRefInput) -> Result<Value, RegistryError> {
        self.check_registry(&i.registry_id)?;
        let prefix = normalize_prefix(Self::required(
            &i.ecr_repository_prefix,
            "ecrRepositoryPrefix",
        )?);
        let rule = self.load_rule(&prefix).await?.value;
        let failure = match self.probe(&rule).await {
            Ok(()) => None,
            Err(e) if e.is_internal() => return Err(e),
            Err(e) => Some(e.to_string()),
        };
        let mut v = json!({
            "registryId": self.account(),
            "ecrRepositoryPrefix": rule.prefix,
            "upstreamRegistryUrl": rule.upstream_url,
            "isValid": failure.is_none(),
        });
        if let Some(c) = &rule.credential_arn {
            v["credentialArn"] = json!(c);
        }
        if let Some(p) = &rule.upstream_repository_prefix {
            v["upstreamRepositoryPrefix"] = json!(p);
        }
        if let Some(f) = failure {
            v["failure"] = json!(f);
        }
        Ok(v)
    }

    async fn probe(&self, rule: &RuleRecord) -> Result<(), RegistryError> {
        let login = match &rule.credential_arn {
            Some(arn) => Some(self.reg.pull_through.login(arn).await?),
            None => None,
        };
        let mut up = Upstream {
            http: self.reg.pull_through.http()?,
            endpoint: parse_upstream_url(&rule.upstream_url)?,
            repository: rule.upstream_repository_prefix.clone().unwrap_or_default(),
            login,
            authorization: None,
        };
        let resp = up.get("", None).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(up.refused(resp.status(), "the API base"))
        }
    }

    fn template_json(&self, t: &TemplateRecord) -> Value {
        let mut v = json!({
            "prefix": t.prefix,
            "encryptionConfiguration": {"encryptionType": t.encryption_type},
            "resourceTags": t.resource_tags,
            "imageTagMutability": t.image_tag_mutability,
            "appliedFor": t.applied_for,
            "createdAt": t.created_at,
            "updatedAt": t.updated_at,
        });
        if let Some(k) = &t.kms_key {
            v["encryptionConfiguration"]["kmsKey"] = json!(k);
        }
        if let Some(d) = &t.description {
            v["description"] = json!(d);
        }
        if !t.mutability_exclusions.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = json!(t.mutability_exclusions);
        }
        if let Some(p) = &t.repository_policy {
            v["repositoryPolicy"] = json!(p);
        }
        if let Some(p) = &t.lifecycle_policy {
            v["lifecyclePolicy"] = json!(p);
        }
        v
    }

    fn template_missing(&self, prefix: &str) -> RegistryError {
        RegistryError::TemplateNotFound(format!(
            "The repository creation template with prefix '{prefix}' does not exist in the registry with id '{}'",
            self.account()
        ))
    }

    /// Create (`create`) or update a template: every given member is checked as
    /// `CreateRepository` and the ECR API check them; absent members keep their value (update)
    /// or the defaults (create).
    async fn put_template(&self, i: TemplateInput, create: bool) -> Result<Value, RegistryError> {
        let prefix = normalize_prefix(Self::required(&i.prefix, "prefix")?);
        if i.custom_role_arn.is_some() {
            return Err(invalid(
                "customRoleArn is not supported by Gantry: a template's tags and KMS key are applied by the registry itself",
            ));
        }
        let key = template_key(&self.ctx.region, &prefix);
        let existing = self.reg.store.get(&key).await?;
        let now = now_secs();
        let mut t = match (&existing, create) {
            (Some(_), true) => {
                return Err(RegistryError::TemplateAlreadyExists(format!(
                    "A repository creation template with the prefix '{prefix}' already exists in the registry with id '{}'",
                    self.account()
                )));
            }
            (None, false) => return Err(self.template_missing(&prefix)),
            (Some(r), false) => dec::<TemplateRecord>(r)?.value,
            (None, true) => TemplateRecord {
                prefix: prefix.clone(),
                description: None,
                encryption_type: "AES256".into(),
                kms_key: None,
                resource_tags: Vec::new(),
                image_tag_mutability: "MUTABLE".into(),
                mutability_exclusions: Vec::new(),
                repository_policy: None,
                lifecycle_policy: None,
                applied_for: Vec::new(),
                created_at: now,
                updated_at: now,
            },
        };
        if let Some(a) = &i.applied_for {
            if a.is_empty() {
                return Err(invalid(
                    "appliedFor must name at least one of PULL_THROUGH_CACHE, REPLICATION",
                ));
            }
            if let Some(bad) = a.iter().find(|x| !APPLIED_FOR.contains(&x.as_str())) {
                return Err(invalid(format!(
                    "appliedFor {bad} is not supported by Gantry (supported: PULL_THROUGH_CACHE, REPLICATION)"
                )));
            }
            let mut a = a.clone();
            a.sort();
            a.dedup();
            t.applied_for = a;
        } else if create {
            return Err(invalid("appliedFor is required"));
        }
        if let Some(d) = &i.description {
            t.description = Some(d.clone()).filter(|d| !d.is_empty());
        }
        if let Some(m) = &i.image_tag_mutability {
            t.mutability_exclusions =
                validate_mutability(m, &i.image_tag_mutability_exclusion_filters)?;
            t.image_tag_mutability = m.clone();
        } else if i.image_tag_mutability_exclusion_filters.is_some() {
            return Err(invalid(
                "imageTagMutabilityExclusionFilters need an imageTagMutability ending in _WITH_EXCLUSION",
            ));
        }
        if let Some(tags) = &i.resource_tags {
            crate::ecr::validate_tags(tags)?;
            let mut merged = Vec::new();
            merge_tags(&mut merged, tags)?;
            t.resource_tags = merged;
        }
        if let Some(p) = &i.repository_policy {
            if p.is_empty() {
                t.repository_policy = None;
            } else {
                crate::ecr::validate_policy(p)?;
                t.repository_policy = Some(p.clone());
            }
        }
        if let Some(p) = &i.lifecycle_policy {
            if p.is_empty() {
                t.lifecycle_policy = None;
            } else {
                parse_policy(p)?;
                t.lifecycle_policy = Some(p.clone());
            }
        }
        if let Some(enc_cfg) = &i.encryption_configuration {
            let et = Self::required(
                &enc_cfg.encryption_type,
                "encryptionConfiguration.encryptionType",
            )?;
            let kms = enc_cfg.kms_key.clone().filter(|k| !k.is_empty());
            let key_arn = match et {
                "AES256" if kms.is_some() => {
                    return Err(invalid(
                        "a kmsKey can only be given with encryptionType KMS or KMS_DSSE",
                    ));
                }
                "AES256" => None,
                "KMS" | "KMS_DSSE" => match &self.ctx.keys {
                    Some(keys) => Some(
                        keys.key_arn(&self.ctx.region, kms.as_deref())
                            .await
                            .map_err(|p| {
                                RegistryError::Kms(format!("{}: {}", p.code, p.message))
                            })?,
                    ),
                    None => kms,
                },
                other => return Err(invalid(format!("invalid encryptionType {other:?}"))),
            };
            t.encryption_type = et.to_owned();
            t.kms_key = key_arn;
        }
        t.updated_at = now;
        let txn = match &existing {
            Some(r) => Txn::new().require_revision(&key, r.revision),
            None => Txn::new().require_absent(&key),
        }
        .put(&key, enc(&key, &t)?);
        if !self.reg.store.commit(txn).await?.is_committed() {
            return Err(RegistryError::Contention(key));
        }
        Ok(
            json!({"registryId": self.account(), "repositoryCreationTemplate": self.template_json(&t)}),
        )
    }

    async fn describe_templates(&self, i: DescribeTemplatesInput) -> Result<Value, RegistryError> {
        let max = max_results(i.max_results, 100)?;
        let after = token_position(&i.next_token)?;
        let mut all = self.reg.templates(&self.ctx.region).await?;
        if let Some(prefixes) = &i.prefixes {
            let wanted: Vec<String> = prefixes.iter().map(|p| normalize_prefix(p)).collect();
            all.retain(|t| wanted.contains(&t.prefix));
        }
        let (page, next) = paginate(all, |t| t.prefix.clone(), after, max);
        let mut v = json!({
            "registryId": self.account(),
            "repositoryCreationTemplates": page.iter().map(|t| self.template_json(t)).collect::<Vec<_>>(),
        });
        if let Some(n) = next {
            v["nextToken"] = json!(n);
        }
        Ok(v)
    }

    async fn delete_template(&self, i: TemplateInput) -> Result<Value, RegistryError> {
        let prefix = normalize_prefix(Self::required(&i.prefix, "prefix")?);
        let key = template_key(&self.ctx.region, &prefix);
        let Some(cur) = self.reg.store.get_typed::<TemplateRecord>(&key).await? else {
            return Err(self.template_missing(&prefix));
        };
        let txn = Txn::new().require_revision(&key, cur.revision).delete(&key);
        if !self.reg.store.commit(txn).await?.is_committed() {
            return Err(RegistryError::Contention(key));
        }
        Ok(
            json!({"registryId": self.account(), "repositoryCreationTemplate": self.template_json(&cur.value)}),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(prefix: &str, upstream_prefix: Option<&str>) -> RuleRecord {
        RuleRecord {
            prefix: prefix.into(),
            upstream_url: "127.0.0.1:5000".into(),
            upstream_registry: None,
            credential_arn: None,
            upstream_repository_prefix: upstream_prefix.map(Into::into),
            created_at: 0.0,
            updated_at: 0.0,
        }
    }

    fn template(prefix: &str, applied_for: &[&str]) -> TemplateRecord {
        TemplateRecord {
            prefix: prefix.into(),
            description: None,
            encryption_type: "AES256".into(),
            kms_key: None,
            resource_tags: vec![],
            image_tag_mutability: "MUTABLE".into(),
            mutability_exclusions: vec![],
            repository_policy: None,
            lifecycle_policy: None,
            applied_for: applied_for.iter().map(|s| s.to_string()).collect(),
            created_at: 0.0,
            updated_at: 0.0,
        }
    }

    #[test]
    fn a_repository_matches_the_rule_of_its_longest_prefix() {
        let rules = vec![
            rule("hub", None),
            rule("hub/team", None),
            rule("quay", None),
        ];
        let (r, up) = match_rule(&rules, "hub/team/app").unwrap();
        assert_eq!((r.prefix.as_str(), up.as_str()), ("hub/team", "app"));
        let (r, up) = match_rule(&rules, "hub/library/alpine").unwrap();
        assert_eq!((r.prefix.as_str(), up.as_str()), ("hub", "library/alpine"));
    }

    #[test]
    fn a_prefix_matches_whole_path_segments_only() {
        let rules = vec![rule("hub", None)];
        assert!(match_rule(&rules, "hubble/app").is_none());
        assert!(match_rule(&rules, "hub").is_none());
        assert!(match_rule(&rules, "other/hub/app").is_none());
    }

    #[test]
    fn the_upstream_repository_prefix_replaces_the_cache_prefix() {
        let rules = vec![rule("cache", Some("mirror/base"))];
        let (_, up) = match_rule(&rules, "cache/app/web").unwrap();
        assert_eq!(up, "mirror/base/app/web");
    }

    #[test]
    fn templates_match_by_longest_prefix_then_root_and_purpose() {
        let ts = vec![
            template("ROOT", &["PULL_THROUGH_CACHE"]),
            template("hub", &["PULL_THROUGH_CACHE"]),
            template("hub/team", &["REPLICATION"]),
        ];
        let t = |repo, a| match_template(&ts, repo, a).map(|t| t.prefix.as_str());
        assert_eq!(t("hub/team/app", "PULL_THROUGH_CACHE"), Some("hub"));
        assert_eq!(t("hub/team/app", "REPLICATION"), Some("hub/team"));
        assert_eq!(t("other/app", "PULL_THROUGH_CACHE"), Some("ROOT"));
        assert_eq!(t("other/app", "REPLICATION"), None);
        assert_eq!(t("hubble/x", "PULL_THROUGH_CACHE"), Some("ROOT"));
    }

    #[test]
    fn upstream_urls_default_to_tls_and_allow_plain_http_on_loopback_only() {
        let e = parse_upstream_url("registry-1.docker.io").unwrap();
        assert_eq!(e.base, "https://registry-1.docker.io");
        assert_eq!(
            parse_upstream_url("https://ghcr.io/").unwrap().base,
            "https://ghcr.io"
        );
        assert_eq!(
            parse_upstream_url("http://127.0.0.1:5000").unwrap().base,
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            parse_upstream_url("http://localhost:1").unwrap().host,
            "localhost"
        );
        assert_eq!(
            parse_upstream_url("http://[::1]:5000").unwrap().base,
            "http://[::1]:5000"
        );
        assert!(matches!(
            parse_upstream_url("http://registry.example.com"),
            Err(RegistryError::UnsupportedUpstreamRegistry(_))
        ));
        for bad in [
            "",
            "ftp://x",
            "host/path",
            "host:0",
            "host:99999",
            "user@host",
            "h?q",
            "http://",
        ] {
            assert!(
                matches!(
                    parse_upstream_url(bad),
                    Err(RegistryError::InvalidParameter(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn well_known_hosts_name_their_upstream_kind() {
        assert_eq!(
            infer_upstream_registry("registry-1.docker.io"),
            Some("docker-hub")
        );
        assert_eq!(
            infer_upstream_registry("me.azurecr.io"),
            Some("azure-container-registry")
        );
        assert_eq!(infer_upstream_registry("127.0.0.1"), None);
    }

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(
            params,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="gantry-e2e""#).unwrap();
        assert_eq!(scheme, "basic");
        assert_eq!(params, vec![("realm".into(), "gantry-e2e".into())]);
    }

    #[test]
    fn a_login_never_shows_its_password() {
        let l = UpstreamLogin {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
