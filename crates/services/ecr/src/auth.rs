//! Authentication of registry clients and the one authorization point.
//!
//! Clients authenticate with HTTP Basic: user `AWS` and a password minted by
//! `GetAuthorizationToken` (an HMAC, keyed with the server-wide token secret, over the principal,
//! the region the token was issued in and an expiry 12 hours out, so it survives restarts), or an
//! access key id and its secret. A password names its region, as ECR's do: the `/v2/` requests
//! it authenticates act on that region's repositories.
//! Every route then calls [`authorize`] with the principal, the action and the repository; the
//! IAM work plugs policies in there.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq;

use crate::error::RegistryError;

/// How long a minted registry password is valid, as on ECR.
pub const TOKEN_VALIDITY_SECS: u64 = 12 * 3600;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The access key id the caller authenticated as (directly, or through a minted token).
    pub access_key_id: String,
    /// The region a minted password or presigned URL was issued in (`None`: an access key, or
    /// a password minted before passwords named a region).
    pub region: Option<String>,
}

/// What a caller wants to do to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryAction {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, push manifests and tags.
    Push,
    /// Delete manifests, tags or blobs.
    Delete,
    /// Create, delete or reconfigure repositories (ECR API).
    Manage,
    /// Read repository metadata (ECR API describe/list).
    Describe,
}

impl RegistryAction {
    /// The closest IAM action, for logs and for the policy check to come.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryAction::Pull => "ecr:BatchGetImage",
            RegistryAction::Push => "ecr:PutImage",
            RegistryAction::Delete => "ecr:BatchDeleteImage",
            RegistryAction::Manage => "ecr:CreateRepository",
            RegistryAction::Describe => "ecr:DescribeRepositories",
        }
    }
}

/// The single authorization decision for every registry route and ECR operation.
/// Any authenticated principal is allowed for now; IAM policies plug in here.
pub fn authorize(
    principal: &Principal,
    action: RegistryAction,
    repository: Option<&str>,
) -> Result<(), RegistryError> {
    tracing::trace!(
        principal = %principal.access_key_id,
        action = action.as_str(),
        repository = repository.unwrap_or("*"),
        "authorized"
    );
    Ok(())
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    #[allow(clippy::expect_used)]
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Query parameters of a presigned blob download.
pub const PRESIGN_CREDENTIAL: &str = "X-Gantry-Credential";
pub const PRESIGN_EXPIRES: &str = "X-Gantry-Expires";
pub const PRESIGN_SIGNATURE: &str = "X-Gantry-Signature";
pub const PRESIGN_REGION: &str = "X-Gantry-Region";

/// Mints and checks registry passwords.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    /// The MAC of a password: without a region, the form passwords had before they named one.
    fn mac(&self, principal: &str, region: Option<&str>, expires_at: u64) -> Vec<u8> {
        let msg = match region {
            Some(region) => format!("gantry-registry-v2\n{principal}\n{region}\n{expires_at}"),
            None => format!("gantry-registry-v1\n{principal}\n{expires_at}"),
        };
        hmac_sha256(&self.secret, msg.as_bytes())
    }

    /// A password for `principal` in `region` valid until `expires_at` (epoch seconds):
    /// `<principal>.<region>.<expiry>.<mac>`. It contains only `[A-Za-z0-9._-]`, never `:`.
    pub fn mint(&self, principal: &str, region: &str, expires_at: u64) -> String {
        format!(
            "{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(principal),
            URL_SAFE_NO_PAD.encode(region),
            expires_at,
            URL_SAFE_NO_PAD.encode(self.mac(principal, Some(region), expires_at))
        )
    }

    /// The `authorizationToken` of `GetAuthorizationToken`: `base64("AWS:" + password)`.
    pub fn authorization_token(&self, principal: &str, region: &str, expires_at: u64) -> String {
        STANDARD.encode(format!("AWS:{}", self.mint(principal, region, expires_at)))
    }

    fn download_mac(
        &self,
        principal: &str,
        region: &str,
        repository: &str,
        digest: &str,
        expires_at: u64,
    ) -> Vec<u8> {
        hmac_sha256(
            &self.secret,
            format!(
                "gantry-layer-download-v2\n{principal}\n{region}\n{repository}\n{digest}\n{expires_at}"
            )
            .as_bytes(),
        )
    }

    /// The query string of a presigned download of one blob of one repository, valid until
    /// `expires_at` for anyone holding it (what `GetDownloadUrlForLayer` answers; ECR's URL is a
    /// presigned S3 URL). Only `[A-Za-z0-9._=&-]`: no escaping needed.
    pub fn presign_download(
        &self,
        principal: &str,
        region: &str,
        repository: &str,
        digest: &str,
        expires_at: u64,
    ) -> String {
        format!(
            "{PRESIGN_CREDENTIAL}={}&{PRESIGN_EXPIRES}={expires_at}&{PRESIGN_REGION}={}&{PRESIGN_SIGNATURE}={}",
            URL_SAFE_NO_PAD.encode(principal),
            URL_SAFE_NO_PAD.encode(region),
            URL_SAFE_NO_PAD
                .encode(self.download_mac(principal, region, repository, digest, expires_at))
        )
    }

    /// The principal a presigned download (`params`, the request's query) was signed for, when
    /// the signature covers this repository and digest and has not expired at `now`.
    pub fn verify_download(
        &self,
        params: &[(String, String)],
        repository: &str,
        digest: &str,
        now: u64,
    ) -> Option<Principal> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let principal =
            String::from_utf8(URL_SAFE_NO_PAD.decode(get(PRESIGN_CREDENTIAL)?).ok()?).ok()?;
        let region = String::from_utf8(URL_SAFE_NO_PAD.decode(get(PRESIGN_REGION)?).ok()?).ok()?;
        let expires_at: u64 = get(PRESIGN_EXPIRES)?.parse().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(get(PRESIGN_SIGNATURE)?).ok()?;
        let expected = self.download_mac(&principal, &region, repository, digest, expires_at);
        let ok: bool = expected.ct_eq(&mac).into();
        (ok && now < expires_at).then_some(Principal {
            access_key_id: principal,
            region: Some(region),
        })
    }

    /// The principal a password was minted for, when it is authentic and not expired at `now`.
    /// Passwords minted before they named a region (three parts) still verify, with no region.
    pub fn verify(&self, password: &str, now: u64) -> Option<Principal> {
        let parts: Vec<&str> = password.split('.').collect();
        let (p, region, e, m) = match parts.as_slice() {
            [p, e, m] => (*p, None, *e, *m),
            [p, r, e, m] => (
                *p,
                Some(String::from_utf8(URL_SAFE_NO_PAD.decode(r).ok()?).ok()?),
                *e,
                *m,
            ),
            _ => return None,
        };
        let principal = String::from_utf8(URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
        let expires_at: u64 = e.parse().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(m).ok()?;
        let expected = self.mac(&principal, region.as_deref(), expires_at);
        let ok: bool = expected.ct_eq(&mac).into();
        (ok && now < expires_at).then_some(Principal {
            access_key_id: principal,
            region,
        })
    }
}

