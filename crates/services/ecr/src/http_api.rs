//! The OCI distribution API under `/v2/`.
//!
//! Routes are parsed by hand from the end of the path, because repository names contain `/`:
//! `<name>/manifests/<ref>`, `<name>/blobs/<digest>`, `<name>/blobs/uploads/[<id>]`,
//! `<name>/tags/list`, `<name>/referrers/<digest>`.
//!
//! Repositories belong to a region, and so does every `/v2/` request ([`request_region`]): the
//! region of the `GetAuthorizationToken` password it authenticates with (a password is issued
//! in the region its call was signed for, as ECR's are), else the region an AWS-style host
//! names (`<account>.dkr.ecr.<region>.<domain>`), else the server's default region. A password
//! presented to a host of another region is refused.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::json;

use crate::Registry;
use crate::auth::{self, Principal, RegistryAction, authorize};
use crate::blob::ByteStream;
use crate::core::{PushMode, Reference};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::{self, OCI_INDEX};

const API_VERSION: &str = "registry/2.0";

/// What a client is told when the registry's disk is full.
const STORAGE_FULL_MESSAGE: &str = "storage is full: the registry has no space left to store \
     this, and nothing was stored; retry after space is freed on the registry's disk";

pub(crate) fn router(reg: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .with_state(reg)
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

impl Route {
    fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags {
            name: name.to_owned(),
        });
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let join = |k: usize| segs[..k].join("/");
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        return Some(if id.is_empty() {
            Route::UploadStart { name: join(n - 3) }
        } else {
            Route::Upload {
                name: join(n - 3),
                id: id.to_owned(),
            }
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Route::UploadStart { name: join(n - 2) });
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        return Some(Route::Manifest {
            name: join(n - 2),
            reference: segs[n - 1].to_owned(),
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        return Some(Route::Blob {
            name: join(n - 2),
            digest: segs[n - 1].to_owned(),
        });
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        return Some(Route::Referrers {
            name: join(n - 2),
            digest: segs[n - 1].to_owned(),
        });
    }
    None
}

/// Query parameters, decoded.
fn query_params(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn response(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = response(status, Body::from(v.to_string()));
    set(&mut r, "content-type", "application/json");
    r
}

/// The OCI error response for `err`.
fn error_response(err: &RegistryError, host: &str) -> Response {
    let message = if err.is_storage_full() {
        tracing::error!(error = %err, "registry request refused: storage is full");
        STORAGE_FULL_MESSAGE.to_owned()
    } else if err.is_store_unavailable() {
        tracing::error!(error = %err, "registry request refused: store unavailable");
        gantry_aws_proto::STORE_UNAVAILABLE_MESSAGE.to_owned()
    } else if err.is_internal() {
        tracing::error!(error = %err, "registry request failed");
        "internal error".to_owned()
    } else {
        tracing::debug!(error = %err, "registry request refused");
        err.to_string()
    };
    let body = json!({"errors": [{"code": err.oci_code(), "message": message, "detail": {}}]});
    let mut r = json_response(err.http_status(), &body);
    if matches!(err, RegistryError::Unauthorized) {
        set(
            &mut r,
            "www-authenticate",
            &format!("Basic realm=\"https://{host}/\",service=\"ecr.amazonaws.com\""),
        );
    }
    r
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    )
}

/// `Range: 0-<offset-1>` as distribution reports it (`0-0` for an empty session).
fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// The region a `/v2/` request acts in: the one its password was issued in, else the one its
/// host names, else `default`. A password of one region presented to another region's host is
/// refused, as ECR refuses it.
pub(crate) fn request_region(
    token_region: Option<&str>,
    host: &str,
    default: &str,
) -> Result<String, RegistryError> {
    let host_region = host_region(host);
    match (token_region, host_region) {
        (Some(t), Some(h)) if t != h => Err(RegistryError::Denied(format!(
            "the authorization token was issued in region {t} and cannot be used with the registry of region {h}"
        ))),
        (Some(t), _) => Ok(t.to_owned()),
        (None, Some(h)) => Ok(h.to_owned()),
        (None, None) => Ok(default.to_owned()),
    }
}

/// The region of an AWS-style registry host, `<account>.dkr.ecr.<region>.<domain>[:port]`.
fn host_region(host: &str) -> Option<&str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let labels: Vec<&str> = name.split('.').collect();
    match labels.as_slice() {
        [account, "dkr", "ecr", region, _domain, ..]
            if !account.is_empty()
                && account.bytes().all(|b| b.is_ascii_digit())
                && !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            Some(region)
        }
        _ => None,
    }
}

