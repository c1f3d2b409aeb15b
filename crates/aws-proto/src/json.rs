//! The `awsJson1.1` protocol: every operation is `POST /` with `X-Amz-Target:
//! <targetPrefix>.<Operation>` and a JSON body; responses are JSON with `x-amzn-RequestId`.

use axum::body::Body;
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{AwsError, REQUEST_ID_HEADER, set_header};

/// Content type of `awsJson1.1` requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Name of the header that selects the operation.
pub const TARGET_HEADER: &str = "x-amz-target";

/// Splits an `X-Amz-Target` value into the service's target prefix and the operation name:
/// `"AmazonEC2ContainerServiceV20141113.RunTask"` gives
/// `Some(("AmazonEC2ContainerServiceV20141113", "RunTask"))`. The split is at the last dot
/// (operation names never contain one); `None` when either side would be empty.
pub fn parse_target(value: &str) -> Option<(&str, &str)> {
    let (prefix, operation) = value.rsplit_once('.')?;
    if prefix.is_empty() || operation.is_empty() {
        return None;
    }
    Some((prefix, operation))
}

/// A `200` response carrying `body` as JSON, with `x-amzn-RequestId`.
pub fn ok_response(body: &serde_json::Value, request_id: &str) -> Response {
    ok_response_serialized(body.to_string().into_bytes(), request_id)
}

/// [`ok_response`] for a body already serialized as JSON.
pub fn ok_response_serialized(body: Vec<u8>, request_id: &str) -> Response {
    let mut response = Response::new(Body::from(body));
    set_header(&mut response, "content-type", CONTENT_TYPE);
    set_header(&mut response, REQUEST_ID_HEADER, request_id);
    response
}

/// Parses a request body into `T` as [`parse_body`] does, but a mismatch never quotes the
/// offending value (it may be a secret, a plaintext or a private key): the error names only its
/// position.
pub fn parse_body_unquoted<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => {
                "request body does not match the operation's input"
            }
            _ => "malformed JSON in request body",
        };
        AwsError::client(
            "SerializationException",
            format!("{what} at line {} column {}", e.line(), e.column()),
        )
    })
}

