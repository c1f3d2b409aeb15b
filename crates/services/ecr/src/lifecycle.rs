//! ECR lifecycle policies: the policy language (validated as ECR validates it), its evaluation
//! (pure: images in, expirations out), previews, and execution after pushes and on the
//! maintenance schedule.
//!
//! Evaluation follows ECR's documented rules: every rule selects the images its tag status and
//! tag filters match; rules apply in `rulePriority` order (lowest first); an image is expired by
//! at most one rule, and never by a rule of lower priority than a rule whose tag filters it
//! matched; counting (`imageCountMoreThan`) keeps the newest images by push time and still counts
//! images that higher-priority rules claimed. Expired images are deleted with their tags; their
//! blobs stay for the registry's garbage collection. Images a manifest list in the repository
//! refers to are never expired (the list still needs them).
//!
//! ```text
//! ecr/lifecycle/<repo>           PolicyRecord (the text as put, last evaluation time)
//! ecr/lifecycle-preview/<repo>   PreviewRecord (the last StartLifecyclePolicyPreview)
//! ```

use std::collections::{HashMap, HashSet};

use gantry_aws_proto::AwsError;
use gantry_aws_proto::json::parse_body;
use gantry_aws_proto::pagination::{decode_token, encode_token};
use gantry_store::{StoreExt, Txn};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::core::now_secs;
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::meta::{enc, wildcard_match};
use crate::{EcrContext, Registry};

pub(crate) fn policy_key(region: &str, repo: &str) -> String {
    format!("{}{repo}", policy_prefix(region))
}

pub(crate) fn preview_key(region: &str, repo: &str) -> String {
    format!(
        "{}lifecycle-preview/{repo}",
        crate::meta::region_prefix(region)
    )
}

fn policy_prefix(region: &str) -> String {
    format!("{}lifecycle/", crate::meta::region_prefix(region))
}
/// Most wildcards in one `tagPatternList` entry.
const MAX_PATTERN_WILDCARDS: usize = 4;
const SECS_PER_DAY: f64 = 86_400.0;
/// Untagged images younger than this are never expired: a manifest list being pushed refers to
/// children pushed (untagged) just before it.
const UNTAGGED_GRACE_SECS: f64 = 300.0;

/// Which images a rule considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

/// How a rule picks the images it expires among those it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountType {
    /// Keep the newest `n`, expire the rest.
    ImageCountMoreThan(u64),
    /// Expire images pushed more than `n` days ago.
    SinceImagePushedDays(u64),
}

/// One rule of a lifecycle policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: u64,
    pub tag_status: TagStatus,
    pub tag_prefixes: Vec<String>,
    pub tag_patterns: Vec<String>,
    pub count: CountType,
}

/// A validated lifecycle policy, rules in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// An image as lifecycle evaluation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    /// Seconds since the epoch.
    pub pushed_at: f64,
}