struct Ctx {
    reg: Arc<Registry>,
    /// The region the request acts in, known once it is authenticated.
    region: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    params: Vec<(String, String)>,
}

impl Ctx {
    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn authenticate(&self) -> Result<Principal, RegistryError> {
        let Some(h) = self.header(header::AUTHORIZATION) else {
            return Err(RegistryError::Unauthorized);
        };
        let (user, pass) = auth::parse_basic(h).ok_or(RegistryError::Unauthorized)?;
        if user == "AWS"
            && let Some(p) = self.reg.signer.verify(&pass, crate::unix_now())
        {
            return Ok(p);
        }
        match self.reg.creds.secret_access_key(&user) {
            Some(secret) if auth::ct_eq(&secret, &pass) => Ok(Principal {
                access_key_id: user,
                region: None,
            }),
            _ => Err(RegistryError::Unauthorized),
        }
    }
}

async fn handle(
    State(reg): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let params = query_params(&uri);
    let mut ctx = Ctx {
        region: reg.cfg.default_region.clone(),
        reg,
        method,
        uri,
        headers,
        params,
    };
    let mut resp = match route(&mut ctx, &host, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e, &host),
    };
    set(&mut resp, "docker-distribution-api-version", API_VERSION);
    resp
}

async fn route(ctx: &mut Ctx, host: &str, body: Body) -> Result<Response, RegistryError> {
    let path = percent_decode(ctx.uri.path());
    let parsed = parse_route(&path);
    let principal = match &parsed {
        // A presigned blob download (GetDownloadUrlForLayer): the query is the credential.
        Some(Route::Blob { name, digest })
            if (ctx.method == Method::GET || ctx.method == Method::HEAD)
                && ctx.params.iter().any(|(k, _)| k == auth::PRESIGN_SIGNATURE) =>
        {
            ctx.reg
                .signer
                .verify_download(&ctx.params, name, digest, crate::unix_now())
                .ok_or_else(|| {
                    RegistryError::Denied("the download URL is invalid or has expired".into())
                })?
        }
        _ => ctx.authenticate()?,
    };
    ctx.region = request_region(
        principal.region.as_deref(),
        host,
        &ctx.reg.cfg.default_region,
    )?;
    let ctx = &*ctx;
    let Some(route) = parsed else {
        return Err(RegistryError::Unsupported(format!(
            "no such endpoint {path}"
        )));
    };
    if let Some(name) = route.name()
        && !manifest::valid_repository_name(name)
    {
        return Err(RegistryError::NameInvalid(name.to_owned()));
    }
    let action = match ctx.method {
        Method::GET | Method::HEAD => RegistryAction::Pull,
        Method::DELETE => RegistryAction::Delete,
        _ => RegistryAction::Push,
    };
    authorize(&principal, action, route.name())?;
    if let Some(authorizer) = ctx.reg.authorizer.get() {
        let iam_action = match (&route, &ctx.method) {
            (Route::Base, _) => None,
            (Route::Catalog, _) => Some("ecr:DescribeRepositories"),
            (Route::Tags { .. }, _) => Some("ecr:ListImages"),
            (Route::Manifest { .. } | Route::Blob { .. }, &Method::DELETE) => {
                Some("ecr:BatchDeleteImage")
            }
            (Route::Manifest { .. }, &Method::GET | &Method::HEAD) => Some("ecr:BatchGetImage"),
            (Route::Manifest { .. }, _) => Some("ecr:PutImage"),
            (Route::Blob { .. }, &Method::HEAD) => Some("ecr:BatchCheckLayerAvailability"),
            (Route::Blob { .. }, _) => Some("ecr:GetDownloadUrlForLayer"),
            (Route::Referrers { .. }, _) => Some("ecr:BatchGetImage"),
            (Route::UploadStart { .. }, _) => Some("ecr:InitiateLayerUpload"),
            (Route::Upload { .. }, &Method::PUT) => Some("ecr:CompleteLayerUpload"),
            (Route::Upload { .. }, _) => Some("ecr:UploadLayerPart"),
        };
        if let Some(iam_action) = iam_action {
            authorizer
                .authorize(
                    &principal.access_key_id,
                    &ctx.region,
                    iam_action,
                    route.name(),
                )
                .await
                .map_err(RegistryError::Denied)?;
        }
        // A cross-repository mount reads the source repository.
        if let (Route::UploadStart { .. }, Some(from)) = (&route, param(&ctx.params, "from"))
            && param(&ctx.params, "mount").is_some()
        {
            authorizer
                .authorize(
                    &principal.access_key_id,
                    &ctx.region,
                    "ecr:BatchGetImage",
                    Some(from),
                )
                .await
                .map_err(RegistryError::Denied)?;
        }
    }
    tracing::debug!(method = %ctx.method, path = %path, principal = %principal.access_key_id, "registry request");
    let m = &ctx.method;
    match route {
        Route::Base if *m == Method::GET || *m == Method::HEAD => {
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        Route::Catalog => Err(RegistryError::Unsupported(
            "the catalog API is not offered".into(),
        )),
        Route::Tags { name } if *m == Method::GET => tags_list(ctx, &name).await,
        Route::Manifest { name, reference } => match *m {
            Method::GET | Method::HEAD => {
                manifest_get(ctx, &name, &reference, &principal.access_key_id).await
            }
            Method::PUT => manifest_put(ctx, &name, &reference, body).await,
            Method::DELETE => manifest_delete(ctx, &name, &reference).await,
            _ => Err(RegistryError::Unsupported(format!("{m} on a manifest"))),
        },
        Route::Blob { name, digest } => match *m {
            Method::GET | Method::HEAD => blob_get(ctx, &name, &digest).await,
            Method::DELETE => {
                let d: Digest = digest.parse()?;
                ctx.reg.get_repo(&ctx.region, &name).await?;
                ctx.reg.unlink_blob(&ctx.region, &name, &d).await?;
                Ok(response(StatusCode::ACCEPTED, Body::empty()))
            }
            _ => Err(RegistryError::Unsupported(format!("{m} on a blob"))),
        },
        Route::UploadStart { name } if *m == Method::POST => {
            upload_start(ctx, &name, &principal.access_key_id, body).await
        }
        Route::Upload { name, id } => match *m {
            Method::GET | Method::HEAD => {
                let offset = ctx.reg.upload_offset(&ctx.region, &name, &id).await?;
                Ok(upload_status_response(
                    StatusCode::NO_CONTENT,
                    &name,
                    &id,
                    offset,
                ))
            }
            Method::PATCH => upload_patch(ctx, &name, &id, body).await,
            Method::PUT => upload_put(ctx, &name, &id, body).await,
            Method::DELETE => {
                ctx.reg.upload_offset(&ctx.region, &name, &id).await?;
                ctx.reg.cancel_upload(&id).await?;
                Ok(response(StatusCode::NO_CONTENT, Body::empty()))
            }
            _ => Err(RegistryError::Unsupported(format!("{m} on an upload"))),
        },
        Route::Referrers { name, digest } if *m == Method::GET => {
            referrers(ctx, &name, &digest).await
        }
        _ => Err(RegistryError::Unsupported(format!("{m} {path}"))),
    }
}

async fn tags_list(ctx: &Ctx, name: &str) -> Result<Response, RegistryError> {
    ctx.reg.get_repo(&ctx.region, name).await?;
    let n = match param(&ctx.params, "n") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| RegistryError::InvalidParameter(format!("invalid n {v:?}")))?,
        ),
        None => None,
    };
    let last = param(&ctx.params, "last");
    let mut tags: Vec<String> = ctx
        .reg
        .list_tags(&ctx.region, name)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| last.is_none_or(|l| t.as_str() > l))
        .collect();
    let mut link = None;
    if let Some(n) = n
        && tags.len() > n
    {
        tags.truncate(n);
        if let Some(last_tag) = tags.last() {
            link = Some(format!(
                "</v2/{name}/tags/list?n={n}&last={last_tag}>; rel=\"next\""
            ));
        }
    }
    let mut r = json_response(StatusCode::OK, &json!({"name": name, "tags": tags}));
    if let Some(l) = link {
        set(&mut r, "link", &l);
    }
    Ok(r)
}

