//! `PutAccountSetting`, `PutAccountSettingDefault`, `ListAccountSettings`,
//! `DeleteAccountSetting`: one record per principal and region
//! (`ecs/<region>/account-settings/<principal ARN>`), resolved by
//! [`gantry_domain::account_setting`]. `containerInsights` is acted on by CreateCluster
//! ([`effective_value`]); the long ARN formats are always on; the other settings are kept and
//! listed (see `docs/compatibility.md`).

use gantry_domain::account_setting::{
    self, AWS_MANAGED, AccountSettings, NAMES, Setter, check_name, check_principal_arn, check_value,
};
use gantry_front::RequestContext;
use gantry_iam_policy::PrincipalKind;
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{commit_with_retry, max_results, paginate, parse, with_token};
use crate::{EcsError, EcsService};

fn key(region: &str, principal: &str) -> String {
    format!("ecs/{region}/account-settings/{principal}")
}

fn root_arn(ctx: &RequestContext) -> String {
    format!("arn:aws:iam::{}:root", ctx.account_id)
}

/// The principal whose settings the caller has: a user's own, a role session's role's; the
/// root, federated users and services have the root's.
fn own_principal(ctx: &RequestContext) -> String {
    match ctx.caller.as_deref().map(|p| (&p.kind, p)) {
        Some((PrincipalKind::User, p)) => p.arn.clone(),
        Some((PrincipalKind::AssumedRole { role_arn }, _)) => role_arn.clone(),
        _ => root_arn(ctx),
    }
}

/// The principal a request is about: `principalArn` when given (only the root, or the principal
/// itself, may name one), else the caller's own.
fn target_principal(ctx: &RequestContext, given: Option<&str>) -> Result<String, EcsError> {
    let own = own_principal(ctx);
    let Some(arn) = given.filter(|a| !a.is_empty()) else {
        return Ok(own);
    };
    check_principal_arn(arn, &ctx.account_id)?;
    if own != root_arn(ctx) && arn != own {
        return Err(EcsError::invalid(format!(
            "Only the root user or the principal itself can use principalArn '{arn}' (the caller is {own})."
        )));
    }
    Ok(arn.to_owned())
}

async fn read(
    svc: &EcsService,
    region: &str,
    principal: &str,
) -> Result<Option<AccountSettings>, EcsError> {
    Ok(svc
        .store
        .get_typed::<AccountSettings>(&key(region, principal))
        .await?
        .map(|v| v.value))
}

/// The value of setting `name` that applies to the caller of `ctx` (its own, the account's, or
/// the platform's default). CreateCluster reads `containerInsights` through this.
pub(crate) async fn effective_value(
    svc: &EcsService,
    ctx: &RequestContext,
    name: &'static str,
) -> Result<String, EcsError> {
    let principal = own_principal(ctx);
    let root = root_arn(ctx);
    let own = if principal == root {
        None
    } else {
        read(svc, &ctx.region, &principal).await?
    };
    let root_settings = read(svc, &ctx.region, &root).await?;
    Ok(account_setting::effective(name, own.as_ref(), root_settings.as_ref(), &root).value)
}

fn setting_json(name: &str, value: &str, principal: &str) -> Value {
    let kind = if name == AWS_MANAGED {
        "aws_managed"
    } else {
        "user"
    };
    json!({"name": name, "value": value, "principalArn": principal, "type": kind})
}

