//! Requests signed by botocore (see `fixtures/gen_botocore_signed.py`) and captured on the wire
//! must verify, and any tampering must be rejected with the right `AuthError`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gantry_aws_proto::sigv4::{
    AuthError, CredentialProvider, VerifiedRequest, format_amz_date, parse_amz_date, verify,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Document {
    requests: Vec<Fixture>,
}

#[derive(Debug, Deserialize, Clone)]
struct Fixture {
    name: String,
    now: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    service: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body_base64: String,
    /// The `AuthError` this request must be rejected with; `None` for requests that verify.
    expect: Option<String>,
    /// Signed over `UNSIGNED-PAYLOAD` (S3-style presigning): any body goes.
    unsigned_payload: bool,
}

impl Fixture {
    fn parts(&self) -> http::request::Parts {
        let mut builder = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(()).expect("fixture request").into_parts().0
    }

    fn body(&self) -> Vec<u8> {
        STANDARD.decode(&self.body_base64).expect("base64 body")
    }

    fn now(&self) -> SystemTime {
        parse_amz_date(&self.now).expect("fixture time")
    }

    fn creds(&self) -> Keys {
        Keys {
            secrets: HashMap::from([(self.access_key_id.clone(), self.secret_access_key.clone())]),
            token: self.session_token.clone(),
        }
    }

    fn presigned(&self) -> bool {
        self.target.contains("X-Amz-Signature=")
    }

    fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<VerifiedRequest, AuthError> {
        verify(parts, body, &self.creds(), self.now())
    }

    fn header_mut(&mut self, name: &str) -> Option<&mut String> {
        self.headers
            .iter_mut()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// Credentials with an optional session token that must accompany the key.
#[derive(Debug)]
struct Keys {
    secrets: HashMap<String, String>,
    token: Option<String>,
}

impl CredentialProvider for Keys {
    fn secret_access_key(&self, access_key_id: &str) -> Option<String> {
        self.secrets.get(access_key_id).cloned()
    }

    fn accepts_session_token(&self, _access_key_id: &str, session_token: Option<&str>) -> bool {
        session_token == self.token.as_deref()
    }
}

fn all_fixtures() -> Vec<Fixture> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/botocore_signed.json"
    );
    let text = std::fs::read_to_string(path).expect("read fixture file");
    let document: Document = serde_json::from_str(&text).expect("parse fixture file");
    assert!(document.requests.len() >= 13, "fixture file is incomplete");
    document.requests
}

/// The requests that must verify.
fn fixtures() -> Vec<Fixture> {
    all_fixtures()
        .into_iter()
        .filter(|fixture| fixture.expect.is_none())
        .collect()
}

/// Changes one character of `text` at `index` into another character of the same class.
fn flip(text: &str, index: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] = match bytes[index] {
        b'9' => b'8',
        b'0'..=b'8' => bytes[index] + 1,
        b'z' | b'Z' => bytes[index] - 1,
        b'a'..=b'y' | b'A'..=b'Y' => bytes[index] + 1,
        _ => b'x',
    };
    String::from_utf8(bytes).expect("ascii flip")
}

#[test]
fn every_botocore_request_verifies() {
    for fixture in fixtures() {
        let verified = fixture
            .verify(&fixture.parts(), &fixture.body())
            .unwrap_or_else(|error| panic!("{}: {error:?}", fixture.name));
        assert_eq!(
            verified,
            VerifiedRequest {
                access_key_id: fixture.access_key_id.clone(),
                region: fixture.region.clone(),
                service: fixture.service.clone(),
            },
            "{}",
            fixture.name
        );
    }
}

#[test]
fn a_changed_body_fails() {
    for fixture in fixtures() {
        let mut body = fixture.body();
        if body.is_empty() {
            // Presigned GETs and empty bodies: appending a byte changes the payload hash.
            body.push(b' ');
        } else {
            body[0] ^= 0x01;
        }
        let result = fixture.verify(&fixture.parts(), &body);
        if fixture.unsigned_payload {
            assert!(result.is_ok(), "{}: {result:?}", fixture.name);
        } else if fixture.name == "signed_content_sha256" {
            // The signature covers the claimed hash, which no longer matches the body.
            assert_eq!(
                result,
                Err(AuthError::PayloadHashMismatch),
                "{}",
                fixture.name
            );
        } else {
            // Presigned URLs from botocore sign the (empty) body's hash, like header-form ones.
            assert_eq!(result, Err(AuthError::BadSignature), "{}", fixture.name);
        }
    }
}

