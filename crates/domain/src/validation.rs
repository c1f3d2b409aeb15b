//! Validation errors shared by the domain types.

/// A request value that ECS would refuse. `Client` and `InvalidParameter` mirror the two exception
/// kinds ECS uses for bad input; the message names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// ECS answers `ClientException` (e.g. task definition content).
    #[error("{0}")]
    Client(String),
    /// ECS answers `InvalidParameterException` (e.g. names, limits, filters).
    #[error("{0}")]
    InvalidParameter(String),
}

impl ValidationError {
    pub fn client(msg: impl Into<String>) -> Self {
        Self::Client(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }
}

/// Whether `s` is 1..=max characters of ASCII letters, digits, `-` and `_` (ECS names).
pub fn is_ecs_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_names_are_letters_digits_dash_underscore() {
        assert!(is_ecs_name("web-app_1", 255));
        assert!(!is_ecs_name("", 255));
        assert!(!is_ecs_name("a b", 255));
        assert!(!is_ecs_name("a:b", 255));
        assert!(!is_ecs_name(&"a".repeat(256), 255));
    }
}
