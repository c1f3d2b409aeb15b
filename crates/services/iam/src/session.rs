//! Temporary credentials: an `ASIA…` access key id, a secret, and a session token that carries
//! the whole session sealed by the [`Sealer`] (so verifying a session needs no store read, and a
//! token cannot be forged or altered without the master key).
//!
//! Token: `FQoG` followed by unpadded base64url of the sealed JSON [`SessionClaims`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Sealer;

const PURPOSE: &str = "sts-session-token:v1";
const TOKEN_PREFIX: &str = "FQoG";

/// Who a session acts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOf {
    /// `AssumeRole`: a session of role `role` (its name; looked up on every request, so a
    /// deleted role's sessions stop working).
    Role {
        role: String,
        role_id: String,
        session_name: String,
    },
    /// `GetSessionToken`: the user itself.
    User { user: String },
    /// `GetSessionToken` called with the root key.
    Root,
}

/// Everything a session token seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Milliseconds since the epoch.
    pub expires: u64,
    pub of: SessionOf,
    /// Session tags (`aws:PrincipalTag/*` for the session).
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// The inline session policy passed to AssumeRole.
    #[serde(default)]
    pub policy: Option<String>,
    /// Managed session policies (`PolicyArns`).
    #[serde(default)]
    pub policy_arns: Vec<String>,
    /// The access key id that created the session (GetAccessKeyInfo, CloudTrail-style).
    #[serde(default)]
    pub source_key: String,
}

/// Seals `claims` into a session token.
pub fn token(sealer: &dyn Sealer, claims: &SessionClaims) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let sealed = sealer.seal(PURPOSE, &json);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
}

/// The claims of a token made by [`token`]; `None` for anything else.
pub fn open(sealer: &dyn Sealer, token: &str) -> Option<SessionClaims> {
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    let sealed = URL_SAFE_NO_PAD.decode(body).ok()?;
    let json = sealer.open(PURPOSE, &sealed)?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Xor;
    impl Sealer for Xor {
        fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
            let mut out = purpose.as_bytes().to_vec();
            out.push(0);
            out.extend(plaintext.iter().map(|b| b ^ 0x5a));
            out
        }
        fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
            let rest = sealed
                .strip_prefix(purpose.as_bytes())?
                .strip_prefix(&[0])?;
            Some(rest.iter().map(|b| b ^ 0x5a).collect())
        }
    }

    #[test]
    fn a_token_opens_to_its_claims_and_nothing_else_opens() {
        let claims = SessionClaims {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "s".into(),
            expires: 42,
            of: SessionOf::Role {
                role: "r".into(),
                role_id: "AROA".into(),
                session_name: "s1".into(),
            },
            tags: vec![("team".into(), "a".into())],
            policy: None,
            policy_arns: vec![],
            source_key: "AKIA".into(),
        };
        let t = token(&Xor, &claims);
        assert!(t.starts_with("FQoG"));
        assert_eq!(open(&Xor, &t), Some(claims));
        assert_eq!(open(&Xor, "FQoGAAAA"), None);
        assert_eq!(open(&Xor, "nonsense"), None);
    }
}
