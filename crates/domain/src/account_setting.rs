//! ECS account settings (`PutAccountSetting`, `PutAccountSettingDefault`,
//! `ListAccountSettings`, `DeleteAccountSetting`): per principal (the root, an IAM user, an IAM
//! role) and per region. A principal's effective value of a setting is its own, else the
//! root's (the account default), else the value the platform starts with.
//!
//! Which values can be set is Gantry's behaviour, not a wish list: a value Gantry would not
//! act on is refused with the reason (long ARN formats cannot be turned off, FIPS mode and the
//! creation-time tag authorization are not provided, logs are never delivered blocking).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Every setting name of the ECS model, in the model's order (the order listings use).
pub const NAMES: &[&str] = &[
    "serviceLongArnFormat",
    "taskLongArnFormat",
    "containerInstanceLongArnFormat",
    "awsvpcTrunking",
    "containerInsights",
    "fargateFIPSMode",
    "tagResourceAuthorization",
    "fargateTaskRetirementWaitPeriod",
    "guardDutyActivate",
    "defaultLogDriverMode",
    "fargateEventWindows",
];

/// The setting AWS manages (`type: aws_managed`): readable, never set by a principal.
pub const AWS_MANAGED: &str = "guardDutyActivate";

/// The value a principal has when neither it nor the root set one.
pub fn default_value(name: &str) -> &'static str {
    match name {
        "serviceLongArnFormat" | "taskLongArnFormat" | "containerInstanceLongArnFormat" => {
            "enabled"
        }
        "tagResourceAuthorization" | "guardDutyActivate" => "off",
        "fargateTaskRetirementWaitPeriod" => "7",
        "defaultLogDriverMode" => "non-blocking",
        _ => "disabled",
    }
}

/// Checks that `name` is a setting of the model.
pub fn check_name(name: &str) -> Result<(), ValidationError> {
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(ValidationError::invalid(format!(
            "Invalid setting name '{name}'. Valid names: {}.",
            NAMES.join(", ")
        )))
    }
}

/// Which operation sets a value: the restrictions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setter {
    /// `PutAccountSetting` for the root (named, or the root calling without `principalArn`).
    Root,
    /// `PutAccountSetting` for an IAM user or role.
    Principal,
    /// `PutAccountSettingDefault` (the root's value, the account default).
    Default,
}

/// Checks that `value` may be set for `name` by `setter`: ECS's valid values, less the ones
/// Gantry would not act on.
pub fn check_value(name: &str, value: &str, setter: Setter) -> Result<(), ValidationError> {
    check_name(name)?;
    let valid: &[&str] = match name {
        "containerInsights" => &["enabled", "disabled", "enhanced"],
        "tagResourceAuthorization" => &["on", "off"],
        "fargateTaskRetirementWaitPeriod" => &["0", "7", "14"],
        "defaultLogDriverMode" => &["blocking", "non-blocking"],
        "guardDutyActivate" => {
            return Err(ValidationError::invalid(
                "guardDutyActivate is managed by AWS (GuardDuty Runtime Monitoring) and cannot be set.",
            ));
        }
        _ => &["enabled", "disabled"],
    };
    if !valid.contains(&value) {
        return Err(ValidationError::invalid(format!(
            "Invalid value '{value}' for setting {name}. Valid values: {}.",
            valid.join(", ")
        )));
    }
    match (name, value) {
        (
            "serviceLongArnFormat" | "taskLongArnFormat" | "containerInstanceLongArnFormat",
            "disabled",
        ) => Err(ValidationError::invalid(format!(
            "{name} cannot be disabled: this endpoint always uses the long ARN format (with the cluster name) for services, tasks and container instances."
        ))),
        ("fargateFIPSMode", "enabled") => Err(ValidationError::invalid(
            "fargateFIPSMode cannot be enabled: this endpoint does not run Fargate tasks in a FIPS 140 validated environment.",
        )),
        ("fargateFIPSMode", _) if setter != Setter::Default => Err(ValidationError::invalid(
            "fargateFIPSMode can only be changed with PutAccountSettingDefault.",
        )),
        ("fargateTaskRetirementWaitPeriod", _) if setter == Setter::Principal => {
            Err(ValidationError::invalid(
                "fargateTaskRetirementWaitPeriod can only be set for the root user.",
            ))
        }
        ("tagResourceAuthorization", "on") => Err(ValidationError::invalid(
            "tagResourceAuthorization cannot be turned on: this endpoint does not require ecs:TagResource for tags given when a resource is created.",
        )),
        ("defaultLogDriverMode", "blocking") => Err(ValidationError::invalid(
            "defaultLogDriverMode cannot be blocking: containers log to a local file and the agent ships it, so a container never blocks on log delivery.",
        )),
        _ => Ok(()),
    }
}

/// One principal's explicit settings, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    /// The principal's ARN (`arn:aws:iam::<account>:root`, `...:user/...`, `...:role/...`).
    pub principal_arn: String,
    /// Setting name → value.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A setting as a listing shows it: its value and the principal it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: &'static str,
    pub value: String,
    /// The principal whose setting applies (the root's ARN for the account default and for
    /// values nobody set).
    pub principal_arn: String,
}

