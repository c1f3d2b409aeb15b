//! What to place: the task's needs, its group, constraints and strategies.

use crate::cql::{self, CqlError, Expr};
use crate::view::TaskDemand;

/// Most placement strategies in one request (ECS's limit).
pub const MAX_STRATEGIES: usize = 5;
/// Most placement constraints, task definition and request together (ECS's limit).
pub const MAX_CONSTRAINTS: usize = 10;
/// Longest `memberOf` expression (ECS's limit).
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// A placement request or policy is not valid. The API answers `InvalidParameterException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// A `memberOf` expression does not parse.
    #[error(transparent)]
    InvalidExpression(#[from] CqlError),
    /// A `memberOf` expression is longer than [`MAX_EXPRESSION_LEN`] characters.
    #[error("the memberOf expression has {0} characters; the limit is 2000")]
    ExpressionTooLong(usize),
    /// `memberOf` without an expression.
    #[error("a memberOf placement constraint needs an expression")]
    MissingExpression,
    /// `distinctInstance` with an expression.
    #[error("an expression is not allowed with a distinctInstance placement constraint")]
    UnexpectedExpression,
    /// A constraint type other than `distinctInstance` / `memberOf`.
    #[error("unknown placement constraint type '{0}'; valid types: distinctInstance, memberOf")]
    UnknownConstraintType(String),
    /// A strategy type other than `binpack` / `spread` / `random`.
    #[error("unknown placement strategy type '{0}'; valid types: random, spread, binpack")]
    UnknownStrategyType(String),
    /// A field the strategy does not know (`binpack` takes `cpu` or `memory`).
    #[error("invalid field '{field}' for the {kind} placement strategy")]
    InvalidStrategyField { kind: &'static str, field: String },
    /// `binpack` or `spread` without a field.
    #[error("the {0} placement strategy needs a field")]
    MissingStrategyField(&'static str),
    /// More than [`MAX_STRATEGIES`] strategies.
    #[error("{0} placement strategies given; the limit is 5")]
    TooManyStrategies(usize),
    /// More than [`MAX_CONSTRAINTS`] constraints.
    #[error("{0} placement constraints given; the limit is 10")]
    TooManyConstraints(usize),
}

/// A binding rule about the instance.
#[derive(Debug, Clone, PartialEq)]
pub enum PlacementConstraint {
    /// Each task of the group on a different instance.
    DistinctInstance,
    /// The instance must satisfy the CQL expression.
    MemberOf(Expr),
}

impl PlacementConstraint {
    /// From the wire shape `{type, expression}`.
    pub fn from_wire(kind: &str, expression: Option<&str>) -> Result<Self, PlacementError> {
        let expression = expression.filter(|e| !e.trim().is_empty());
        match kind {
            "distinctInstance" => match expression {
                None => Ok(Self::DistinctInstance),
                Some(_) => Err(PlacementError::UnexpectedExpression),
            },
            "memberOf" => {
                let e = expression.ok_or(PlacementError::MissingExpression)?;
                let len = e.chars().count();
                if len > MAX_EXPRESSION_LEN {
                    return Err(PlacementError::ExpressionTooLong(len));
                }
                Ok(Self::MemberOf(cql::parse_cached(e)?))
            }
            other => Err(PlacementError::UnknownConstraintType(other.to_owned())),
        }
    }
}

/// What `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinpackField {
    Cpu,
    Memory,
}

/// What `spread` balances over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpreadField {
    /// `instanceId` (alias `host`): one value per instance.
    InstanceId,
    /// `attribute:<name>`; instances without the attribute share one value.
    Attribute(String),
}

/// A best-effort ordering of the feasible instances.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PlacementStrategy {
    /// Least remaining amount of the field first.
    Binpack(BinpackField),
    /// Fewest tasks of the group on the field's value first.
    Spread(SpreadField),
    /// Uniformly among what is left (later strategies have nothing to break).
    Random,
}

impl PlacementStrategy {
    /// From the wire shape `{type, field}`. Types are ECS's (`binpack`, `spread`, `random`);
    /// fields are matched without regard to case except for attribute names.
    pub fn from_wire(kind: &str, field: Option<&str>) -> Result<Self, PlacementError> {
        let field = field.map(str::trim).filter(|f| !f.is_empty());
        match kind {
            "random" => Ok(Self::Random),
            "binpack" => match field.map(str::to_ascii_lowercase).as_deref() {
                Some("cpu") => Ok(Self::Binpack(BinpackField::Cpu)),
                Some("memory") => Ok(Self::Binpack(BinpackField::Memory)),
                Some(_) => Err(PlacementError::InvalidStrategyField {
                    kind: "binpack",
                    field: field.unwrap_or_default().to_owned(),
                }),
                None => Err(PlacementError::MissingStrategyField("binpack")),
            },
            "spread" => {
                let f = field.ok_or(PlacementError::MissingStrategyField("spread"))?;
                if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") {
                    return Ok(Self::Spread(SpreadField::InstanceId));
                }
                match f.get(..10) {
                    Some(p) if p.eq_ignore_ascii_case("attribute:") && f.len() > 10 => {
                        Ok(Self::Spread(SpreadField::Attribute(f[10..].to_owned())))
                    }
                    _ => Err(PlacementError::InvalidStrategyField {
                        kind: "spread",
                        field: f.to_owned(),
                    }),
                }
            }
            other => Err(PlacementError::UnknownStrategyType(other.to_owned())),
        }
    }

    /// The strategy a service without one uses: spread over
    /// `attribute:ecs.availability-zone`, then, inside the zone, over instances (fewest tasks of
    /// the service first), as the ECS service scheduler documents.
    pub fn service_default() -> Vec<Self> {
        vec![
            Self::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned())),
            Self::Spread(SpreadField::InstanceId),
        ]
    }
}

