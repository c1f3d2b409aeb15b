//! Opaque `nextToken` values and the two timestamp encodings of the AWS protocols.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Marks a token as one of ours, so that a token from elsewhere (or a stale format) is
/// recognised as invalid instead of being misread.
const TOKEN_PREFIX: &str = "gantry.v1:";

/// Wraps a position in a listing (an id, a key, an offset) into an opaque `nextToken`:
/// unpadded base64url.
pub fn encode_token(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{position}"))
}

/// The position inside a token made by [`encode_token`]; `None` for anything else (callers
/// answer `InvalidParameterException`).
pub fn decode_token(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(TOKEN_PREFIX).map(str::to_owned)
}

/// Epoch seconds with millisecond precision, the timestamp format of `awsJson1.1` bodies.
/// Times before 1970 are negative.
pub fn epoch_seconds(t: SystemTime) -> f64 {
    let millis = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_millis()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_millis()).unwrap_or(i128::MAX),
    };
    // Exact for any date within ±285,000 years, far beyond what we store.
    #[allow(clippy::cast_precision_loss)]
    let seconds = millis as f64 / 1000.0;
    seconds
}

/// ISO-8601 in UTC with milliseconds (`2026-11-21T23:40:12.123Z`), the timestamp format of
/// `awsQuery` responses.
pub fn iso8601(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_round_trip() {
        for position in ["", "arn:aws:ecs:us-east-1:0:task/c/abc", "42", "ü/+=?&"] {
            let token = encode_token(position);
            assert!(!token.contains('='), "no padding: {token}");
            assert!(
                !token.contains('+') && !token.contains('/'),
                "url-safe: {token}"
            );
            assert_eq!(decode_token(&token).as_deref(), Some(position));
        }
    }

    #[test]
    fn foreign_tokens_are_rejected() {
        assert_eq!(decode_token("not base64 !"), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("other:42")), None);
        assert_eq!(decode_token(""), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), None);
    }

    #[test]
    fn epoch_seconds_keeps_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(epoch_seconds(t), 1_700_000_000.123);
        assert_eq!(epoch_seconds(UNIX_EPOCH), 0.0);
        assert_eq!(
            epoch_seconds(UNIX_EPOCH - Duration::from_millis(1500)),
            -1.5
        );
    }

    #[test]
    fn iso8601_is_utc_with_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_304_412_123);
        assert_eq!(iso8601(t), "2026-11-21T23:40:12.123Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