/// A string member read from a request body, borrowed from the body when it holds no escape
/// (serde reads a `Cow<str>` nested in a sequence or map always as an owned copy; this type
/// borrows there too, so a list of 100 ARNs costs no allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub std::borrow::Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Parses a request body into `T`.
///
/// An empty (or all-whitespace) body counts as `{}`, as AWS does for operations whose input has
/// no required members. Unknown members are ignored (as long as `T` does not deny them). Errors
/// are `400 SerializationException`: malformed JSON says what is wrong and where, a value of
/// the wrong type for a member carries serde's description of the mismatch.
/// `T` may borrow strings from `body` (`Cow<'a, str>` with `#[serde(borrow)]`).
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AwsError> {
    let body: &'a [u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        let message = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON in request body: {error}")
            }
            serde_json::error::Category::Io => format!("could not read request body: {error}"),
            serde_json::error::Category::Data => {
                format!("request body does not match the operation's input: {error}")
            }
        };
        AwsError::client("SerializationException", message)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_borrows_unless_the_string_holds_an_escape() {
        #[derive(Debug, serde::Deserialize)]
        struct In<'a> {
            #[serde(borrow)]
            tasks: Vec<super::Text<'a>>,
        }
        let body = br#"{"tasks":["arn:aws:ecs:r:1:task/c/a","b\u0041"]}"#;
        let parsed: In<'_> = super::parse_body(body).unwrap();
        assert!(matches!(
            parsed.tasks[0].0,
            std::borrow::Cow::Borrowed("arn:aws:ecs:r:1:task/c/a")
        ));
        assert!(matches!(&parsed.tasks[1].0, std::borrow::Cow::Owned(s) if s == "bA"));
        let wrong: Result<In<'_>, _> = super::parse_body(br#"{"tasks":[1]}"#);
        assert!(
            wrong
                .unwrap_err()
                .message
                .contains("invalid type: integer `1`, expected a string")
        );
    }

    #[test]
    fn unquoted_parse_errors_name_the_position_only() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct In {
            #[serde(rename = "SecretString")]
            s: Option<u32>,
        }
        let e = parse_body_unquoted::<In>(br#"{"SecretString":"hunter2-pass"}"#).unwrap_err();
        assert_eq!(e.code, "SerializationException");
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        assert!(parse_body_unquoted::<In>(b"  ").is_ok());
    }

    use super::*;
    use http_body_util::BodyExt;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase")]
    struct RunTaskInput {
        cluster: Option<String>,
        count: Option<u32>,
        #[serde(default)]
        overrides: Overrides,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase")]
    struct Overrides {
        #[serde(default)]
        container_overrides: Vec<ContainerOverride>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct ContainerOverride {
        name: String,
        cpu: Option<u32>,
    }

    #[test]
    fn parse_target_splits_prefix_and_operation() {
        assert_eq!(
            parse_target("AmazonEC2ContainerServiceV20141113.RunTask"),
            Some(("AmazonEC2ContainerServiceV20141113", "RunTask"))
        );
        assert_eq!(
            parse_target("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"),
            Some((
                "AmazonEC2ContainerRegistry_V20150921",
                "GetAuthorizationToken"
            ))
        );
        assert_eq!(
            parse_target("secretsmanager.GetSecretValue"),
            Some(("secretsmanager", "GetSecretValue"))
        );
        assert_eq!(parse_target("RunTask"), None);
        assert_eq!(parse_target(".RunTask"), None);
        assert_eq!(parse_target("AmazonEC2ContainerServiceV20141113."), None);
        assert_eq!(parse_target(""), None);
    }

    #[test]
    fn empty_body_counts_as_empty_object() {
        let input: RunTaskInput = parse_body(b"").expect("empty body");
        assert_eq!(input, RunTaskInput::default());
        let input: RunTaskInput = parse_body(b"  \n").expect("whitespace body");
        assert_eq!(input, RunTaskInput::default());
    }

    #[test]
    fn unknown_members_are_ignored() {
        let input: RunTaskInput =
            parse_body(br#"{"cluster":"c1","futureMember":{"x":[1,2]},"count":2}"#).expect("ok");
        assert_eq!(input.cluster.as_deref(), Some("c1"));
        assert_eq!(input.count, Some(2));
    }

    #[test]
    fn malformed_json_is_serialization_exception() {
        let error = parse_body::<RunTaskInput>(br#"{"cluster": "#).expect_err("malformed");
        assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "SerializationException");
        assert!(
            error.message.contains("malformed JSON"),
            "{}",
            error.message
        );
        let error = parse_body::<RunTaskInput>(b"not json").expect_err("malformed");
        assert_eq!(error.code, "SerializationException");
    }

    #[test]
    fn wrong_member_type_is_serialization_exception() {
        let error = parse_body::<RunTaskInput>(br#"{"count":"two"}"#).expect_err("wrong type");
        assert_eq!(error.code, "SerializationException");
        assert!(error.message.contains("invalid type"), "{}", error.message);
        let error = parse_body::<RunTaskInput>(
            br#"{"overrides":{"containerOverrides":[{"name":"web","cpu":true}]}}"#,
        )
        .expect_err("wrong nested type");
        assert_eq!(error.code, "SerializationException");
        assert!(error.message.contains("boolean"), "{}", error.message);
        let error = parse_body::<RunTaskInput>(b"[1]").expect_err("not an object");
        assert_eq!(error.code, "SerializationException");
    }

    #[tokio::test]
    async fn ok_response_is_json_with_request_id() {
        let response = ok_response(&serde_json::json!({"tasks": [], "failures": []}), "rid");
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
        assert_eq!(response.headers()["x-amzn-requestid"], "rid");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body, serde_json::json!({"tasks": [], "failures": []}));
    }
}