#[test]
fn a_wrong_secret_fails() {
    for fixture in fixtures() {
        let mut wrong = fixture.clone();
        wrong.secret_access_key = flip(&fixture.secret_access_key, 3);
        assert_eq!(
            wrong.verify(&fixture.parts(), &fixture.body()),
            Err(AuthError::BadSignature),
            "{}",
            fixture.name
        );
    }
}

#[test]
fn an_unknown_access_key_fails() {
    for fixture in fixtures() {
        let mut unknown = fixture.clone();
        unknown.access_key_id = "AKIAUNKNOWN".to_owned();
        assert_eq!(
            unknown.verify(&fixture.parts(), &fixture.body()),
            Err(AuthError::UnknownAccessKey(fixture.access_key_id.clone())),
            "{}",
            fixture.name
        );
    }
}

#[test]
fn a_changed_signed_header_fails() {
    for fixture in fixtures() {
        let mut changed = fixture.clone();
        let host = changed.header_mut("host").expect("host header");
        *host = flip(host, 0);
        assert_eq!(
            fixture.verify(&changed.parts(), &fixture.body()),
            Err(AuthError::BadSignature),
            "{}: host",
            fixture.name
        );
        for name in ["x-amz-target", "content-type", "x-custom"] {
            let mut changed = fixture.clone();
            let Some(value) = changed.header_mut(name) else {
                continue;
            };
            *value = flip(value, value.len() - 1);
            assert_eq!(
                fixture.verify(&changed.parts(), &fixture.body()),
                Err(AuthError::BadSignature),
                "{}: {name}",
                fixture.name
            );
        }
    }
}

#[test]
fn an_unsigned_header_may_change() {
    for fixture in fixtures() {
        let mut changed = fixture.clone();
        let agent = changed.header_mut("user-agent").expect("user-agent header");
        agent.push_str(" extra/1");
        assert!(
            fixture.verify(&changed.parts(), &fixture.body()).is_ok(),
            "{}",
            fixture.name
        );
    }
}

#[test]
fn a_changed_date_fails() {
    for fixture in fixtures() {
        let mut changed = fixture.clone();
        // One second later: still inside the clock window, so only the signature can object.
        let later = format_amz_date(fixture.now() + Duration::from_secs(1));
        if fixture.presigned() {
            changed.target = fixture.target.replace(
                &format!("X-Amz-Date={}", fixture.now),
                &format!("X-Amz-Date={later}"),
            );
            assert_ne!(changed.target, fixture.target);
        } else {
            *changed.header_mut("x-amz-date").expect("x-amz-date") = later;
        }
        assert_eq!(
            fixture.verify(&changed.parts(), &fixture.body()),
            Err(AuthError::BadSignature),
            "{}",
            fixture.name
        );
    }
}

#[test]
fn a_changed_query_or_path_fails() {
    for fixture in fixtures() {
        let mut changed = fixture.clone();
        changed.target = if fixture.target.contains('?') {
            fixture.target.replacen('?', "?extra=1&", 1)
        } else {
            format!("{}x", fixture.target)
        };
        assert_eq!(
            fixture.verify(&changed.parts(), &fixture.body()),
            Err(AuthError::BadSignature),
            "{}",
            fixture.name
        );
    }
}

#[test]
fn clock_skew_beyond_five_minutes_is_expired() {
    let six_minutes = Duration::from_secs(6 * 60);
    for fixture in fixtures() {
        let parts = fixture.parts();
        let body = fixture.body();
        let creds = fixture.creds();
        let early = fixture.now() - six_minutes;
        assert_eq!(
            verify(&parts, &body, &creds, early),
            Err(AuthError::Expired {
                signed: fixture.now.clone(),
                now: format_amz_date(early),
            }),
            "{}: clock behind",
            fixture.name
        );
        let late = fixture.now() + six_minutes;
        let result = verify(&parts, &body, &creds, late);
        if fixture.presigned() {
            // Presigned URLs live for X-Amz-Expires (600 s or more here), not five minutes.
            assert!(result.is_ok(), "{}: {result:?}", fixture.name);
        } else {
            assert_eq!(
                result,
                Err(AuthError::Expired {
                    signed: fixture.now.clone(),
                    now: format_amz_date(late),
                }),
                "{}: clock ahead",
                fixture.name
            );
        }
        let edge = fixture.now() + Duration::from_secs(5 * 60);
        assert!(
            verify(&parts, &body, &creds, edge).is_ok(),
            "{}: edge",
            fixture.name
        );
    }
}

