//! GetRandomPassword: characters drawn with the thread's CSPRNG.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::SmError;
use crate::wire::parse;

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRandomPasswordRequest {
    password_length: Option<i64>,
    exclude_characters: Option<String>,
    #[serde(default)]
    exclude_numbers: bool,
    #[serde(default)]
    exclude_punctuation: bool,
    #[serde(default)]
    exclude_uppercase: bool,
    #[serde(default)]
    exclude_lowercase: bool,
    #[serde(default)]
    include_space: bool,
    require_each_included_type: Option<bool>,
}

/// The character classes a request allows, each without the excluded characters.
fn classes(req: &GetRandomPasswordRequest) -> Vec<Vec<char>> {
    let excluded = req.exclude_characters.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |on: bool, chars: &mut dyn Iterator<Item = char>| {
        if on {
            let class: Vec<char> = chars.filter(|c| !excluded.contains(*c)).collect();
            if !class.is_empty() {
                out.push(class);
            }
        }
    };
    add(!req.exclude_lowercase, &mut ('a'..='z'));
    add(!req.exclude_uppercase, &mut ('A'..='Z'));
    add(!req.exclude_numbers, &mut ('0'..='9'));
    add(!req.exclude_punctuation, &mut PUNCTUATION.chars());
    add(req.include_space, &mut std::iter::once(' '));
    out
}

pub(crate) fn get_random_password(body: &[u8]) -> Result<Value, SmError> {
    let req: GetRandomPasswordRequest = parse(body)?;
    let len = req.password_length.unwrap_or(32);
    if !(1..=4096).contains(&len) {
        return Err(SmError::Validation(format!(
            "1 validation error detected: Value '{len}' at 'passwordLength' failed to satisfy constraint: Member must have value between 1 and 4096"
        )));
    }
    if req
        .exclude_characters
        .as_ref()
        .is_some_and(|e| e.chars().count() > 4096)
    {
        return Err(SmError::Validation(
            "1 validation error detected: Value at 'excludeCharacters' failed to satisfy constraint: Member must have length less than or equal to 4096".to_owned(),
        ));
    }
    let len = len as usize;
    let classes = classes(&req);
    if classes.is_empty() {
        return Err(SmError::invalid(
            "The password can't be generated: every character type is excluded.",
        ));
    }
    let require_each = req.require_each_included_type.unwrap_or(true);
    if require_each && len < classes.len() {
        return Err(SmError::invalid(
            "Password length is too short based on the required types.",
        ));
    }
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    let mut rng = rand::rng();
    let mut password: Vec<char> = Vec::with_capacity(len);
    if require_each {
        for class in &classes {
            password.push(class[rng.random_range(0..class.len())]);
        }
    }
    while password.len() < len {
        password.push(all[rng.random_range(0..all.len())]);
    }
    password.shuffle(&mut rng);
    Ok(json!({"RandomPassword": password.into_iter().collect::<String>()}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn password(body: &str) -> String {
        get_random_password(body.as_bytes()).unwrap()["RandomPassword"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn passwords_have_the_requested_length_and_every_type() {
        for _ in 0..50 {
            let p = password("{}");
            assert_eq!(p.chars().count(), 32);
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| PUNCTUATION.contains(c)));
        }
    }

    #[test]
    fn exclusions_are_honoured() {
        for _ in 0..50 {
            let p = password(
                r#"{"PasswordLength": 64, "ExcludePunctuation": true, "ExcludeCharacters": "abc", "IncludeSpace": true}"#,
            );
            assert_eq!(p.len(), 64);
            assert!(!p.contains(['a', 'b', 'c']));
            assert!(!p.chars().any(|c| PUNCTUATION.contains(c)));
            assert!(p.contains(' '));
        }
    }

    #[test]
    fn impossible_requests_are_refused() {
        assert!(get_random_password(br#"{"PasswordLength": 2}"#).is_err());
        assert!(get_random_password(br#"{"PasswordLength": 0}"#).is_err());
        assert!(
            get_random_password(
                br#"{"ExcludeNumbers":true,"ExcludePunctuation":true,"ExcludeUppercase":true,"ExcludeLowercase":true}"#
            )
            .is_err()
        );
    }
}
