//! ECS's references to Secrets Manager values: a container's `secrets[].valueFrom`,
//! `logConfiguration.secretOptions[].valueFrom` and `repositoryCredentials.credentialsParameter`.
//!
//! The forms ECS accepts: the secret's name (same Region), its full ARN, or the full ARN followed
//! by `:json-key:version-stage:version-id` (each part may be empty):
//! `arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCdEf:password::`.

use serde_json::Value;

/// A parsed `valueFrom` naming a Secrets Manager secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    /// What GetSecretValue's `SecretId` receives: the name or the ARN without the suffixes.
    pub secret_id: String,
    /// The JSON key whose value is wanted; `None` for the whole value.
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

impl SecretReference {
    /// Whether `value_from` names a Secrets Manager secret by ARN (anything else is an SSM
    /// parameter name or ARN, or a secret name).
    pub fn is_secrets_manager_arn(value_from: &str) -> bool {
        value_from.starts_with("arn:") && value_from.split(':').nth(2) == Some("secretsmanager")
    }

    /// Parses `value_from`; `None` for an ARN that is not a secret ARN.
    pub fn parse(value_from: &str) -> Option<Self> {
        if !value_from.starts_with("arn:") {
            return Some(Self {
                secret_id: value_from.to_owned(),
                json_key: None,
                version_stage: None,
                version_id: None,
            });
        }
        let parts: Vec<&str> = value_from.split(':').collect();
        if parts.len() < 7
            || parts[2] != "secretsmanager"
            || parts[5] != "secret"
            || parts.len() > 10
        {
            return None;
        }
        let part = |i: usize| {
            parts
                .get(i)
                .filter(|p| !p.is_empty())
                .map(|p| (*p).to_owned())
        };
        Some(Self {
            secret_id: parts[..7].join(":"),
            json_key: part(7),
            version_stage: part(8),
            version_id: part(9),
        })
    }
}

/// The value of `key` in a secret holding a JSON object, as ECS puts it in the environment: a
/// string as is, anything else as its JSON text. `None` when the secret is not a JSON object or
/// lacks the key.
pub fn json_key_value(secret: &str, key: &str) -> Option<String> {
    let v: Value = serde_json::from_str(secret).ok()?;
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/db-AbCdEf";

    #[test]
    fn value_from_takes_every_form_ecs_documents() {
        let whole = SecretReference::parse(ARN).unwrap();
        assert_eq!(whole.secret_id, ARN);
        assert_eq!(whole.json_key, None);
        let key = SecretReference::parse(&format!("{ARN}:password::")).unwrap();
        assert_eq!(key.json_key.as_deref(), Some("password"));
        assert_eq!((key.version_stage, key.version_id), (None, None));
        let full = SecretReference::parse(&format!(
            "{ARN}:user:AWSPREVIOUS:01234567-89ab-cdef-0123-456789abcdef"
        ))
        .unwrap();
        assert_eq!(full.version_stage.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(
            full.version_id.as_deref(),
            Some("01234567-89ab-cdef-0123-456789abcdef")
        );
        let stage_only = SecretReference::parse(&format!("{ARN}::AWSCURRENT:")).unwrap();
        assert_eq!(stage_only.json_key, None);
        assert_eq!(
            SecretReference::parse("prod/db").unwrap().secret_id,
            "prod/db"
        );
        assert!(SecretReference::parse("arn:aws:ssm:us-east-1:1:parameter/x").is_none());
        assert!(SecretReference::is_secrets_manager_arn(ARN));
        assert!(!SecretReference::is_secrets_manager_arn("/app/db"));
    }

    #[test]
    fn json_keys_give_strings_as_is_and_other_values_as_json() {
        let s = r#"{"user":"admin","port":5432,"tls":{"on":true}}"#;
        assert_eq!(json_key_value(s, "user").unwrap(), "admin");
        assert_eq!(json_key_value(s, "port").unwrap(), "5432");
        assert_eq!(json_key_value(s, "tls").unwrap(), r#"{"on":true}"#);
        assert_eq!(json_key_value(s, "missing"), None);
        assert_eq!(json_key_value("plain", "user"), None);
    }
}