/// The effective value of `name` for a principal with settings `own`, given the root's.
pub fn effective(
    name: &'static str,
    own: Option<&AccountSettings>,
    root: Option<&AccountSettings>,
    root_arn: &str,
) -> Resolved {
    if name != AWS_MANAGED {
        if let Some(o) = own
            && let Some(v) = o.settings.get(name)
        {
            return Resolved {
                name,
                value: v.clone(),
                principal_arn: o.principal_arn.clone(),
            };
        }
        if let Some(r) = root
            && let Some(v) = r.settings.get(name)
        {
            return Resolved {
                name,
                value: v.clone(),
                principal_arn: root_arn.to_owned(),
            };
        }
    }
    Resolved {
        name,
        value: default_value(name).to_owned(),
        principal_arn: root_arn.to_owned(),
    }
}

/// Checks a request's `principalArn`: the root, a user or a role of `account`.
pub fn check_principal_arn(arn: &str, account: &str) -> Result<(), ValidationError> {
    let root = format!("arn:aws:iam::{account}:root");
    let ok = arn == root
        || [":user/", ":role/"].iter().any(|kind| {
            arn.strip_prefix(&format!("arn:aws:iam::{account}{kind}"))
                .is_some_and(|rest| !rest.is_empty() && !rest.ends_with('/'))
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::invalid(format!(
            "Invalid principalArn '{arn}': give the ARN of the root user, an IAM user or an IAM role of account {account}."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "arn:aws:iam::123456789012:root";

    fn settings(principal: &str, pairs: &[(&str, &str)]) -> AccountSettings {
        AccountSettings {
            principal_arn: principal.into(),
            settings: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn own_value_then_root_then_default() {
        let user = "arn:aws:iam::123456789012:user/alice";
        let own = settings(user, &[("awsvpcTrunking", "enabled")]);
        let root = settings(
            ROOT,
            &[
                ("awsvpcTrunking", "disabled"),
                ("containerInsights", "enhanced"),
            ],
        );
        let r = effective("awsvpcTrunking", Some(&own), Some(&root), ROOT);
        assert_eq!(
            (r.value.as_str(), r.principal_arn.as_str()),
            ("enabled", user)
        );
        let r = effective("containerInsights", Some(&own), Some(&root), ROOT);
        assert_eq!(
            (r.value.as_str(), r.principal_arn.as_str()),
            ("enhanced", ROOT)
        );
        let r = effective("taskLongArnFormat", Some(&own), None, ROOT);
        assert_eq!(
            (r.value.as_str(), r.principal_arn.as_str()),
            ("enabled", ROOT)
        );
        assert_eq!(
            effective("fargateTaskRetirementWaitPeriod", None, None, ROOT).value,
            "7"
        );
    }

    #[test]
    fn values_gantry_would_not_act_on_are_refused_with_the_reason() {
        assert!(check_value("containerInsights", "enhanced", Setter::Principal).is_ok());
        assert!(check_value("awsvpcTrunking", "enabled", Setter::Principal).is_ok());
        assert!(check_value("taskLongArnFormat", "enabled", Setter::Root).is_ok());
        let e = check_value("taskLongArnFormat", "disabled", Setter::Root).unwrap_err();
        assert!(e.to_string().contains("long ARN format"), "{e}");
        let e = check_value("containerInsights", "on", Setter::Root).unwrap_err();
        assert!(
            e.to_string()
                .contains("Valid values: enabled, disabled, enhanced"),
            "{e}"
        );
        assert!(check_value("guardDutyActivate", "on", Setter::Default).is_err());
        assert!(check_value("fargateFIPSMode", "enabled", Setter::Default).is_err());
        assert!(check_value("fargateFIPSMode", "disabled", Setter::Default).is_ok());
        assert!(check_value("fargateFIPSMode", "disabled", Setter::Root).is_err());
        assert!(check_value("fargateTaskRetirementWaitPeriod", "14", Setter::Root).is_ok());
        assert!(check_value("fargateTaskRetirementWaitPeriod", "14", Setter::Principal).is_err());
        assert!(check_value("fargateTaskRetirementWaitPeriod", "3", Setter::Root).is_err());
        assert!(check_value("tagResourceAuthorization", "off", Setter::Root).is_ok());
        assert!(check_value("tagResourceAuthorization", "on", Setter::Root).is_err());
        assert!(check_value("defaultLogDriverMode", "blocking", Setter::Root).is_err());
        assert!(check_value("dualStackIPv6", "enabled", Setter::Root).is_err());
    }

    #[test]
    fn principal_arns_name_the_root_a_user_or_a_role_of_the_account() {
        let acct = "123456789012";
        assert!(check_principal_arn("arn:aws:iam::123456789012:role/deployer", acct).is_ok());
        assert!(check_principal_arn(ROOT, acct).is_ok());
        assert!(check_principal_arn("arn:aws:iam::999999999999:root", acct).is_err());
        assert!(check_principal_arn("arn:aws:iam::123456789012:group/g", acct).is_err());
        assert!(check_principal_arn("alice", acct).is_err());
    }
}