/// Splits an `Authorization: Basic ...` header into user and password.
pub(crate) fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Constant-time string equality.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_roundtrip_and_expiry() {
        let s = TokenSigner::new(b"secret".to_vec());
        let pw = s.mint("AKIDEXAMPLE", "us-west-2", 1000);
        assert!(!pw.contains(':'));
        let p = s.verify(&pw, 999).unwrap();
        assert_eq!(p.access_key_id, "AKIDEXAMPLE");
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        assert!(s.verify(&pw, 1000).is_none());
        let other = TokenSigner::new(b"other".to_vec());
        assert!(other.verify(&pw, 10).is_none());
        let tampered = pw.replacen("1000", "2000", 1);
        assert!(s.verify(&tampered, 10).is_none());
    }

    #[test]
    fn a_password_names_its_region_and_one_without_a_region_still_verifies() {
        let s = TokenSigner::new(b"secret".to_vec());
        let pw = s.mint("AK", "eu-west-1", 1000);
        let parts: Vec<&str> = pw.split('.').collect();
        // Another region in the same password fails the MAC.
        let moved = format!(
            "{}.{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("us-east-1"),
            parts[2],
            parts[3]
        );
        assert!(s.verify(&moved, 10).is_none());
        // The form before regions: principal, expiry, MAC over both.
        let old = format!(
            "{}.1000.{}",
            URL_SAFE_NO_PAD.encode("AK"),
            URL_SAFE_NO_PAD.encode(s.mac("AK", None, 1000))
        );
        let p = s.verify(&old, 10).unwrap();
        assert_eq!((p.access_key_id.as_str(), p.region), ("AK", None));
    }

    #[test]
    fn presigned_downloads_cover_one_blob_of_one_repository_until_they_expire() {
        let s = TokenSigner::new(b"secret".to_vec());
        let q = s.presign_download("AKID", "us-east-1", "team/app", "sha256:ab", 1000);
        let params: Vec<(String, String)> = q
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let p = s
            .verify_download(&params, "team/app", "sha256:ab", 999)
            .unwrap();
        assert_eq!(p.access_key_id, "AKID");
        assert_eq!(p.region.as_deref(), Some("us-east-1"));
        assert!(
            s.verify_download(&params, "team/app", "sha256:ab", 1000)
                .is_none()
        );
        assert!(
            s.verify_download(&params, "team/other", "sha256:ab", 10)
                .is_none()
        );
        assert!(
            s.verify_download(&params, "team/app", "sha256:cd", 10)
                .is_none()
        );
        assert!(
            TokenSigner::new(b"other".to_vec())
                .verify_download(&params, "team/app", "sha256:ab", 10)
                .is_none()
        );
        let mut later = params.clone();
        later[1].1 = "2000".into();
        let mut elsewhere = params.clone();
        elsewhere[2].1 = URL_SAFE_NO_PAD.encode("us-west-2");
        assert!(
            s.verify_download(&elsewhere, "team/app", "sha256:ab", 10)
                .is_none()
        );
        assert!(
            s.verify_download(&later, "team/app", "sha256:ab", 10)
                .is_none()
        );
        assert!(
            s.verify_download(&params[..3], "team/app", "sha256:ab", 10)
                .is_none()
        );
    }

    #[test]
    fn authorization_token_decodes_like_the_cli() {
        let s = TokenSigner::new(b"k".to_vec());
        let tok = s.authorization_token("AK", "us-east-1", 5);
        let decoded = String::from_utf8(STANDARD.decode(tok).unwrap()).unwrap();
        let parts: Vec<&str> = decoded.split(':').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "AWS");
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn parses_basic() {
        let h = format!("Basic {}", STANDARD.encode("AWS:pw"));
        assert_eq!(parse_basic(&h), Some(("AWS".into(), "pw".into())));
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
