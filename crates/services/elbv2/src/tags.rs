//! AddTags, RemoveTags, DescribeTags on load balancers, target groups, listeners and rules.

use gantry_aws_proto::query::XmlWriter;
use gantry_domain::lb::{LoadBalancer, TargetGroup};
use gantry_domain::tags::Tag;
use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};

use crate::error::Elbv2Error;
use crate::keys::{self, ElbArn};
use crate::wire::{self, Params};
use crate::{Elbv2Service, commit_with_retry};

/// A change to a resource's tags.
type TagChange<'a> = dyn Fn(&mut Vec<Tag>) -> Result<(), Elbv2Error> + Sync + 'a;

/// Reads (and with `change`, rewrites) the tags of the resource `arn` names.
async fn with_tags(
    svc: &Elbv2Service,
    ctx: &RequestContext,
    arn: &str,
    change: Option<&TagChange<'_>>,
) -> Result<Vec<Tag>, Elbv2Error> {
    let store = svc.store.as_ref();
    let region = &ctx.region;
    let parsed = keys::parse_arn(arn, region);
    let not_found = || match &parsed {
        Some(ElbArn::TargetGroup { .. }) => Elbv2Error::TargetGroupNotFound(arn.to_owned()),
        Some(ElbArn::Listener { .. }) => Elbv2Error::ListenerNotFound(arn.to_owned()),
        Some(ElbArn::Rule { .. }) => Elbv2Error::RuleNotFound(arn.to_owned()),
        _ => Elbv2Error::LoadBalancerNotFound(arn.to_owned()),
    };
    match parsed.clone() {
        Some(ElbArn::TargetGroup { name, id }) => {
            let key = keys::target_group(region, &name);
            commit_with_retry(store, || async {
                let Some(cur) = store.get_typed::<TargetGroup>(&key).await? else {
                    return Err(not_found());
                };
                if cur.value.id != id {
                    return Err(not_found());
                }
                let mut tg = cur.value.clone();
                let Some(f) = change else {
                    return Ok((Txn::new(), tg.tags));
                };
                f(&mut tg.tags)?;
                let txn = Txn::new()
                    .require_revision(&key, cur.revision)
                    .put(&key, encode(&key, &tg)?);
                Ok((txn, tg.tags))
            })
            .await
        }
        Some(
            ElbArn::LoadBalancer { name, id }
            | ElbArn::Listener {
                lb_name: name,
                lb_id: id,
                ..
            }
            | ElbArn::Rule {
                lb_name: name,
                lb_id: id,
                ..
            },
        ) => {
            let key = keys::load_balancer(region, &name);
            commit_with_retry(store, || async {
                let Some(cur) = store.get_typed::<LoadBalancer>(&key).await? else {
                    return Err(not_found());
                };
                if cur.value.id != id {
                    return Err(not_found());
                }
                let mut lb = cur.value.clone();
                let tags: &mut Vec<Tag> = match parsed.as_ref() {
                    Some(ElbArn::Listener { id, .. }) => {
                        let Some(l) = lb.listeners.iter_mut().find(|l| &l.id == id) else {
                            return Err(not_found());
                        };
                        &mut l.tags
                    }
                    Some(ElbArn::Rule {
                        listener_id, id, ..
                    }) => {
                        let Some(r) = lb
                            .listeners
                            .iter_mut()
                            .filter(|l| &l.id == listener_id)
                            .flat_map(|l| l.rules.iter_mut())
                            .find(|r| &r.id == id)
                        else {
                            return Err(not_found());
                        };
                        &mut r.tags
                    }
                    _ => &mut lb.tags,
                };
                let Some(f) = change else {
                    return Ok((Txn::new(), tags.clone()));
                };
                f(tags)?;
                let out = tags.clone();
                let txn = Txn::new()
                    .require_revision(&key, cur.revision)
                    .put(&key, encode(&key, &lb)?);
                Ok((txn, out))
            })
            .await
        }
        None => Err(Elbv2Error::validation(format!(
            "'{arn}' is not a valid load balancer, target group, listener or rule ARN"
        ))),
    }
}

fn arns(p: &Params) -> Result<Vec<String>, Elbv2Error> {
    let arns = p.list("ResourceArns");
    if arns.is_empty() {
        return Err(Elbv2Error::validation("ResourceArns must not be empty"));
    }
    if arns.len() > 20 {
        return Err(Elbv2Error::validation(
            "At most 20 resource ARNs can be given",
        ));
    }
    Ok(arns)
}

pub(crate) async fn add(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arns = arns(p)?;
    let tags = wire::parse_tags(p, "Tags")?;
    if tags.is_empty() {
        return Err(Elbv2Error::validation("Tags must not be empty"));
    }
    let f = |t: &mut Vec<Tag>| wire::merge_tags(t, &tags);
    for arn in &arns {
        with_tags(svc, ctx, arn, Some(&f)).await?;
    }
    Ok(String::new())
}

pub(crate) async fn remove(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arns = arns(p)?;
    let keys_to_remove = p.list("TagKeys");
    if keys_to_remove.is_empty() {
        return Err(Elbv2Error::validation("TagKeys must not be empty"));
    }
    let f = |t: &mut Vec<Tag>| {
        t.retain(|tag| !keys_to_remove.contains(&tag.key));
        Ok(())
    };
    for arn in &arns {
        with_tags(svc, ctx, arn, Some(&f)).await?;
    }
    Ok(String::new())
}

pub(crate) async fn describe(
    svc: &Elbv2Service,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, Elbv2Error> {
    let arns = arns(p)?;
    let mut out = Vec::new();
    for arn in &arns {
        out.push((arn.clone(), with_tags(svc, ctx, arn, None).await?));
    }
    let mut w = XmlWriter::new();
    wire::write_list(&mut w, "TagDescriptions", &out, |w, (arn, tags)| {
        w.leaf("ResourceArn", arn);
        wire::write_tags(w, tags);
    });
    Ok(w.finish())
}