#[test]
fn presigned_urls_expire_after_x_amz_expires() {
    for fixture in fixtures().into_iter().filter(Fixture::presigned) {
        let expires: u64 = fixture
            .target
            .split('&')
            .find_map(|pair| pair.strip_prefix("X-Amz-Expires="))
            .and_then(|value| value.parse().ok())
            .expect("X-Amz-Expires");
        let parts = fixture.parts();
        let creds = fixture.creds();
        let last = fixture.now() + Duration::from_secs(expires);
        assert!(
            verify(&parts, b"", &creds, last).is_ok(),
            "{}",
            fixture.name
        );
        let after = last + Duration::from_secs(1);
        let error = verify(&parts, b"", &creds, after).expect_err("expired");
        assert_eq!(
            error,
            AuthError::PresignedExpired {
                expired_at: format_amz_date(last),
                now: format_amz_date(after),
            },
            "{}",
            fixture.name
        );
        assert_eq!(error.to_query_error().message, "Request has expired.");
    }
}

#[test]
fn session_tokens_are_checked_and_signed() {
    let with_token: Vec<Fixture> = fixtures()
        .into_iter()
        .filter(|fixture| fixture.session_token.is_some())
        .collect();
    assert!(with_token.len() >= 2);
    for fixture in with_token {
        // The provider refuses a different token.
        let mut other = fixture.clone();
        other.session_token = Some("another-token".to_owned());
        assert_eq!(
            other.verify(&fixture.parts(), &fixture.body()),
            Err(AuthError::InvalidSessionToken(
                fixture.access_key_id.clone()
            )),
            "{}",
            fixture.name
        );
        // Dropping the token from the request: the provider sees none, and the signature
        // (which covers the token) no longer matches either.
        let mut stripped = fixture.clone();
        stripped.session_token = None;
        if fixture.presigned() {
            let start = stripped
                .target
                .find("&X-Amz-Security-Token=")
                .expect("token param");
            let end = stripped.target[start + 1..]
                .find('&')
                .map_or(stripped.target.len(), |offset| start + 1 + offset);
            stripped.target.replace_range(start..end, "");
        } else {
            stripped
                .headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case("x-amz-security-token"));
        }
        assert_eq!(
            stripped.verify(&stripped.parts(), &fixture.body()),
            Err(AuthError::BadSignature),
            "{}",
            fixture.name
        );
    }
}

#[test]
fn expected_rejections_happen() {
    let rejected: Vec<Fixture> = all_fixtures()
        .into_iter()
        .filter(|fixture| fixture.expect.is_some())
        .collect();
    assert!(!rejected.is_empty());
    for fixture in rejected {
        let error = fixture
            .verify(&fixture.parts(), &fixture.body())
            .expect_err(&fixture.name);
        let expected = fixture.expect.as_deref().unwrap_or_default();
        assert!(
            format!("{error:?}").starts_with(expected),
            "{}: {error:?}, expected {expected}",
            fixture.name
        );
    }
}

#[test]
fn signed_requests_carry_scope_and_payload_variants() {
    let names: Vec<String> = all_fixtures().into_iter().map(|f| f.name).collect();
    for name in [
        "ecs_run_task",
        "sts_get_caller_identity",
        "get_unsorted_encoded_query",
        "post_special_path",
        "sts_presigned_get_caller_identity",
        "ecs_list_clusters_session_token",
        "signed_content_sha256",
        "s3_style_presigned_unsigned_payload",
    ] {
        assert!(names.iter().any(|n| n == name), "missing fixture {name}");
    }
}

#[test]
fn content_sha256_header_must_match_the_body() {
    let fixture = fixtures()
        .into_iter()
        .find(|fixture| fixture.name == "ecs_run_task")
        .expect("ecs_run_task fixture");
    // x-amz-content-sha256 is not signed here, so the canonical request uses its (wrong) value:
    // the signature fails before the hash check can.
    let mut with_hash = fixture.clone();
    with_hash
        .headers
        .push(("x-amz-content-sha256".to_owned(), "00".repeat(32)));
    assert_eq!(
        fixture.verify(&with_hash.parts(), &fixture.body()),
        Err(AuthError::BadSignature)
    );
}