/// Checks ECS's limits on the number of constraints (task definition plus request) and
/// strategies.
pub fn check_limits(constraints: usize, strategies: usize) -> Result<(), PlacementError> {
    if constraints > MAX_CONSTRAINTS {
        return Err(PlacementError::TooManyConstraints(constraints));
    }
    if strategies > MAX_STRATEGIES {
        return Err(PlacementError::TooManyStrategies(strategies));
    }
    Ok(())
}

/// An attribute the task definition requires (`requiresAttributes`); instances without it fail
/// with `ATTRIBUTE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequiredAttribute {
    pub name: String,
    /// When set, the attribute must have exactly this value.
    pub value: Option<String>,
}

impl RequiredAttribute {
    /// An attribute required by name only (`ecs.capability.task-eni`, ...).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: None,
        }
    }
}

/// `count` identical tasks to place.
#[derive(Debug, Clone, Default)]
pub struct PlacementRequest {
    /// What each task needs.
    pub task: TaskDemand,
    /// How many tasks.
    pub count: u32,
    /// The task group: `family:<family>` by default for RunTask, `service:<name>` for services.
    /// `distinctInstance` and `spread` count the tasks of this group.
    pub group: String,
    /// Binding: from the task definition and the request together.
    pub constraints: Vec<PlacementConstraint>,
    /// Ordering, applied in order, later ones breaking ties. Empty means random (standalone
    /// tasks); services pass [`PlacementStrategy::service_default`] when they have none.
    pub strategy: Vec<PlacementStrategy>,
    /// The task definition's `requiresAttributes`.
    pub requires_attributes: Vec<RequiredAttribute>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn constraints_from_wire() {
        assert_eq!(
            PlacementConstraint::from_wire("distinctInstance", None).unwrap(),
            PlacementConstraint::DistinctInstance
        );
        assert_eq!(
            PlacementConstraint::from_wire("distinctInstance", Some("attribute:a exists")),
            Err(PlacementError::UnexpectedExpression)
        );
        assert_eq!(
            PlacementConstraint::from_wire("memberOf", None),
            Err(PlacementError::MissingExpression)
        );
        assert!(matches!(
            PlacementConstraint::from_wire("memberOf", Some("attribute:stack == prod")),
            Ok(PlacementConstraint::MemberOf(_))
        ));
        let err =
            PlacementConstraint::from_wire("memberOf", Some("attribute:stack prod")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid expression at position 16: expected an operator"
        );
        let long = format!("attribute:a in [{}]", "x,".repeat(1000));
        assert!(matches!(
            PlacementConstraint::from_wire("memberOf", Some(&long)),
            Err(PlacementError::ExpressionTooLong(_))
        ));
        assert!(matches!(
            PlacementConstraint::from_wire("sameInstance", None),
            Err(PlacementError::UnknownConstraintType(_))
        ));
    }

    #[test]
    fn strategies_from_wire() {
        let s = |k, f| PlacementStrategy::from_wire(k, f);
        assert_eq!(
            s("binpack", Some("memory")).unwrap(),
            PlacementStrategy::Binpack(BinpackField::Memory)
        );
        assert_eq!(
            s("binpack", Some("CPU")).unwrap(),
            PlacementStrategy::Binpack(BinpackField::Cpu)
        );
        assert_eq!(
            s("spread", Some("host")).unwrap(),
            PlacementStrategy::Spread(SpreadField::InstanceId)
        );
        assert_eq!(
            s("spread", Some("instanceId")).unwrap(),
            PlacementStrategy::Spread(SpreadField::InstanceId)
        );
        assert_eq!(
            s("spread", Some("attribute:ecs.availability-zone")).unwrap(),
            PlacementStrategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()))
        );
        assert_eq!(s("random", None).unwrap(), PlacementStrategy::Random);
        assert!(s("binpack", Some("disk")).is_err());
        assert!(s("binpack", None).is_err());
        assert!(s("spread", Some("zone")).is_err());
        assert!(s("spread", None).is_err());
        assert!(s("pack", None).is_err());
        assert!(check_limits(10, 5).is_ok());
        assert!(check_limits(11, 0).is_err());
        assert!(check_limits(0, 6).is_err());
    }
}