/// Writes (or with `value` `None`, removes) one setting of `principal`.
async fn write(
    svc: &EcsService,
    ctx: &RequestContext,
    principal: &str,
    name: &str,
    value: Option<&str>,
) -> Result<Option<String>, EcsError> {
    let k = key(&ctx.region, principal);
    commit_with_retry(svc.store.as_ref(), || async {
        let existing = svc.store.get_typed::<AccountSettings>(&k).await?;
        let revision = existing.as_ref().map_or(0, |e| e.revision);
        let mut record = existing
            .map(|e| e.value)
            .unwrap_or_else(|| AccountSettings {
                principal_arn: principal.to_owned(),
                settings: Default::default(),
            });
        let previous = match value {
            Some(v) => record.settings.insert(name.to_owned(), v.to_owned()),
            None => record.settings.remove(name),
        };
        let txn = Txn::new().require_revision(&k, revision);
        let txn = if record.settings.is_empty() {
            if revision == 0 {
                Txn::new()
            } else {
                txn.delete(&k)
            }
        } else {
            txn.put(&k, encode(&k, &record)?)
        };
        Ok((txn, previous))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRequest {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
}

fn required<'a>(v: &'a Option<String>, member: &str) -> Result<&'a str, EcsError> {
    v.as_deref()
        .ok_or_else(|| EcsError::invalid(format!("{member} is required.")))
}

pub(super) async fn put(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: PutRequest = parse(body)?;
    let name = required(&req.name, "name")?;
    let value = required(&req.value, "value")?;
    let principal = target_principal(ctx, req.principal_arn.as_deref())?;
    let setter = if principal == root_arn(ctx) {
        Setter::Root
    } else {
        Setter::Principal
    };
    check_value(name, value, setter)?;
    write(svc, ctx, &principal, name, Some(value)).await?;
    Ok(json!({"setting": setting_json(name, value, &principal)}))
}

pub(super) async fn put_default(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: PutRequest = parse(body)?;
    if req.principal_arn.is_some() {
        return Err(EcsError::invalid(
            "PutAccountSettingDefault takes no principalArn: it sets the account default.",
        ));
    }
    let name = required(&req.name, "name")?;
    let value = required(&req.value, "value")?;
    check_value(name, value, Setter::Default)?;
    let root = root_arn(ctx);
    write(svc, ctx, &root, name, Some(value)).await?;
    Ok(json!({"setting": setting_json(name, value, &root)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    name: Option<String>,
    principal_arn: Option<String>,
}

pub(super) async fn delete(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: DeleteRequest = parse(body)?;
    let name = required(&req.name, "name")?;
    check_name(name)?;
    if name == AWS_MANAGED {
        return Err(EcsError::invalid(
            "guardDutyActivate is managed by AWS (GuardDuty Runtime Monitoring) and cannot be deleted.",
        ));
    }
    let principal = target_principal(ctx, req.principal_arn.as_deref())?;
    let previous = write(svc, ctx, &principal, name, None).await?;
    // The setting as it stood for the principal: the removed value, or, when it had none of
    // its own, the platform's default.
    let value = previous.unwrap_or_else(|| account_setting::default_value(name).to_owned());
    Ok(json!({"setting": setting_json(name, &value, &principal)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: bool,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) async fn list(
    svc: &EcsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, EcsError> {
    let req: ListRequest = parse(body)?;
    let limit = max_results(req.max_results, 10, 10)?;
    if let Some(n) = &req.name {
        check_name(n)?;
    }
    if req.value.is_some() && req.name.is_none() {
        return Err(EcsError::invalid(
            "value can only be given together with name.",
        ));
    }
    let principal = target_principal(ctx, req.principal_arn.as_deref())?;
    let root = root_arn(ctx);
    let own = read(svc, &ctx.region, &principal).await?;
    let root_settings = if principal == root {
        own.clone()
    } else {
        read(svc, &ctx.region, &root).await?
    };
    let mut rows = Vec::new();
    for (i, &name) in NAMES.iter().enumerate() {
        if req.name.as_deref().is_some_and(|n| n != name) {
            continue;
        }
        let resolved = if req.effective_settings {
            Some(account_setting::effective(
                name,
                own.as_ref(),
                root_settings.as_ref(),
                &root,
            ))
        } else {
            own.as_ref()
                .and_then(|o| o.settings.get(name))
                .map(|v| account_setting::Resolved {
                    name,
                    value: v.clone(),
                    principal_arn: principal.clone(),
                })
        };
        let Some(r) = resolved else { continue };
        if req.value.as_deref().is_some_and(|v| v != r.value) {
            continue;
        }
        // Sorted by the model's order: the index is the page key.
        rows.push((
            format!("{i:02}"),
            setting_json(r.name, &r.value, &r.principal_arn),
        ));
    }
    let (page, next) = paginate(rows, req.next_token.as_deref(), limit)?;
    Ok(with_token(json!({"settings": page}), next))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gantry_front::{RandomIds, RequestContext};
    use gantry_store::MemoryStore;
    use serde_json::{Value, json};

    use crate::{EcsOperation, EcsService};

    fn ctx(caller: Option<gantry_iam_policy::Principal>) -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            access_key_id: "AKID".into(),
            now: 1_700_000_000_000,
            caller: caller.map(Arc::new),
        }
    }

    async fn call(svc: &EcsService, ctx: &RequestContext, op: EcsOperation, body: Value) -> Value {
        svc.dispatch(op, body.to_string().as_bytes(), ctx)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    #[tokio::test]
    async fn a_role_session_has_its_roles_settings_over_the_account_default() {
        let svc = EcsService::new(Arc::new(MemoryStore::new()), Arc::new(RandomIds));
        let root = ctx(None);
        let session = gantry_iam_policy::Principal {
            arn: "arn:aws:sts::000000000000:assumed-role/deployer/s1".into(),
            account: "000000000000".into(),
            kind: gantry_iam_policy::PrincipalKind::AssumedRole {
                role_arn: "arn:aws:iam::000000000000:role/deployer".into(),
            },
            user_id: "AROA:s1".into(),
            name: "s1".into(),
            tags: vec![],
        };
        let role = ctx(Some(session));
        call(
            &svc,
            &root,
            EcsOperation::PutAccountSettingDefault,
            json!({"name": "containerInsights", "value": "enabled"}),
        )
        .await;
        let out = call(
            &svc,
            &role,
            EcsOperation::PutAccountSetting,
            json!({"name": "containerInsights", "value": "enhanced"}),
        )
        .await;
        assert_eq!(
            out["setting"]["principalArn"],
            "arn:aws:iam::000000000000:role/deployer"
        );
        // Clusters take their creator's effective value.
        let c = call(
            &svc,
            &role,
            EcsOperation::CreateCluster,
            json!({"clusterName": "a"}),
        )
        .await;
        assert_eq!(c["cluster"]["settings"][0]["value"], "enhanced");
        let c = call(
            &svc,
            &root,
            EcsOperation::CreateCluster,
            json!({"clusterName": "b"}),
        )
        .await;
        assert_eq!(c["cluster"]["settings"][0]["value"], "enabled");
        // Listing one page at a time covers every setting once.
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"effectiveSettings": true, "maxResults": 4});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = call(&svc, &role, EcsOperation::ListAccountSettings, body).await;
            for s in page["settings"].as_array().unwrap() {
                seen.push(s["name"].as_str().unwrap().to_owned());
            }
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, gantry_domain::account_setting::NAMES);
    }
}