/// The IAM check of `action` on `repository` for `principal`, when identity is wired.
async fn iam_check(
    ctx: &Ctx,
    principal: &str,
    action: &str,
    repository: &str,
) -> Result<(), RegistryError> {
    match ctx.reg.authorizer.get() {
        Some(a) => a
            .authorize(principal, &ctx.region, action, Some(repository))
            .await
            .map_err(RegistryError::Denied),
        None => Ok(()),
    }
}

async fn manifest_get(
    ctx: &Ctx,
    name: &str,
    reference: &str,
    principal: &str,
) -> Result<Response, RegistryError> {
    let reference = Reference::parse(reference)?;
    let m = match ctx.reg.resolve(&ctx.region, name, &reference).await {
        Ok(m) => m,
        // A first pull under a pull through cache rule fetches the image from its upstream,
        // which ECR allows with ecr:BatchImportUpstreamImage (and ecr:CreateRepository when
        // the repository is created).
        Err(e @ (RegistryError::NameUnknown { .. } | RegistryError::ManifestUnknown(_))) => {
            if !ctx.reg.is_pull_through(&ctx.region, name).await? {
                return Err(e);
            }
            iam_check(ctx, principal, "ecr:BatchImportUpstreamImage", name).await?;
            let create = || iam_check(ctx, principal, "ecr:CreateRepository", name);
            match ctx
                .reg
                .pull_through(&ctx.region, name, &reference, create)
                .await?
            {
                Some(m) => m,
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let len = m.body.len();
    let body = if ctx.method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(m.body)
    };
    let mut r = response(StatusCode::OK, body);
    set(&mut r, "content-type", &m.media_type);
    set(&mut r, "content-length", &len.to_string());
    set(&mut r, "docker-content-digest", &m.digest.to_string());
    set(&mut r, "etag", &format!("\"{}\"", m.digest));
    Ok(r)
}

async fn manifest_put(
    ctx: &Ctx,
    name: &str,
    reference: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let reference = Reference::parse(reference)?;
    let bytes = axum::body::to_bytes(body, manifest::MAX_MANIFEST_BYTES + 1)
        .await
        .map_err(|e| {
            RegistryError::SizeInvalid(format!("manifest body unreadable or too large: {e}"))
        })?;
    let ct = ctx.header(header::CONTENT_TYPE);
    let out = ctx
        .reg
        .put_manifest(&ctx.region, name, &reference, ct, bytes, PushMode::Oci)
        .await?;
    let mut r = response(StatusCode::CREATED, Body::empty());
    set(
        &mut r,
        "location",
        &format!("/v2/{name}/manifests/{}", out.digest),
    );
    set(&mut r, "docker-content-digest", &out.digest.to_string());
    if let Some(s) = out.subject {
        set(&mut r, "oci-subject", &s.to_string());
    }
    Ok(r)
}

async fn manifest_delete(
    ctx: &Ctx,
    name: &str,
    reference: &str,
) -> Result<Response, RegistryError> {
    match Reference::parse(reference)? {
        Reference::Digest(d) => {
            ctx.reg.delete_manifest(&ctx.region, name, &d).await?;
        }
        Reference::Tag(t) => {
            ctx.reg.delete_tag(&ctx.region, name, &t, false).await?;
        }
    }
    Ok(response(StatusCode::ACCEPTED, Body::empty()))
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` against a blob of `size` bytes; `Err` when
/// unsatisfiable or malformed.
fn parse_range(h: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (s, "") => (s.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| ())?;
            let e: u64 = e.parse().map_err(|_| ())?;
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if start > end || start >= size {
        return Err(());
    }
    Ok((start, end))
}

async fn blob_get(ctx: &Ctx, name: &str, digest: &str) -> Result<Response, RegistryError> {
    let d: Digest = digest.parse()?;
    ctx.reg.get_repo(&ctx.region, name).await?;
    let Some(size) = ctx.reg.blob_in_repo(&ctx.region, name, &d).await? else {
        return Err(RegistryError::BlobUnknown(d.to_string()));
    };
    let range = match ctx.header(header::RANGE) {
        Some(h) => match parse_range(h, size) {
            Ok(r) => Some(r),
            Err(()) => {
                let mut r = response(StatusCode::RANGE_NOT_SATISFIABLE, Body::empty());
                set(&mut r, "content-range", &format!("bytes */{size}"));
                return Ok(r);
            }
        },
        None => None,
    };
    let (status, start, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if ctx.method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        Body::from_stream(ctx.reg.blobs.read(&d, start, len).await?)
    };
    let mut r = response(status, body);
    set(&mut r, "content-length", &len.to_string());
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "docker-content-digest", &d.to_string());
    set(&mut r, "accept-ranges", "bytes");
    set(&mut r, "etag", &format!("\"{d}\""));
    if let Some((s, e)) = range {
        set(&mut r, "content-range", &format!("bytes {s}-{e}/{size}"));
    }
    Ok(r)
}

fn upload_status_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    let mut r = response(status, Body::empty());
    set(
        &mut r,
        "location",
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set(&mut r, "range", &upload_range(offset));
    set(&mut r, "docker-upload-uuid", id);
    set(&mut r, "content-length", "0");
    r
}

fn blob_created(name: &str, d: &Digest) -> Response {
    let mut r = response(StatusCode::CREATED, Body::empty());
    set(&mut r, "location", &format!("/v2/{name}/blobs/{d}"));
    set(&mut r, "docker-content-digest", &d.to_string());
    set(&mut r, "content-length", "0");
    r
}

fn content_length(ctx: &Ctx) -> Option<u64> {
    ctx.header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse().ok())
}

async fn upload_start(
    ctx: &Ctx,
    name: &str,
    client: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    if let (Some(mount), Some(from)) = (param(&ctx.params, "mount"), param(&ctx.params, "from")) {
        let d: Digest = mount.parse()?;
        ctx.reg.get_repo(&ctx.region, name).await?;
        if manifest::valid_repository_name(from)
            && ctx.reg.get_repo(&ctx.region, from).await.is_ok()
            && let Some(_size) = ctx.reg.mount_blob(&ctx.region, name, from, &d).await?
        {
            return Ok(blob_created(name, &d));
        }
    }
    let digest = param(&ctx.params, "digest")
        .map(str::parse::<Digest>)
        .transpose()?;
    let id = ctx.reg.start_upload(&ctx.region, name, client).await?;
    match digest {
        Some(d) => {
            let result = async {
                ctx.reg
                    .append_upload(&id, 0, Some(0), body_stream(body))
                    .await?;
                ctx.reg.finish_upload(&ctx.region, name, &id, &d).await
            }
            .await;
            if let Err(e) = result {
                let _ = ctx.reg.cancel_upload(&id).await;
                return Err(e);
            }
            Ok(blob_created(name, &d))
        }
        None => Ok(upload_status_response(StatusCode::ACCEPTED, name, &id, 0)),
    }
}

/// Parses a chunk's `Content-Range: <start>-<end>` (with or without a `bytes ` prefix).
fn parse_content_range(h: &str) -> Option<(u64, u64)> {
    let h = h.trim();
    let h = h
        .strip_prefix("bytes ")
        .or_else(|| h.strip_prefix("bytes="))
        .unwrap_or(h);
    let h = h.split('/').next()?;
    let (a, b) = h.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Appends a request body to a session, honouring `Content-Range` when present.
async fn append_chunk(ctx: &Ctx, name: &str, id: &str, body: Body) -> Result<u64, RegistryError> {
    let offset = ctx.reg.upload_offset(&ctx.region, name, id).await?;
    let start = match ctx.header(header::CONTENT_RANGE) {
        Some(h) => {
            let (s, e) = parse_content_range(h).ok_or_else(|| {
                RegistryError::BlobUploadInvalid(format!("bad Content-Range {h:?}"))
            })?;
            if s != offset || e < s {
                return Err(RegistryError::RangeInvalid { offset, got: s });
            }
            if let Some(len) = content_length(ctx)
                && len != e - s + 1
            {
                return Err(RegistryError::RangeInvalid { offset, got: s });
            }
            Some(s)
        }
        None => None,
    };
    ctx.reg
        .append_upload(id, offset, start, body_stream(body))
        .await
}

async fn upload_patch(
    ctx: &Ctx,
    name: &str,
    id: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    match append_chunk(ctx, name, id, body).await {
        Ok(offset) => Ok(upload_status_response(
            StatusCode::ACCEPTED,
            name,
            id,
            offset,
        )),
        Err(RegistryError::RangeInvalid { offset, .. }) => {
            let err = RegistryError::RangeInvalid { offset, got: 0 };
            let mut r = error_response(&err, "");
            set(
                &mut r,
                "location",
                &format!("/v2/{name}/blobs/uploads/{id}"),
            );
            set(&mut r, "range", &upload_range(offset));
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

async fn upload_put(
    ctx: &Ctx,
    name: &str,
    id: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let Some(digest) = param(&ctx.params, "digest") else {
        return Err(RegistryError::BlobUploadInvalid(
            "missing digest parameter".into(),
        ));
    };
    let d: Digest = digest.parse()?;
    ctx.reg.upload_offset(&ctx.region, name, id).await?;
    if content_length(ctx) != Some(0) {
        append_chunk(ctx, name, id, body).await?;
    }
    ctx.reg.finish_upload(&ctx.region, name, id, &d).await?;
    Ok(blob_created(name, &d))
}

async fn referrers(ctx: &Ctx, name: &str, digest: &str) -> Result<Response, RegistryError> {
    let d: Digest = digest.parse()?;
    let filter = param(&ctx.params, "artifactType");
    let manifests = ctx.reg.referrers(&ctx.region, name, &d, filter).await?;
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut r = json_response(StatusCode::OK, &body);
    set(&mut r, "content-type", OCI_INDEX);
    if filter.is_some() {
        set(&mut r, "oci-filters-applied", "artifactType");
    }
    Ok(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_request_acts_in_its_password_region_then_its_host_region_then_the_default() {
        let host = "123456789012.dkr.ecr.us-west-2.localhost.localstack.cloud:4510";
        assert_eq!(host_region(host), Some("us-west-2"));
        assert_eq!(
            host_region("000000000000.dkr.ecr.eu-central-1.amazonaws.com"),
            Some("eu-central-1")
        );
        assert_eq!(host_region("127.0.0.1:5000"), None);
        assert_eq!(host_region("localhost"), None);
        assert_eq!(host_region("registry.dkr.ecr.us-west-2.example"), None);

        assert_eq!(
            request_region(Some("eu-west-1"), "127.0.0.1:5000", "us-east-1").unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            request_region(None, host, "us-east-1").unwrap(),
            "us-west-2"
        );
        assert_eq!(
            request_region(Some("us-west-2"), host, "us-east-1").unwrap(),
            "us-west-2"
        );
        assert_eq!(
            request_region(None, "localhost:5000", "us-east-1").unwrap(),
            "us-east-1"
        );
        assert!(matches!(
            request_region(Some("us-east-1"), host, "us-east-1"),
            Err(RegistryError::Denied(_))
        ));
    }

    #[test]
    fn routes_with_slashes_in_names() {
        assert_eq!(parse_route("/v2/"), Some(Route::Base));
        assert_eq!(
            parse_route("/v2/a/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/b".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart { name: "a".into() })
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/x-1"),
            Some(Route::Upload {
                name: "a".into(),
                id: "x-1".into()
            })
        );
        assert_eq!(
            parse_route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a".into(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            parse_route("/v2/x/y/tags/list"),
            Some(Route::Tags { name: "x/y".into() })
        );
        assert_eq!(parse_route("/v2/nothing"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Ok((50, 99)));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert_eq!(parse_content_range("10-19"), Some((10, 19)));
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
    }
}
