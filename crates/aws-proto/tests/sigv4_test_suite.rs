//! AWS's SigV4 test suite (the `aws-signing-test-suite/v4` vectors shipped inside the
//! `aws-sigv4` crate's sources) driven through `verify`, in header form and presigned form.
//!
//! The vectors are signer tests; a verifier sees what went over the wire, so some cannot apply:
//! * request targets that are not valid on the wire (a raw space in the path: real clients
//!   percent-encode it, which changes the canonical request);
//! * `"normalize": false` vectors (S3 semantics: no path normalisation; Gantry serves no S3);
//! * vectors without a `context.json` (no credentials to verify with);
//! * obs-folded (multi-line) header values are unfolded with a space, as RFC 9112 tells a
//!   recipient to do, before they reach `verify`.
//!
//! The suite is read from the cargo registry. When it cannot be found the test says so loudly;
//! with `GANTRY_REQUIRE_FIXTURES` set it fails instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gantry_aws_proto::sigv4::{AuthError, VerifiedRequest, verify};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Context {
    credentials: ContextCredentials,
    normalize: bool,
    region: String,
    service: String,
    timestamp: String,
    #[serde(default)]
    omit_session_token: bool,
}

#[derive(Debug, Deserialize)]
struct ContextCredentials {
    access_key_id: String,
    secret_access_key: String,
}

fn suite_dir() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    let mut candidates = Vec::new();
    for index in std::fs::read_dir(cargo_home.join("registry/src"))
        .ok()?
        .flatten()
    {
        for krate in std::fs::read_dir(index.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = krate.file_name().to_string_lossy().into_owned();
            let suite = krate.path().join("aws-signing-test-suite/v4");
            if name.starts_with("aws-sigv4-1.") && suite.is_dir() {
                candidates.push(suite);
            }
        }
    }
    candidates.sort();
    candidates.pop()
}

/// Parses a `*-signed-request.txt`: request line, `Name:value` headers (continuation lines
/// unfolded), a blank line, the body.
fn parse_request(text: &str) -> Option<(http::request::Parts, Vec<u8>)> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next()?;
    let (method, rest) = request_line.split_once(' ')?;
    let target = rest.strip_suffix(" HTTP/1.1")?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut()?;
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':')?;
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    let uri: http::Uri = target.parse().ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), http::HeaderValue::from_str(value).ok()?);
    }
    Some((
        builder.body(()).ok()?.into_parts().0,
        body.as_bytes().to_vec(),
    ))
}

#[derive(Debug, Default)]
struct Tally {
    verified: Vec<String>,
    not_on_the_wire: Vec<String>,
    unnormalized: Vec<String>,
    no_context: Vec<String>,
}

#[test]
fn aws_sigv4_test_suite_verifies() {
    let Some(dir) = suite_dir() else {
        let message = "SKIPPED: aws-signing-test-suite not found under $CARGO_HOME/registry/src \
                       (aws-sigv4 sources); set up the cargo registry to run this test";
        assert!(
            std::env::var_os("GANTRY_REQUIRE_FIXTURES").is_none(),
            "{message}"
        );
        eprintln!("{message}");
        return;
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("suite dir")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    let mut tally = Tally::default();
    for case in entries {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let Ok(context) = std::fs::read_to_string(case.join("context.json")) else {
            tally.no_context.push(name);
            continue;
        };
        let context: Context = serde_json::from_str(&context).expect("context.json");
        if !context.normalize {
            tally.unnormalized.push(name);
            continue;
        }
        let now = SystemTime::from(
            time::OffsetDateTime::parse(
                &context.timestamp,
                &time::format_description::well_known::Rfc3339,
            )
            .expect("timestamp"),
        );
        let creds = HashMap::from([(
            context.credentials.access_key_id.clone(),
            context.credentials.secret_access_key.clone(),
        )]);
        let expected = VerifiedRequest {
            access_key_id: context.credentials.access_key_id.clone(),
            region: context.region.clone(),
            service: context.service.clone(),
        };
        for form in ["header", "query"] {
            let text = std::fs::read_to_string(case.join(format!("{form}-signed-request.txt")))
                .expect("signed request");
            let Some((parts, body)) = parse_request(&text) else {
                tally.not_on_the_wire.push(format!("{name} ({form})"));
                continue;
            };
            let result = verify(&parts, &body, &creds, now);
            if form == "query" && context.omit_session_token {
                // The token was appended to the URL after signing. A server cannot know that and
                // signs every query parameter but X-Amz-Signature, so this must not verify.
                assert_eq!(result, Err(AuthError::BadSignature), "{name} ({form})");
            } else {
                assert_eq!(result, Ok(expected.clone()), "{name} ({form})");
            }
            tally.verified.push(format!("{name} ({form})"));
        }
    }
    eprintln!("{tally:#?}");
    assert!(
        tally.verified.len() >= 50,
        "too few vectors verified: {tally:#?}"
    );
    for must in [
        "get-vanilla (header)",
        "get-vanilla (query)",
        "post-x-www-form-urlencoded (header)",
        "post-x-www-form-urlencoded (query)",
        "get-vanilla-query-order-key-case (header)",
        "get-vanilla-query-order-encoded (header)",
        "get-header-key-duplicate (header)",
        "get-header-value-multiline (header)",
        "get-vanilla-with-session-token (header)",
        "get-vanilla-with-session-token (query)",
        "post-sts-header-before (header)",
        "post-sts-header-after (header)",
        "get-slashes-normalized (header)",
        "get-relative-relative-normalized (header)",
    ] {
        assert!(
            tally.verified.iter().any(|v| v == must),
            "{must} not verified: {tally:#?}"
        );
    }
}

#[test]
fn get_vanilla_signature_is_checked_byte_for_byte() {
    let creds = HashMap::from([(
        "AKIDEXAMPLE".to_owned(),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
    )]);
    let now = gantry_aws_proto::sigv4::parse_amz_date("20150830T123600Z").expect("date");
    let request = |signature: &str| {
        parse_request(&format!(
            "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n\
             Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/\
             aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}\n\n"
        ))
        .expect("request")
        .0
    };
    let good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    assert!(verify(&request(good), b"", &creds, now).is_ok());
    for index in 0..good.len() {
        let mut bad = good.as_bytes().to_vec();
        bad[index] = if bad[index] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert_eq!(
            verify(&request(&bad), b"", &creds, now),
            Err(AuthError::BadSignature),
            "flipped hex digit {index}"
        );
    }
    assert_eq!(
        verify(&request(&good[..63]), b"", &creds, now),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        verify(&request(&good.to_uppercase()), b"", &creds, now),
        Err(AuthError::BadSignature)
    );
}