/// A validation failure, worded as ECR words them.
fn failure(detail: impl std::fmt::Display) -> RegistryError {
    RegistryError::InvalidParameter(format!(
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {detail}'"
    ))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(v: &Value, allowed: &str) -> RegistryError {
    failure(format!(
        "instance type ({}) does not match any allowed primitive type (allowed: [\"{allowed}\"])",
        type_name(v)
    ))
}

fn object<'a>(
    v: &'a Value,
    required: &[&str],
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, RegistryError> {
    let o = v.as_object().ok_or_else(|| wrong_type(v, "object"))?;
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| !o.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(failure(format!(
            "object has missing required properties ([{}])",
            missing
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    let mut extra: Vec<&str> = o
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(failure(format!(
            "object instance has properties which are not allowed by the schema: [{}]",
            extra
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    Ok(o)
}

fn integer(v: &Value, min: u64) -> Result<u64, RegistryError> {
    let lower = |found: i128| {
        failure(format!(
            "numeric instance is lower than the required minimum (minimum: {min}, found: {found})"
        ))
    };
    match (v.as_u64(), v.as_i64()) {
        (Some(n), _) if n >= min => Ok(n),
        (Some(n), _) => Err(lower(i128::from(n))),
        (None, Some(n)) => Err(lower(i128::from(n))),
        (None, None) => Err(wrong_type(v, "integer")),
    }
}

fn enum_str<'a>(v: &'a Value, allowed: &[&str]) -> Result<&'a str, RegistryError> {
    let s = v.as_str().ok_or_else(|| wrong_type(v, "string"))?;
    if !allowed.contains(&s) {
        return Err(failure(format!(
            "instance value (\"{s}\") not found in enum (possible values: [{}])",
            allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    Ok(s)
}

fn string_list(v: &Value) -> Result<Vec<String>, RegistryError> {
    let a = v.as_array().ok_or_else(|| wrong_type(v, "array"))?;
    if a.is_empty() {
        return Err(failure(
            "array is too short: must have at least 1 elements but instance has 0 elements",
        ));
    }
    let mut out = Vec::with_capacity(a.len());
    for item in a {
        let s = item.as_str().ok_or_else(|| wrong_type(item, "string"))?;
        if s.is_empty() {
            return Err(failure(
                "string \"\" is too short (length: 0, required minimum: 1)",
            ));
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

/// Parses and validates a lifecycle policy document.
pub fn parse_policy(text: &str) -> Result<Policy, RegistryError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| failure(format!("the policy is not valid JSON: {e}")))?;
    let top = object(&doc, &["rules"], &["rules"])?;
    let rules_v = top["rules"]
        .as_array()
        .ok_or_else(|| wrong_type(&top["rules"], "array"))?;
    if rules_v.is_empty() {
        return Err(failure(
            "array is too short: must have at least 1 elements but instance has 0 elements",
        ));
    }
    let mut rules = Vec::with_capacity(rules_v.len());
    for r in rules_v {
        let o = object(
            r,
            &["rulePriority", "selection", "action"],
            &["rulePriority", "description", "selection", "action"],
        )?;
        let priority = integer(&o["rulePriority"], 1)?;
        if let Some(d) = o.get("description")
            && !d.is_string()
        {
            return Err(wrong_type(d, "string"));
        }
        let action = object(&o["action"], &["type"], &["type", "targetStorageClass"])?;
        match action["type"].as_str() {
            Some("expire") if action.len() == 1 => {}
            Some("transition") => {
                return Err(failure(
                    "the action type \"transition\" (archive storage class) is not supported by this registry; use \"expire\"",
                ));
            }
            _ => {
                enum_str(&action["type"], &["expire"])?;
                return Err(failure(
                    "object instance has properties which are not allowed by the schema: [\"targetStorageClass\"]",
                ));
            }
        }
        let sel = object(
            &o["selection"],
            &["tagStatus", "countType", "countNumber"],
            &[
                "tagStatus",
                "tagPrefixList",
                "tagPatternList",
                "countType",
                "countUnit",
                "countNumber",
                "storageClass",
            ],
        )?;
        if sel.contains_key("storageClass") {
            return Err(failure(
                "selection by storageClass (archive storage class) is not supported by this registry",
            ));
        }
        let tag_status = match enum_str(&sel["tagStatus"], &["tagged", "untagged", "any"])? {
            "tagged" => TagStatus::Tagged,
            "untagged" => TagStatus::Untagged,
            _ => TagStatus::Any,
        };
        let tag_prefixes = sel
            .get("tagPrefixList")
            .map(string_list)
            .transpose()?
            .unwrap_or_default();
        let tag_patterns = sel
            .get("tagPatternList")
            .map(string_list)
            .transpose()?
            .unwrap_or_default();
        match tag_status {
            TagStatus::Tagged => {
                if tag_prefixes.is_empty() && tag_patterns.is_empty() {
                    return Err(failure(
                        "tagPrefixList or tagPatternList is required when tagStatus is tagged",
                    ));
                }
                if !tag_prefixes.is_empty() && !tag_patterns.is_empty() {
                    return Err(failure(
                        "tagPrefixList and tagPatternList cannot both be specified in a rule",
                    ));
                }
            }
            _ => {
                if !tag_prefixes.is_empty() || !tag_patterns.is_empty() {
                    return Err(failure(
                        "tagPrefixList and tagPatternList can only be specified when tagStatus is tagged",
                    ));
                }
            }
        }
        if let Some(p) = tag_patterns
            .iter()
            .find(|p| p.matches('*').count() > MAX_PATTERN_WILDCARDS)
        {
            return Err(failure(format!(
                "the tag pattern \"{p}\" has more than {MAX_PATTERN_WILDCARDS} wildcards"
            )));
        }
        let count_number = integer(&sel["countNumber"], 1)?;
        let count = match enum_str(
            &sel["countType"],
            &["imageCountMoreThan", "sinceImagePushed"],
        )? {
            "imageCountMoreThan" => {
                if sel.contains_key("countUnit") {
                    return Err(failure(
                        "countUnit cannot be specified when countType is imageCountMoreThan",
                    ));
                }
                CountType::ImageCountMoreThan(count_number)
            }
            _ => {
                let unit = sel.get("countUnit").ok_or_else(|| {
                    failure("countUnit is required when countType is sinceImagePushed")
                })?;
                enum_str(unit, &["days"])?;
                CountType::SinceImagePushedDays(count_number)
            }
        };
        rules.push(Rule {
            priority,
            tag_status,
            tag_prefixes,
            tag_patterns,
            count,
        });
    }
    rules.sort_by_key(|r| r.priority);
    if rules.windows(2).any(|w| w[0].priority == w[1].priority) {
        return Err(failure("rulePriority values must be unique"));
    }
    if rules
        .iter()
        .filter(|r| r.tag_status == TagStatus::Untagged)
        .count()
        > 1
    {
        return Err(failure("only one rule can select untagged images"));
    }
    if let Some(i) = rules.iter().position(|r| r.tag_status == TagStatus::Any)
        && i + 1 != rules.len()
    {
        return Err(failure(
            "a rule with tagStatus any must have the highest rulePriority value",
        ));
    }
    Ok(Policy { rules })
}

impl Rule {
    /// Whether the rule's tag requirements match the image.
    pub fn selects(&self, img: &Image) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => img.tags.is_empty(),
            TagStatus::Tagged => {
                // Every prefix (or pattern) must match one of the image's tags.
                !img.tags.is_empty()
                    && self
                        .tag_prefixes
                        .iter()
                        .all(|p| img.tags.iter().any(|t| t.starts_with(p.as_str())))
                    && self
                        .tag_patterns
                        .iter()
                        .all(|p| img.tags.iter().any(|t| wildcard_match(p, t)))
            }
        }
    }
}

/// The images `policy` expires at `now` (seconds), as `(index into images, rule priority)`,
/// oldest first.
pub fn evaluate(policy: &Policy, images: &[Image], now: f64) -> Vec<(usize, u64)> {
    // Newest first; ties by digest so evaluation is deterministic.
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by(|&a, &b| {
        images[b]
            .pushed_at
            .total_cmp(&images[a].pushed_at)
            .then_with(|| images[a].digest.cmp(&images[b].digest))
    });
    let mut claimed: HashSet<usize> = HashSet::new();
    let mut expired: HashMap<usize, u64> = HashMap::new();
    for rule in &policy.rules {
        let selected: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| rule.selects(&images[i]))
            .collect();
        let candidates: Vec<usize> = match rule.count {
            CountType::ImageCountMoreThan(n) => selected
                .iter()
                .copied()
                .skip(usize::try_from(n).unwrap_or(usize::MAX))
                .collect(),
            CountType::SinceImagePushedDays(d) => {
                let cutoff = now - d as f64 * SECS_PER_DAY;
                selected
                    .iter()
                    .copied()
                    .filter(|&i| images[i].pushed_at < cutoff)
                    .collect()
            }
        };
        for i in candidates {
            if !claimed.contains(&i) {
                expired.entry(i).or_insert(rule.priority);
            }
        }
        claimed.extend(selected);
    }
    let mut out: Vec<(usize, u64)> = expired.into_iter().collect();
    out.sort_by(|a, b| {
        images[a.0]
            .pushed_at
            .total_cmp(&images[b.0].pushed_at)
            .then_with(|| images[a.0].digest.cmp(&images[b.0].digest))
    });
    out
}

/// A repository's lifecycle policy as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    pub text: String,
    pub last_evaluated_at: Option<f64>,
}

/// One image a preview expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PreviewEntry {
    digest: String,
    tags: Vec<String>,
    pushed_at: f64,
    priority: u64,
}

/// The last preview of a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PreviewRecord {
    text: String,
    entries: Vec<PreviewEntry>,
}

impl Registry {
    /// The repository's images with their tags, excluding those a manifest list refers to and
    /// untagged images pushed within [`UNTAGGED_GRACE_SECS`] of `now`.
    async fn lifecycle_images(
        &self,
        region: &str,
        repo: &str,
        now: f64,
    ) -> Result<Vec<Image>, RegistryError> {
        let manifests = self.list_manifests(region, repo).await?;
        let tags = self.tags_by_digest(region, repo).await?;
        let children: HashSet<&Digest> = manifests.iter().flat_map(|m| &m.children).collect();
        Ok(manifests
            .iter()
            .filter(|m| !children.contains(&m.digest))
            .map(|m| Image {
                digest: m.digest.to_string(),
                tags: tags.get(&m.digest).cloned().unwrap_or_default(),
                pushed_at: m.pushed_at,
            })
            .filter(|i| !(i.tags.is_empty() && now - i.pushed_at < UNTAGGED_GRACE_SECS))
            .collect())
    }

    /// Applies the repository's lifecycle policy, if it has one; returns how many images it
    /// expired.
    pub(crate) async fn apply_lifecycle(
        &self,
        region: &str,
        repo: &str,
    ) -> Result<usize, RegistryError> {
        let key = policy_key(region, repo);
        let Some(rec) = self.store.get_typed::<PolicyRecord>(&key).await? else {
            return Ok(0);
        };
        let policy = parse_policy(&rec.value.text)?;
        let now = now_secs();
        let images = self.lifecycle_images(region, repo, now).await?;
        let mut expired = 0;
        for (i, priority) in evaluate(&policy, &images, now) {
            let Ok(d) = images[i].digest.parse::<Digest>() else {
                continue;
            };
            if !self.still_leading().await? {
                tracing::warn!(
                    repository = repo,
                    "lifecycle pass stopped: this replica no longer leads"
                );
                return Ok(expired);
            }
            match self.delete_manifest(region, repo, &d).await {
                Ok(_) => {
                    tracing::info!(repository = repo, digest = %d, rule_priority = priority, "image expired by lifecycle policy");
                    expired += 1;
                }
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Record the evaluation unless the policy changed meanwhile.
        let mut next = rec.value.clone();
        next.last_evaluated_at = Some(now);
        let txn = Txn::new()
            .require_revision(&key, rec.revision)
            .put(&key, enc(&key, &next)?);
        self.controller_store().commit(txn).await?;
        Ok(expired)
    }

    /// Applies every repository's lifecycle policy (the scheduled pass); returns how many
    /// images were expired.
    pub(crate) async fn apply_all_lifecycles(&self) -> Result<usize, RegistryError> {
        let mut total = 0;
        for region in self.regions().await? {
            let prefix = policy_prefix(&region);
            let mut start: Option<String> = None;
            loop {
                let page = self.store.scan(&prefix, start.as_deref(), 256).await?;
                for rec in &page.records {
                    let repo = &rec.key[prefix.len()..];
                    match self.apply_lifecycle(&region, repo).await {
                        Ok(n) => total += n,
                        Err(RegistryError::NameUnknown { .. }) => {}
                        Err(error) => {
                            tracing::warn!(%region, repository = repo, %error, "lifecycle policy evaluation failed; retrying next pass");
                        }
                    }
                }
                match page.next {
                    Some(n) => start = Some(n),
                    None => break,
                }
            }
        }
        Ok(total)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    lifecycle_policy_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewImageId {
    image_digest: Option<String>,
    image_tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewFilter {
    tag_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetPreviewInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_ids: Option<Vec<PreviewImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<PreviewFilter>,
}

/// The ECR API's check of a request's registry id and repository name.
pub(crate) type RepoNameCheck<'a> =
    dyn Fn(&Option<String>, &Option<String>) -> Result<String, RegistryError> + Sync + 'a;

/// The ECR lifecycle operations, dispatched from the ECR API.
pub(crate) struct LifecycleApi<'a> {
    pub reg: &'a Registry,
    pub ctx: &'a EcrContext,
    /// Checks the registry id and repository name (the ECR API's own checks).
    pub repo_name: &'a RepoNameCheck<'a>,
    pub to_aws: &'a (dyn Fn(RegistryError) -> AwsError + Sync),
}

impl LifecycleApi<'_> {
    fn account(&self) -> &str {
        &self.reg.cfg.account_id
    }

    fn policy_missing(&self, repo: &str) -> RegistryError {
        RegistryError::LifecyclePolicyNotFound(format!(
            "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{}'",
            self.account()
        ))
    }

    pub(crate) async fn handle(&self, op: &str, body: &[u8]) -> Result<Value, AwsError> {
        let r = match op {
            "PutLifecyclePolicy" => self.put(parse_body(body)?).await,
            "GetLifecyclePolicy" => self.get(parse_body(body)?, false).await,
            "DeleteLifecyclePolicy" => self.get(parse_body(body)?, true).await,
            "StartLifecyclePolicyPreview" => self.start_preview(parse_body(body)?).await,
            "GetLifecyclePolicyPreview" => self.get_preview(parse_body(body)?).await,
            other => Err(RegistryError::Internal(format!(
                "{other} is not a lifecycle operation"
            ))),
        };
        r.map_err(|e| (self.to_aws)(e))
    }

    async fn put(&self, i: PolicyInput) -> Result<Value, RegistryError> {
        let repo = (self.repo_name)(&i.registry_id, &i.repository_name)?;
        let text = i.lifecycle_policy_text.ok_or_else(|| {
            RegistryError::InvalidParameter("lifecyclePolicyText is required".to_owned())
        })?;
        self.reg.get_repo(&self.ctx.region, &repo).await?;
        parse_policy(&text)?;
        let key = policy_key(&self.ctx.region, &repo);
        let rec = PolicyRecord {
            text: text.clone(),
            last_evaluated_at: None,
        };
        self.reg
            .store
            .commit(Txn::new().put(&key, enc(&key, &rec)?))
            .await?;
        Ok(json!({
            "registryId": self.account(),
            "repositoryName": repo,
            "lifecyclePolicyText": text,
        }))
    }

    async fn get(&self, i: PolicyInput, delete: bool) -> Result<Value, RegistryError> {
        let repo = (self.repo_name)(&i.registry_id, &i.repository_name)?;
        self.reg.get_repo(&self.ctx.region, &repo).await?;
        let key = policy_key(&self.ctx.region, &repo);
        let Some(rec) = self.reg.store.get_typed::<PolicyRecord>(&key).await? else {
            return Err(self.policy_missing(&repo));
        };
        if delete {
            let txn = Txn::new().require_revision(&key, rec.revision).delete(&key);
            if !self.reg.store.commit(txn).await?.is_committed() {
                return Err(RegistryError::Contention(key));
            }
        }
        let mut out = json!({
            "registryId": self.account(),
            "repositoryName": repo,
            "lifecyclePolicyText": rec.value.text,
        });
        if let Some(at) = rec.value.last_evaluated_at {
            out["lastEvaluatedAt"] = json!(at);
        }
        Ok(out)
    }

    async fn start_preview(&self, i: PolicyInput) -> Result<Value, RegistryError> {
        let repo = (self.repo_name)(&i.registry_id, &i.repository_name)?;
        self.reg.get_repo(&self.ctx.region, &repo).await?;
        let text = match i.lifecycle_policy_text {
            Some(t) => t,
            None => match self
                .reg
                .store
                .get_typed::<PolicyRecord>(&policy_key(&self.ctx.region, &repo))
                .await?
            {
                Some(rec) => rec.value.text,
                None => return Err(self.policy_missing(&repo)),
            },
        };
        let policy = parse_policy(&text)?;
        let now = now_secs();
        let images = self
            .reg
            .lifecycle_images(&self.ctx.region, &repo, now)
            .await?;
        let entries = evaluate(&policy, &images, now)
            .into_iter()
            .map(|(i, priority)| PreviewEntry {
                digest: images[i].digest.clone(),
                tags: images[i].tags.clone(),
                pushed_at: images[i].pushed_at,
                priority,
            })
            .collect();
        let key = preview_key(&self.ctx.region, &repo);
        let rec = PreviewRecord {
            text: text.clone(),
            entries,
        };
        self.reg
            .store
            .commit(Txn::new().put(&key, enc(&key, &rec)?))
            .await?;
        // The preview is computed before answering, so it is already complete.
        Ok(json!({
            "registryId": self.account(),
            "repositoryName": repo,
            "lifecyclePolicyText": text,
            "status": "COMPLETE",
        }))
    }

    async fn get_preview(&self, i: GetPreviewInput) -> Result<Value, RegistryError> {
        let repo = (self.repo_name)(&i.registry_id, &i.repository_name)?;
        self.reg.get_repo(&self.ctx.region, &repo).await?;
        let max = match i.max_results {
            None => 100,
            Some(n) if (1..=100).contains(&n) => n as usize,
            Some(n) => {
                return Err(RegistryError::InvalidParameter(format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100"
                )));
            }
        };
        let Some(rec) = self
            .reg
            .store
            .get_typed::<PreviewRecord>(&preview_key(&self.ctx.region, &repo))
            .await?
        else {
            return Err(RegistryError::LifecyclePolicyPreviewNotFound(format!(
                "There is no lifecycle policy preview for the repository with name '{repo}' in the registry with id '{}'",
                self.account()
            )));
        };
        let rec = rec.value;
        let status = i
            .filter
            .as_ref()
            .and_then(|f| f.tag_status.as_deref())
            .unwrap_or("ANY");
        if !["TAGGED", "UNTAGGED", "ANY"].contains(&status) {
            return Err(RegistryError::InvalidParameter(format!(
                "1 validation error detected: Value '{status}' at 'filter.tagStatus' failed to satisfy constraint: Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]"
            )));
        }
        let total = rec.entries.len();
        let selected: Vec<&PreviewEntry> = rec
            .entries
            .iter()
            .filter(|e| match status {
                "TAGGED" => !e.tags.is_empty(),
                "UNTAGGED" => e.tags.is_empty(),
                _ => true,
            })
            .filter(|e| {
                i.image_ids.as_ref().is_none_or(|ids| {
                    ids.iter().any(|id| {
                        id.image_digest.as_deref().is_none_or(|d| d == e.digest)
                            && id
                                .image_tag
                                .as_deref()
                                .is_none_or(|t| e.tags.iter().any(|x| x == t))
                            && (id.image_digest.is_some() || id.image_tag.is_some())
                    })
                })
            })
            .collect();
        let from = match &i.next_token {
            None => 0,
            Some(t) => decode_token(t)
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n <= selected.len())
                .ok_or_else(|| {
                    RegistryError::InvalidParameter("Invalid parameter at 'nextToken'".to_owned())
                })?,
        };
        let page: Vec<Value> = selected
            .iter()
            .skip(from)
            .take(max)
            .map(|e| {
                let mut v = json!({
                    "imageDigest": e.digest,
                    "imagePushedAt": e.pushed_at,
                    "action": {"type": "EXPIRE"},
                    "appliedRulePriority": e.priority,
                });
                if !e.tags.is_empty() {
                    v["imageTags"] = json!(e.tags);
                }
                v
            })
            .collect();
        let mut out = json!({
            "registryId": self.account(),
            "repositoryName": repo,
            "lifecyclePolicyText": rec.text,
            "status": "COMPLETE",
            "previewResults": page,
            "summary": {"expiringImageTotalCount": total},
        });
        if from + page.len() < selected.len() {
            out["nextToken"] = json!(encode_token(&(from + page.len()).to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn img(i: usize, tags: &[&str], pushed_at: f64) -> Image {
        Image {
            digest: format!("sha256:{i:064}"),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at,
        }
    }

    fn policy(rules: Value) -> Policy {
        parse_policy(&json!({ "rules": rules }).to_string()).unwrap()
    }

    fn err(rules: Value) -> String {
        parse_policy(&json!({ "rules": rules }).to_string())
            .unwrap_err()
            .to_string()
    }

    fn keep_prod(n: u64) -> Value {
        json!([{"rulePriority": 1, "description": "keep prod",
                "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                              "countType": "imageCountMoreThan", "countNumber": n},
                "action": {"type": "expire"}}])
    }

    #[test]
    fn keeps_the_newest_prod_images() {
        let images: Vec<Image> = (0..10)
            .map(|i| img(i, &[&format!("prod-{i}")], 1000.0 + i as f64))
            .collect();
        let out = evaluate(&policy(keep_prod(3)), &images, 2000.0);
        let idx: Vec<usize> = out.iter().map(|e| e.0).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(out.iter().all(|e| e.1 == 1));
    }

    #[test]
    fn rules_never_expire_what_a_higher_priority_rule_matched() {
        // Rule 1 keeps 2 prod images; rule 2 (any) keeps 1 image overall.
        let p = policy(json!([
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
              "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "any",
              "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
        ]));
        let images = vec![
            img(0, &["prod-a"], 1.0),
            img(1, &["dev-a"], 2.0),
            img(2, &["prod-b"], 3.0),
            img(3, &[], 4.0),
            img(4, &["prod-c"], 5.0),
        ];
        let out: Vec<(usize, u64)> = evaluate(&p, &images, 10.0);
        // prod-a: rule 1 (third newest prod); dev-a and the untagged one: rule 2 (everything but
        // the newest image, which rule 1 claimed anyway); prod-b and prod-c are kept by rule 1.
        assert_eq!(out, vec![(0, 1), (1, 2), (3, 2)]);
    }

    #[test]
    fn since_image_pushed_counts_days() {
        let p = policy(
            json!([{"rulePriority": 5, "selection": {"tagStatus": "untagged",
            "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 2},
            "action": {"type": "expire"}}]),
        );
        let now = 10.0 * SECS_PER_DAY;
        let images = vec![
            img(0, &[], now - 3.0 * SECS_PER_DAY),
            img(1, &[], now - SECS_PER_DAY),
            img(2, &["v1"], now - 9.0 * SECS_PER_DAY),
        ];
        assert_eq!(evaluate(&p, &images, now), vec![(0, 5)]);
    }

    #[test]
    fn patterns_and_prefixes_must_all_match_some_tag() {
        let p = policy(
            json!([{"rulePriority": 1, "selection": {"tagStatus": "tagged",
            "tagPatternList": ["prod*", "*-stable"], "countType": "imageCountMoreThan",
            "countNumber": 1}, "action": {"type": "expire"}}]),
        );
        let r = &p.rules[0];
        assert!(r.selects(&img(0, &["prod-1", "v1-stable"], 0.0)));
        assert!(r.selects(&img(0, &["prod-stable"], 0.0)));
        assert!(!r.selects(&img(0, &["prod-1"], 0.0)));
        assert!(!r.selects(&img(0, &[], 0.0)));
    }

    #[test]
    fn validation_answers_as_ecr_words_it() {
        let prefix = "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: ";
        let e = err(
            json!([{"rulePriority": 1, "selection": {"tagStatus": "tagged",
            "countType": "imageCountMoreThan", "countNumber": 1}}]),
        );
        assert_eq!(
            e,
            format!("{prefix}object has missing required properties ([\"action\"])'")
        );
        let e = err(json!([{"rulePriority": 1, "selection": {}, "action": {"type": "expire"}}]));
        assert!(
            e.contains("object has missing required properties ([\"tagStatus\",\"countType\",\"countNumber\"])"),
            "{e}"
        );
        let sel =
            |s: Value| json!([{"rulePriority": 1, "selection": s, "action": {"type": "expire"}}]);
        let e = err(sel(
            json!({"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1}),
        ));
        assert!(
            e.contains("tagPrefixList or tagPatternList is required"),
            "{e}"
        );
        let e = err(sel(
            json!({"tagStatus": "all", "countType": "imageCountMoreThan", "countNumber": 1}),
        ));
        assert!(
            e.contains("instance value (\"all\") not found in enum (possible values: [\"tagged\",\"untagged\",\"any\"])"),
            "{e}"
        );
        let e = err(sel(
            json!({"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1}),
        ));
        assert!(e.contains("countUnit is required"), "{e}");
        let e = err(sel(
            json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 0}),
        ));
        assert!(
            e.contains(
                "numeric instance is lower than the required minimum (minimum: 1, found: 0)"
            ),
            "{e}"
        );
        let e = err(json!([
            {"rulePriority": 2, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
            {"rulePriority": 3, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
        ]));
        assert!(
            e.contains("tagStatus any must have the highest rulePriority"),
            "{e}"
        );
        let e = err(json!([
            {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
        ]));
        assert!(e.contains("rulePriority values must be unique"), "{e}");
        assert!(
            parse_policy("{")
                .unwrap_err()
                .to_string()
                .starts_with(prefix)
        );
        assert!(err(json!([])).contains("at least 1 elements"));
    }

    proptest! {
        /// Whatever the policy, an image is expired at most once, only by a rule that selects
        /// it, and an `imageCountMoreThan` rule never leaves fewer than its count of the images
        /// it selects (unless a higher-priority rule expired them).
        #[test]
        fn evaluation_invariants(
            tags in proptest::collection::vec(proptest::option::of(0u8..4), 0..40),
            keep in 1u64..5,
            second_keep in 1u64..5,
        ) {
            let images: Vec<Image> = tags
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Some(t) => img(i, &[&format!("t{t}-{i}")], i as f64),
                    None => img(i, &[], i as f64),
                })
                .collect();
            let p = policy(json!([
                {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["t1"],
                  "countType": "imageCountMoreThan", "countNumber": keep}, "action": {"type": "expire"}},
                {"rulePriority": 2, "selection": {"tagStatus": "any",
                  "countType": "imageCountMoreThan", "countNumber": second_keep}, "action": {"type": "expire"}},
            ]));
            let out = evaluate(&p, &images, 1e9);
            let mut seen = HashSet::new();
            for (i, prio) in &out {
                prop_assert!(seen.insert(*i));
                let rule = p.rules.iter().find(|r| r.priority == *prio).unwrap();
                prop_assert!(rule.selects(&images[*i]));
                if *prio == 2 {
                    prop_assert!(!p.rules[0].selects(&images[*i]));
                }
            }
            let t1: Vec<usize> = (0..images.len()).filter(|&i| p.rules[0].selects(&images[i])).collect();
            let kept_t1 = t1.iter().filter(|i| !seen.contains(i)).count() as u64;
            prop_assert_eq!(kept_t1, (t1.len() as u64).min(keep));
            // Expired images are the oldest of what a rule selects.
            for (i, prio) in &out {
                if *prio == 1 {
                    let newer = t1.iter().filter(|&&j| images[j].pushed_at > images[*i].pushed_at).count() as u64;
                    prop_assert!(newer >= keep);
                }
            }
        }
    }
}
