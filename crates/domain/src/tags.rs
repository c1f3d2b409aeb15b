//! Resource tags and the limits ECS puts on them.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// The most tags a resource may carry.
pub const MAX_TAGS: usize = 50;

/// Checks tags as ECS does: keys 1-128 characters, values at most 256, no `aws:` prefix, at most
/// 50 per resource.
pub fn validate_tags(tags: &[Tag]) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::invalid(format!(
            "The number of tags ({}) exceeds the limit of {MAX_TAGS} tags per resource.",
            tags.len()
        )));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(ValidationError::invalid(format!(
                "Tag key '{}' must be between 1 and 128 characters long.",
                t.key
            )));
        }
        if t.value.chars().count() > 256 {
            return Err(ValidationError::invalid(format!(
                "Tag value for key '{}' must be at most 256 characters long.",
                t.key
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ValidationError::invalid(format!(
                "Tag key '{}' uses the reserved prefix 'aws:'.",
                t.key
            )));
        }
    }
    Ok(())
}

/// Merges `new` into `existing`: same keys are overwritten, others appended in order.
pub fn merge_tags(existing: &mut Vec<Tag>, new: &[Tag]) {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value.clone(),
            None => existing.push(t.clone()),
        }
    }
}

/// Removes the tags with the given keys.
pub fn remove_tags(existing: &mut Vec<Tag>, keys: &[String]) {
    existing.retain(|t| !keys.contains(&t.key));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn merging_overwrites_same_keys_and_keeps_order() {
        let mut t = vec![tag("a", "1"), tag("b", "2")];
        merge_tags(&mut t, &[tag("b", "3"), tag("c", "4")]);
        assert_eq!(t, vec![tag("a", "1"), tag("b", "3"), tag("c", "4")]);
        remove_tags(&mut t, &["a".into()]);
        assert_eq!(t, vec![tag("b", "3"), tag("c", "4")]);
    }

    #[test]
    fn reserved_prefix_and_limits_are_refused() {
        assert!(validate_tags(&[tag("aws:x", "1")]).is_err());
        assert!(validate_tags(&[tag("", "1")]).is_err());
        let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "")).collect();
        assert!(validate_tags(&many).is_err());
        assert!(validate_tags(&many[..50]).is_ok());
    }
}
