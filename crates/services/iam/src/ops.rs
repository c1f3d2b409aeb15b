//! The served IAM operations. Each reads the directory, validates, and commits its changes
//! with [`IamService::apply`] while holding the write lock.

use std::collections::BTreeMap;

use base64::Engine;
use gantry_aws_proto::query::XmlWriter;
use gantry_front::RequestContext;
use gantry_iam_policy::{
    AWS_MANAGED_POLICIES, Context, Decision, Policy, PolicyKind, PolicySet, PolicySizeLimit,
    PolicyType, Principal, Request, aws_managed_policy, evaluate, policy_size,
};
use rand::Rng;

use crate::error::IamError;
use crate::model::{
    AccessKey, Directory, Group, InstanceProfile, KeyStatus, ManagedPolicy, Policies,
    PolicyVersion, Role, User, is_aws_managed, managed_policy,
};
use crate::wire::{self, Params, date, page, url_encode, write_truncation};
use crate::{Change, IamOperation, IamService, key_purpose, lower};

/// The operations Gantry serves; the others answer `NotImplemented`.
pub(crate) const SERVED: &[IamOperation] = {
    use IamOperation::*;
    &[
        AddRoleToInstanceProfile,
        AddUserToGroup,
        AttachGroupPolicy,
        AttachRolePolicy,
        AttachUserPolicy,
        CreateAccessKey,
        CreateGroup,
        CreateInstanceProfile,
        CreatePolicy,
        CreatePolicyVersion,
        CreateRole,
        CreateServiceLinkedRole,
        CreateUser,
        DeleteAccessKey,
        DeleteGroup,
        DeleteGroupPolicy,
        DeleteInstanceProfile,
        DeletePolicy,
        DeletePolicyVersion,
        DeleteRole,
        DeleteRolePolicy,
        DeleteUser,
        DeleteUserPolicy,
        DetachGroupPolicy,
        DetachRolePolicy,
        DetachUserPolicy,
        GetAccessKeyLastUsed,
        GetAccountAuthorizationDetails,
        GetGroup,
        GetGroupPolicy,
        GetInstanceProfile,
        GetPolicy,
        GetPolicyVersion,
        GetRole,
        GetRolePolicy,
        GetUser,
        GetUserPolicy,
        ListAccessKeys,
        ListAttachedGroupPolicies,
        ListAttachedRolePolicies,
        ListAttachedUserPolicies,
        ListEntitiesForPolicy,
        ListGroupPolicies,
        ListGroups,
        ListGroupsForUser,
        ListInstanceProfiles,
        ListInstanceProfilesForRole,
        ListPolicies,
        ListPolicyVersions,
        ListRolePolicies,
        ListRoleTags,
        ListRoles,
        ListUserPolicies,
        ListUserTags,
        ListUsers,
        PutGroupPolicy,
        PutRolePolicy,
        PutUserPolicy,
        RemoveRoleFromInstanceProfile,
        RemoveUserFromGroup,
        SetDefaultPolicyVersion,
        SimulatePrincipalPolicy,
        TagRole,
        TagUser,
        UntagRole,
        UntagUser,
        UpdateAccessKey,
        UpdateAssumeRolePolicy,
        UpdateRole,
    ]
};

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A unique id as IAM makes them: a 4-letter prefix and 17 characters.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut out = String::from(prefix);
    for _ in 0..17 {
        out.push(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char);
    }
    out
}

/// An access key id: `AKIA`/`ASIA` and 16 characters.
pub fn new_access_key_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut out = String::from(prefix);
    for _ in 0..16 {
        out.push(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char);
    }
    out
}

/// A 40-character secret access key.
pub fn new_secret() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| A[rng.random_range(0..A.len())] as char)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
    Role,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Role => "role",
        }
    }
    fn inline_limit(self) -> PolicySizeLimit {
        match self {
            Kind::User => PolicySizeLimit::UserInline,
            Kind::Group => PolicySizeLimit::GroupInline,
            Kind::Role => PolicySizeLimit::RoleInline,
        }
    }
    fn attach_quota(self) -> &'static str {
        match self {
            Kind::User => "PoliciesPerUser",
            Kind::Group => "PoliciesPerGroup",
            Kind::Role => "PoliciesPerRole",
        }
    }
    fn name_param(self) -> &'static str {
        match self {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            Kind::Role => "RoleName",
        }
    }
}

fn no_user(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The user with name {name} cannot be found."))
}
fn no_group(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The group with name {name} cannot be found."))
}
fn no_role(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The role with name {name} cannot be found."))
}
fn no_policy(arn: &str) -> IamError {
    IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
}
fn no_profile(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("Instance Profile {name} cannot be found."))
}

fn path_param(p: &Params) -> Result<String, IamError> {
    let path = p.get("Path").unwrap_or("/").to_owned();
    wire::check_path(&path)?;
    Ok(path)
}

/// Validates an identity-based document and its size for a managed policy.
fn check_managed_document(doc: &str) -> Result<(), IamError> {
    gantry_iam_policy::parse_document(doc, PolicyKind::Identity)?;
    PolicySizeLimit::ManagedPolicy.check(policy_size(doc), "")?;
    Ok(())
}

fn check_trust_document(doc: &str) -> Result<(), IamError> {
    gantry_iam_policy::parse_document(doc, PolicyKind::Trust)?;
    PolicySizeLimit::TrustPolicy.check(policy_size(doc), "")?;
    Ok(())
}

/// The customer-managed policy an ARN of this account names.
fn policy_by_arn<'a>(
    dir: &'a Directory,
    account: &str,
    arn: &str,
) -> Result<&'a ManagedPolicy, IamError> {
    let name = arn.rsplit('/').next().unwrap_or("");
    dir.policies
        .get(&lower(name))
        .filter(|p| p.arn(account) == arn)
        .ok_or_else(|| no_policy(arn))
}

fn attachment_count(dir: &Directory, arn: &str) -> usize {
    let has = |p: &Policies| p.attached.iter().any(|a| a == arn);
    dir.users.values().filter(|u| has(&u.policies)).count()
        + dir.groups.values().filter(|g| has(&g.policies)).count()
        + dir.roles.values().filter(|r| has(&r.policies)).count()
}

pub(crate) async fn dispatch(
    svc: &IamService,
    op: IamOperation,
    p: &Params,
    ctx: &RequestContext,
) -> Result<String, IamError> {
    use IamOperation::*;
    let account = svc.account.as_str();
    let now = ctx.now;
    let mut w = XmlWriter::new();
    match op {
        // ---- users ----
        CreateUser => {
            let name = p.req("UserName")?.to_owned();
            let path = path_param(p)?;
            let tags = wire::parse_tags(p)?;
            let boundary = p.get("PermissionsBoundary").map(str::to_owned);
            let _g = svc.write.lock().await;
            {
                let dir = svc.dir.read();
                if dir.users.contains_key(&lower(&name)) {
                    return Err(IamError::EntityAlreadyExists(format!(
                        "User with name {name} already exists."
                    )));
                }
                if let Some(b) = &boundary {
                    check_boundary(&dir, account, b)?;
                }
            }
            let user = User {
                name,
                path,
                id: new_id("AIDA"),
                create_date: now,
                tags,
                policies: Policies::default(),
                groups: Vec::new(),
                permissions_boundary: boundary,
            };
            wire::write_user(&mut w, "User", account, &user, true);
            svc.apply(vec![Change::User(user)]).await?;
        }
        GetUser => {
            let dir = svc.dir.read();
            let user = match p.get("UserName") {
                Some(n) => dir.users.get(&lower(n)).ok_or_else(|| no_user(n))?,
                None => {
                    // The caller itself.
                    match ctx.caller.as_deref() {
                        Some(c) if c.kind == gantry_iam_policy::PrincipalKind::User => dir
                            .users
                            .get(&lower(&c.name))
                            .ok_or_else(|| no_user(&c.name))?,
                        Some(_) => {
                            return Err(IamError::Validation(
                                "Must specify userName when calling with non-User credentials"
                                    .to_owned(),
                            ));
                        }
                        None => {
                            w.open("User");
                            w.leaf("UserId", account);
                            w.leaf("Arn", &format!("arn:aws:iam::{account}:root"));
                            w.leaf("CreateDate", &date(0));
                            w.close("User");
                            return Ok(w.finish());
                        }
                    }
                }
            };
            wire::write_user(&mut w, "User", account, user, true);
        }
        ListUsers => {
            let prefix = path_param_prefix(p)?;
            let dir = svc.dir.read();
            let (items, marker) = page(
                p,
                dir.users
                    .iter()
                    .filter(|(_, u)| u.path.starts_with(&prefix)),
            )?;
            w.open("Users");
            for u in items {
                wire::write_user(&mut w, "member", account, u, false);
            }
            w.close("Users");
            write_truncation(&mut w, marker);
        }
        DeleteUser => {
            let name = p.req("UserName")?.to_owned();
            let _g = svc.write.lock().await;
            let user = {
                let dir = svc.dir.read();
                let u = dir.users.get(&lower(&name)).ok_or_else(|| no_user(&name))?;
                if dir.keys.values().any(|k| k.user == u.name) {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must delete access keys first.".to_owned(),
                    ));
                }
                if !u.policies.inline.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must delete policies first.".to_owned(),
                    ));
                }
                if !u.policies.attached.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must detach all policies first.".to_owned(),
                    ));
                }
                if !u.groups.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must remove user from all groups first.".to_owned(),
                    ));
                }
                u.name.clone()
            };
            svc.apply(vec![Change::DeleteUser(user)]).await?;
        }
        UpdateUser => {
            let name = p.req("UserName")?.to_owned();
            let new_path = match p.get("NewPath") {
                Some(np) => {
                    wire::check_path(np)?;
                    Some(np.to_owned())
                }
                None => None,
            };
            let new_name = p.get("NewUserName").map(str::to_owned);
            let _g = svc.write.lock().await;
            let changes = {
                let dir = svc.dir.read();
                let mut u = dir
                    .users
                    .get(&lower(&name))
                    .cloned()
                    .ok_or_else(|| no_user(&name))?;
                let old = u.name.clone();
                let mut changes = Vec::new();
                if let Some(np) = new_path {
                    u.path = np;
                }
                if let Some(nn) = new_name.filter(|nn| *nn != old) {
                    if !lower(&nn).eq(&lower(&old)) && dir.users.contains_key(&lower(&nn)) {
                        return Err(IamError::EntityAlreadyExists(format!(
                            "User with name {nn} already exists."
                        )));
                    }
                    // Keys follow the user.
                    for k in dir.keys.values().filter(|k| k.user == old) {
                        let mut k = k.clone();
                        k.user = nn.clone();
                        changes.push(Change::Key(k, None));
                    }
                    if lower(&nn) != lower(&old) {
                        changes.push(Change::DeleteUser(old));
                    }
                    u.name = nn;
                }
                changes.push(Change::User(u));
                changes
            };
            svc.apply(changes).await?;
        }
        UpdateGroup => {
            let name = p.req("GroupName")?.to_owned();
            let new_path = match p.get("NewPath") {
                Some(np) => {
                    wire::check_path(np)?;
                    Some(np.to_owned())
                }
                None => None,
            };
            let new_name = p.get("NewGroupName").map(str::to_owned);
            let _g = svc.write.lock().await;
            let changes = {
                let dir = svc.dir.read();
                let mut g = dir
                    .groups
                    .get(&lower(&name))
                    .cloned()
                    .ok_or_else(|| no_group(&name))?;
                let old = g.name.clone();
                let mut changes = Vec::new();
                if let Some(np) = new_path {
                    g.path = np;
                }
                if let Some(nn) = new_name.filter(|nn| *nn != old) {
                    if !lower(&nn).eq(&lower(&old)) && dir.groups.contains_key(&lower(&nn)) {
                        return Err(IamError::EntityAlreadyExists(format!(
                            "Group with name {nn} already exists."
                        )));
                    }
                    // Memberships follow the group.
                    for u in dir.users.values().filter(|u| u.groups.contains(&old)) {
                        let mut u = u.clone();
                        for x in &mut u.groups {
                            if *x == old {
                                *x = nn.clone();
                            }
                        }
                        changes.push(Change::User(u));
                    }
                    if lower(&nn) != lower(&old) {
                        changes.push(Change::DeleteGroup(old));
                    }
                    g.name = nn;
                }
                changes.push(Change::Group(g));
                changes
            };
            svc.apply(changes).await?;
        }
        TagUser | UntagUser => {
            let name = p.req("UserName")?.to_owned();
            let _g = svc.write.lock().await;
            let mut u = svc
                .dir
                .read()
                .users
                .get(&lower(&name))
                .cloned()
                .ok_or_else(|| no_user(&name))?;
            edit_tags(&mut u.tags, op == TagUser, p)?;
            svc.apply(vec![Change::User(u)]).await?;
        }
        ListUserTags => {
            let name = p.req("UserName")?;
            let dir = svc.dir.read();
            let u = dir.users.get(&lower(name)).ok_or_else(|| no_user(name))?;
            wire::write_tags(&mut w, "Tags", &u.tags);
            w.leaf("IsTruncated", "false");
        }
        // ---- groups ----
        CreateGroup => {
            let name = p.req("GroupName")?.to_owned();
            let path = path_param(p)?;
            let _g = svc.write.lock().await;
            if svc.dir.read().groups.contains_key(&lower(&name)) {
                return Err(IamError::EntityAlreadyExists(format!(
                    "Group with name {name} already exists."
                )));
            }
            let group = Group {
                name,
                path,
                id: new_id("AGPA"),
                create_date: now,
                policies: Policies::default(),
            };
            wire::write_group(&mut w, "Group", account, &group);
            svc.apply(vec![Change::Group(group)]).await?;
        }
        GetGroup => {
            let name = p.req("GroupName")?;
            let dir = svc.dir.read();
            let g = dir.groups.get(&lower(name)).ok_or_else(|| no_group(name))?;
            wire::write_group(&mut w, "Group", account, g);
            let (members, marker) = page(
                p,
                dir.users
                    .iter()
                    .filter(|(_, u)| u.groups.iter().any(|x| x == &g.name)),
            )?;
            w.open("Users");
            for u in members {
                wire::write_user(&mut w, "member", account, u, false);
            }
            w.close("Users");
            write_truncation(&mut w, marker);
        }
        ListGroups => {
            let prefix = path_param_prefix(p)?;
            let dir = svc.dir.read();
            let (items, marker) = page(
                p,
                dir.groups
                    .iter()
                    .filter(|(_, g)| g.path.starts_with(&prefix)),
            )?;
            w.open("Groups");
            for g in items {
                wire::write_group(&mut w, "member", account, g);
            }
            w.close("Groups");
            write_truncation(&mut w, marker);
        }
        ListGroupsForUser => {
            let name = p.req("UserName")?;
            let dir = svc.dir.read();
            let u = dir.users.get(&lower(name)).ok_or_else(|| no_user(name))?;
            let groups: BTreeMap<String, &Group> = u
                .groups
                .iter()
                .filter_map(|g| dir.groups.get(&lower(g)).map(|x| (lower(g), x)))
                .collect();
            let (items, marker) = page(p, groups.iter().map(|(k, g)| (k, *g)))?;
            w.open("Groups");
            for g in items {
                wire::write_group(&mut w, "member", account, g);
            }
            w.close("Groups");
            write_truncation(&mut w, marker);
        }
        DeleteGroup => {
            let name = p.req("GroupName")?.to_owned();
            let _g = svc.write.lock().await;
            let gname = {
                let dir = svc.dir.read();
                let g = dir
                    .groups
                    .get(&lower(&name))
                    .ok_or_else(|| no_group(&name))?;
                if dir.users.values().any(|u| u.groups.contains(&g.name)) {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must remove users from group first.".to_owned(),
                    ));
                }
                if !g.policies.inline.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must delete policies first.".to_owned(),
                    ));
                }
                if !g.policies.attached.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must detach all policies first.".to_owned(),
                    ));
                }
                g.name.clone()
            };
            svc.apply(vec![Change::DeleteGroup(gname)]).await?;
        }
        AddUserToGroup | RemoveUserFromGroup => {
            let gname = p.req("GroupName")?.to_owned();
            let uname = p.req("UserName")?.to_owned();
            let _g = svc.write.lock().await;
            let u = {
                let dir = svc.dir.read();
                let g = dir
                    .groups
                    .get(&lower(&gname))
                    .ok_or_else(|| no_group(&gname))?;
                let mut u = dir
                    .users
                    .get(&lower(&uname))
                    .cloned()
                    .ok_or_else(|| no_user(&uname))?;
                let member = u.groups.iter().any(|x| x == &g.name);
                if op == AddUserToGroup {
                    if member {
                        return Ok(String::new());
                    }
                    if u.groups.len() >= 10 {
                        return Err(IamError::LimitExceeded(
                            "Cannot exceed quota for GroupsPerUser: 10".to_owned(),
                        ));
                    }
                    u.groups.push(g.name.clone());
                } else {
                    if !member {
                        return Err(IamError::NoSuchEntity(format!(
                            "The user with name {uname} cannot be found in group {gname}."
                        )));
                    }
                    u.groups.retain(|x| x != &g.name);
                }
                u
            };
            svc.apply(vec![Change::User(u)]).await?;
        }
        // ---- access keys ----
        CreateAccessKey => {
            let uname = caller_user(p, ctx)?;
            let _g = svc.write.lock().await;
            let user = {
                let dir = svc.dir.read();
                let u = dir
                    .users
                    .get(&lower(&uname))
                    .ok_or_else(|| no_user(&uname))?;
                if dir.keys.values().filter(|k| k.user == u.name).count() >= 2 {
                    return Err(IamError::LimitExceeded(
                        "Cannot exceed quota for AccessKeysPerUser: 2".to_owned(),
                    ));
                }
                u.name.clone()
            };
            let id = new_access_key_id("AKIA");
            let secret = new_secret();
            let sealed = svc.sealer.seal(&key_purpose(&id), secret.as_bytes());
            let key = AccessKey {
                id,
                user,
                status: KeyStatus::Active,
                create_date: now,
                sealed_secret: base64::engine::general_purpose::STANDARD.encode(sealed),
                last_used: None,
            };
            w.open("AccessKey");
            w.leaf("UserName", &key.user);
            w.leaf("AccessKeyId", &key.id);
            w.leaf("Status", "Active");
            w.leaf("SecretAccessKey", &secret);
            w.leaf("CreateDate", &date(now));
            w.close("AccessKey");
            svc.apply(vec![Change::Key(key, Some(secret))]).await?;
        }
        ListAccessKeys => {
            let uname = caller_user(p, ctx)?;
            let dir = svc.dir.read();
            let u = dir
                .users
                .get(&lower(&uname))
                .ok_or_else(|| no_user(&uname))?;
            let (items, marker) = page(p, dir.keys.iter().filter(|(_, k)| k.user == u.name))?;
            w.open("AccessKeyMetadata");
            for k in items {
                wire::write_key(&mut w, "member", k);
            }
            w.close("AccessKeyMetadata");
            write_truncation(&mut w, marker);
        }
        UpdateAccessKey | DeleteAccessKey => {
            let id = p.req("AccessKeyId")?.to_owned();
            let uname = caller_user(p, ctx)?;
            let status = match op {
                UpdateAccessKey => Some(KeyStatus::parse(p.req("Status")?).ok_or_else(|| {
                    IamError::validation(
                        "1 validation error detected: Value at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]",
                    )
                })?),
                _ => None,
            };
            let _g = svc.write.lock().await;
            let key = {
                let dir = svc.dir.read();
                dir.users
                    .get(&lower(&uname))
                    .ok_or_else(|| no_user(&uname))?;
                dir.keys
                    .get(&id)
                    .filter(|k| k.user.eq_ignore_ascii_case(&uname))
                    .cloned()
                    .ok_or_else(|| {
                        IamError::NoSuchEntity(format!(
                            "The Access Key with id {id} cannot be found."
                        ))
                    })?
            };
            match status {
                Some(s) => {
                    let mut key = key;
                    key.status = s;
                    svc.apply(vec![Change::Key(key, None)]).await?;
                }
                None => svc.apply(vec![Change::DeleteKey(key.id)]).await?,
            }
        }
        GetAccessKeyLastUsed => {
            let id = p.req("AccessKeyId")?;
            let dir = svc.dir.read();
            let k = dir.keys.get(id).ok_or_else(|| {
                IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
            })?;
            w.leaf("UserName", &k.user);
            w.open("AccessKeyLastUsed");
            match &k.last_used {
                Some(l) => {
                    w.leaf("LastUsedDate", &date(l.date));
                    w.leaf("ServiceName", &l.service);
                    w.leaf("Region", &l.region);
                }
                None => {
                    w.leaf("ServiceName", "N/A");
                    w.leaf("Region", "N/A");
                }
            }
            w.close("AccessKeyLastUsed");
        }
        // ---- roles ----
        CreateRole => {
            let name = p.req("RoleName")?.to_owned();
            let path = path_param(p)?;
            let trust = p.req("AssumeRolePolicyDocument")?.to_owned();
            check_trust_document(&trust)?;
            let max = max_session(p)?.unwrap_or(3600);
            let tags = wire::parse_tags(p)?;
            let boundary = p.get("PermissionsBoundary").map(str::to_owned);
            let _g = svc.write.lock().await;
            {
                let dir = svc.dir.read();
                if dir.roles.contains_key(&lower(&name)) {
                    return Err(IamError::EntityAlreadyExists(format!(
                        "Role with name {name} already exists."
                    )));
                }
                if let Some(b) = &boundary {
                    check_boundary(&dir, account, b)?;
                }
            }
            let role = Role {
                name,
                path,
                id: new_id("AROA"),
                create_date: now,
                trust_policy: trust,
                description: p.get("Description").map(str::to_owned),
                max_session_duration: max,
                tags,
                policies: Policies::default(),
                permissions_boundary: boundary,
                service_linked: None,
                trust_compiled: None,
            };
            wire::write_role(&mut w, "Role", account, &role, true);
            svc.apply(vec![Change::Role(role)]).await?;
        }
        CreateServiceLinkedRole => {
            let service = p.req("AWSServiceName")?.to_owned();
            let (role_name, path) = match service.as_str() {
                "ecs.amazonaws.com" => (
                    "AWSServiceRoleForECS",
                    "/aws-service-role/ecs.amazonaws.com/",
                ),
                other => {
                    return Err(IamError::InvalidInput(format!(
                        "Service role name for {other} is not supported by Gantry; only ecs.amazonaws.com has a service-linked role."
                    )));
                }
            };
            if p.get("CustomSuffix").is_some() {
                return Err(IamError::InvalidInput(
                    "Custom suffix is not allowed for AWSServiceRoleForECS".to_owned(),
                ));
            }
            let _g = svc.write.lock().await;
            if svc.dir.read().roles.contains_key(&lower(role_name)) {
                return Err(IamError::InvalidInput(format!(
                    "Service role name {role_name} has been taken in this account, please try a different suffix."
                )));
            }
            let trust = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{service}"}},"Action":"sts:AssumeRole"}}]}}"#
            );
            let role = Role {
                name: role_name.to_owned(),
                path: path.to_owned(),
                id: new_id("AROA"),
                create_date: now,
                trust_policy: trust,
                description: p.get("Description").map(str::to_owned).or_else(|| {
                    Some("Role to enable Amazon ECS to manage your cluster.".to_owned())
                }),
                max_session_duration: 3600,
                tags: Vec::new(),
                policies: Policies {
                    attached: vec![
                        "arn:aws:iam::aws:policy/aws-service-role/AmazonECSServiceRolePolicy"
                            .to_owned(),
                    ],
                    ..Policies::default()
                },
                permissions_boundary: None,
                service_linked: Some(service),
                trust_compiled: None,
            };
            wire::write_role(&mut w, "Role", account, &role, true);
            svc.apply(vec![Change::Role(role)]).await?;
        }
        GetRole => {
            let name = p.req("RoleName")?;
            let dir = svc.dir.read();
            let r = dir.roles.get(&lower(name)).ok_or_else(|| no_role(name))?;
            wire::write_role(&mut w, "Role", account, r, true);
        }
        ListRoles => {
            let prefix = path_param_prefix(p)?;
            let dir = svc.dir.read();
            let (items, marker) = page(
                p,
                dir.roles
                    .iter()
                    .filter(|(_, r)| r.path.starts_with(&prefix)),
            )?;
            w.open("Roles");
            for r in items {
                wire::write_role(&mut w, "member", account, r, false);
            }
            w.close("Roles");
            write_truncation(&mut w, marker);
        }
        DeleteRole => {
            let name = p.req("RoleName")?.to_owned();
            let _g = svc.write.lock().await;
            let rname = {
                let dir = svc.dir.read();
                let r = dir.roles.get(&lower(&name)).ok_or_else(|| no_role(&name))?;
                if r.service_linked.is_some() {
                    return Err(IamError::UnmodifiableEntity(format!(
                        "Cannot perform the operation on the protected role '{}' - this role is only modifiable by AWS",
                        r.name
                    )));
                }
                if dir.profiles.values().any(|ip| ip.roles.contains(&r.name)) {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must remove roles from instance profile first."
                            .to_owned(),
                    ));
                }
                if !r.policies.inline.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must delete policies first.".to_owned(),
                    ));
                }
                if !r.policies.attached.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must detach all policies first.".to_owned(),
                    ));
                }
                r.name.clone()
            };
            svc.apply(vec![Change::DeleteRole(rname)]).await?;
        }
        UpdateAssumeRolePolicy | UpdateRole => {
            let name = p.req("RoleName")?.to_owned();
            let doc = match op {
                UpdateAssumeRolePolicy => {
                    let d = p.req("PolicyDocument")?.to_owned();
                    check_trust_document(&d)?;
                    Some(d)
                }
                _ => None,
            };
            let max = max_session(p)?;
            let _g = svc.write.lock().await;
            let mut r = svc
                .dir
                .read()
                .roles
                .get(&lower(&name))
                .cloned()
                .ok_or_else(|| no_role(&name))?;
            if r.service_linked.is_some() && doc.is_some() {
                return Err(IamError::UnmodifiableEntity(format!(
                    "Cannot perform the operation on the protected role '{}' - this role is only modifiable by AWS",
                    r.name
                )));
            }
            if let Some(d) = doc {
                r.trust_policy = d;
            }
            if op == UpdateRole {
                if let Some(d) = p.get("Description") {
                    r.description = Some(d.to_owned());
                }
                if let Some(m) = max {
                    r.max_session_duration = m;
                }
            }
            svc.apply(vec![Change::Role(r)]).await?;
        }
        TagRole | UntagRole => {
            let name = p.req("RoleName")?.to_owned();
            let _g = svc.write.lock().await;
            let mut r = svc
                .dir
                .read()
                .roles
                .get(&lower(&name))
                .cloned()
                .ok_or_else(|| no_role(&name))?;
            edit_tags(&mut r.tags, op == TagRole, p)?;
            svc.apply(vec![Change::Role(r)]).await?;
        }
        ListRoleTags => {
            let name = p.req("RoleName")?;
            let dir = svc.dir.read();
            let r = dir.roles.get(&lower(name)).ok_or_else(|| no_role(name))?;
            wire::write_tags(&mut w, "Tags", &r.tags);
            w.leaf("IsTruncated", "false");
        }
        // ---- instance profiles ----
        CreateInstanceProfile => {
            let name = p.req("InstanceProfileName")?.to_owned();
            let path = path_param(p)?;
            let tags = wire::parse_tags(p)?;
            let _g = svc.write.lock().await;
            if svc.dir.read().profiles.contains_key(&lower(&name)) {
                return Err(IamError::EntityAlreadyExists(format!(
                    "Instance Profile {name} already exists."
                )));
            }
            let ip = InstanceProfile {
                name,
                path,
                id: new_id("AIPA"),
                create_date: now,
                roles: Vec::new(),
                tags,
            };
            wire::write_profile(&mut w, "InstanceProfile", account, &ip, &[]);
            svc.apply(vec![Change::Profile(ip)]).await?;
        }
        GetInstanceProfile => {
            let name = p.req("InstanceProfileName")?;
            let dir = svc.dir.read();
            let ip = dir
                .profiles
                .get(&lower(name))
                .ok_or_else(|| no_profile(name))?;
            let roles = profile_roles(&dir, ip);
            wire::write_profile(&mut w, "InstanceProfile", account, ip, &roles);
        }
        ListInstanceProfiles | ListInstanceProfilesForRole => {
            let dir = svc.dir.read();
            let role = match op {
                ListInstanceProfilesForRole => {
                    let n = p.req("RoleName")?;
                    Some(
                        dir.roles
                            .get(&lower(n))
                            .ok_or_else(|| no_role(n))?
                            .name
                            .clone(),
                    )
                }
                _ => None,
            };
            let prefix = path_param_prefix(p)?;
            let (items, marker) = page(
                p,
                dir.profiles.iter().filter(|(_, ip)| {
                    ip.path.starts_with(&prefix)
                        && role.as_ref().is_none_or(|r| ip.roles.contains(r))
                }),
            )?;
            w.open("InstanceProfiles");
            for ip in items {
                let roles = profile_roles(&dir, ip);
                wire::write_profile(&mut w, "member", account, ip, &roles);
            }
            w.close("InstanceProfiles");
            write_truncation(&mut w, marker);
        }
        DeleteInstanceProfile => {
            let name = p.req("InstanceProfileName")?.to_owned();
            let _g = svc.write.lock().await;
            let n = {
                let dir = svc.dir.read();
                let ip = dir
                    .profiles
                    .get(&lower(&name))
                    .ok_or_else(|| no_profile(&name))?;
                if !ip.roles.is_empty() {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete entity, must remove roles from instance profile first."
                            .to_owned(),
                    ));
                }
                ip.name.clone()
            };
            svc.apply(vec![Change::DeleteProfile(n)]).await?;
        }
        AddRoleToInstanceProfile | RemoveRoleFromInstanceProfile => {
            let name = p.req("InstanceProfileName")?.to_owned();
            let rname = p.req("RoleName")?.to_owned();
            let _g = svc.write.lock().await;
            let ip = {
                let dir = svc.dir.read();
                let mut ip = dir
                    .profiles
                    .get(&lower(&name))
                    .cloned()
                    .ok_or_else(|| no_profile(&name))?;
                let role = dir
                    .roles
                    .get(&lower(&rname))
                    .ok_or_else(|| no_role(&rname))?;
                if op == AddRoleToInstanceProfile {
                    if !ip.roles.is_empty() {
                        return Err(IamError::LimitExceeded(
                            "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1"
                                .to_owned(),
                        ));
                    }
                    ip.roles.push(role.name.clone());
                } else {
                    if !ip.roles.contains(&role.name) {
                        return Err(IamError::NoSuchEntity(format!(
                            "The role with name {rname} cannot be found in instance profile {name}."
                        )));
                    }
                    ip.roles.retain(|r| r != &role.name);
                }
                ip
            };
            svc.apply(vec![Change::Profile(ip)]).await?;
        }
        // ---- managed policies ----
        CreatePolicy => {
            let name = p.req("PolicyName")?.to_owned();
            let path = path_param(p)?;
            let doc = p.req("PolicyDocument")?.to_owned();
            check_managed_document(&doc)?;
            let tags = wire::parse_tags(p)?;
            let _g = svc.write.lock().await;
            if svc.dir.read().policies.contains_key(&lower(&name)) {
                return Err(IamError::EntityAlreadyExists(format!(
                    "A policy called {name} already exists. Duplicate names are not allowed."
                )));
            }
            let policy = ManagedPolicy {
                name,
                path,
                id: new_id("ANPA"),
                create_date: now,
                update_date: now,
                description: p.get("Description").map(str::to_owned),
                default_version: "v1".to_owned(),
                versions: vec![PolicyVersion {
                    id: "v1".to_owned(),
                    document: doc,
                    create_date: now,
                }],
                next_version: 2,
                tags,
                compiled: None,
            };
            wire::write_policy(&mut w, "Policy", account, &policy, 0);
            svc.apply(vec![Change::Policy(policy)]).await?;
        }
        GetPolicy => {
            let arn = p.req("PolicyArn")?;
            if let Some(m) = aws_managed_policy(arn).filter(|_| is_aws_managed(arn)) {
                let dir = svc.dir.read();
                wire::write_aws_policy(&mut w, "Policy", m, attachment_count(&dir, arn));
            } else {
                let dir = svc.dir.read();
                let pol = policy_by_arn(&dir, account, arn)?;
                wire::write_policy(&mut w, "Policy", account, pol, attachment_count(&dir, arn));
            }
        }
        ListPolicies => {
            let scope = p.get("Scope").unwrap_or("All");
            let only_attached = p.bool("OnlyAttached")?.unwrap_or(false);
            let prefix = path_param_prefix(p)?;
            let dir = svc.dir.read();
            // AWS-managed first (keys sort before local ones), then local.
            let mut entries: BTreeMap<String, Listed<'_>> = BTreeMap::new();
            if scope == "All" || scope == "AWS" {
                for m in AWS_MANAGED_POLICIES {
                    entries.insert(format!("0/{}", m.name), Listed::Aws(m));
                }
            }
            if scope == "All" || scope == "Local" {
                for (k, pol) in &dir.policies {
                    entries.insert(format!("1/{k}"), Listed::Local(pol));
                }
            }
            let (items, marker) = page(
                p,
                entries.iter().filter(|(_, l)| {
                    let arn = l.arn(account);
                    l.path().starts_with(&prefix)
                        && (!only_attached || attachment_count(&dir, &arn) > 0)
                }),
            )?;
            w.open("Policies");
            for l in items {
                let n = attachment_count(&dir, &l.arn(account));
                match l {
                    Listed::Aws(m) => wire::write_aws_policy(&mut w, "member", m, n),
                    Listed::Local(pol) => wire::write_policy(&mut w, "member", account, pol, n),
                }
            }
            w.close("Policies");
            write_truncation(&mut w, marker);
        }
        DeletePolicy => {
            let arn = p.req("PolicyArn")?.to_owned();
            refuse_aws_managed(&arn)?;
            let _g = svc.write.lock().await;
            let name = {
                let dir = svc.dir.read();
                let pol = policy_by_arn(&dir, account, &arn)?;
                if attachment_count(&dir, &arn) > 0 {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete a policy attached to entities.".to_owned(),
                    ));
                }
                if pol.versions.len() > 1 {
                    return Err(IamError::DeleteConflict(
                        "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.".to_owned(),
                    ));
                }
                pol.name.clone()
            };
            svc.apply(vec![Change::DeletePolicy(name)]).await?;
        }
        CreatePolicyVersion => {
            let arn = p.req("PolicyArn")?.to_owned();
            refuse_aws_managed(&arn)?;
            let doc = p.req("PolicyDocument")?.to_owned();
            check_managed_document(&doc)?;
            let set_default = p.bool("SetAsDefault")?.unwrap_or(false);
            let _g = svc.write.lock().await;
            let mut pol = policy_by_arn(&svc.dir.read(), account, &arn)?.clone();
            if pol.versions.len() >= 5 {
                return Err(IamError::LimitExceeded(
                    "A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.".to_owned(),
                ));
            }
            let id = format!("v{}", pol.next_version);
            pol.next_version += 1;
            pol.versions.push(PolicyVersion {
                id: id.clone(),
                document: doc,
                create_date: now,
            });
            if set_default {
                pol.default_version = id.clone();
                pol.update_date = now;
            }
            w.open("PolicyVersion");
            w.leaf("VersionId", &id);
            w.leaf(
                "IsDefaultVersion",
                if set_default { "true" } else { "false" },
            );
            w.leaf("CreateDate", &date(now));
            w.close("PolicyVersion");
            svc.apply(vec![Change::Policy(pol)]).await?;
        }
        GetPolicyVersion => {
            let arn = p.req("PolicyArn")?;
            let vid = p.req("VersionId")?;
            if let Some(m) = aws_managed_policy(arn).filter(|_| is_aws_managed(arn)) {
                if vid != m.default_version_id {
                    return Err(no_version(arn, vid));
                }
                w.open("PolicyVersion");
                w.leaf("Document", &url_encode(m.document));
                w.leaf("VersionId", m.default_version_id);
                w.leaf("IsDefaultVersion", "true");
                w.leaf("CreateDate", m.update_date);
                w.close("PolicyVersion");
            } else {
                let dir = svc.dir.read();
                let pol = policy_by_arn(&dir, account, arn)?;
                let v = pol
                    .versions
                    .iter()
                    .find(|v| v.id == vid)
                    .ok_or_else(|| no_version(arn, vid))?;
                write_version(&mut w, "PolicyVersion", pol, v);
            }
        }
        ListPolicyVersions => {
            let arn = p.req("PolicyArn")?;
            w.open("Versions");
            if let Some(m) = aws_managed_policy(arn).filter(|_| is_aws_managed(arn)) {
                w.open("member");
                w.leaf("VersionId", m.default_version_id);
                w.leaf("IsDefaultVersion", "true");
                w.leaf("CreateDate", m.update_date);
                w.close("member");
            } else {
                let dir = svc.dir.read();
                let pol = policy_by_arn(&dir, account, arn)?;
                for v in pol.versions.iter().rev() {
                    w.open("member");
                    w.leaf("VersionId", &v.id);
                    w.leaf(
                        "IsDefaultVersion",
                        if v.id == pol.default_version {
                            "true"
                        } else {
                            "false"
                        },
                    );
                    w.leaf("CreateDate", &date(v.create_date));
                    w.close("member");
                }
            }
            w.close("Versions");
            w.leaf("IsTruncated", "false");
        }
        DeletePolicyVersion | SetDefaultPolicyVersion => {
            let arn = p.req("PolicyArn")?.to_owned();
            refuse_aws_managed(&arn)?;
            let vid = p.req("VersionId")?.to_owned();
            let _g = svc.write.lock().await;
            let mut pol = policy_by_arn(&svc.dir.read(), account, &arn)?.clone();
            if !pol.versions.iter().any(|v| v.id == vid) {
                return Err(no_version(&arn, &vid));
            }
            if op == DeletePolicyVersion {
                if pol.default_version == vid {
                    return Err(IamError::DeleteConflict(
                        "Cannot delete the default version of a policy.".to_owned(),
                    ));
                }
                pol.versions.retain(|v| v.id != vid);
            } else {
                pol.default_version = vid;
                pol.update_date = now;
            }
            svc.apply(vec![Change::Policy(pol)]).await?;
        }
        ListEntitiesForPolicy => {
            let arn = p.req("PolicyArn")?;
            let dir = svc.dir.read();
            if !is_aws_managed(arn) {
                policy_by_arn(&dir, account, arn)?;
            }
            let has = |x: &Policies| x.attached.iter().any(|a| a == arn);
            w.open("PolicyGroups");
            for g in dir.groups.values().filter(|g| has(&g.policies)) {
                w.open("member");
                w.leaf("GroupName", &g.name);
                w.leaf("GroupId", &g.id);
                w.close("member");
            }
            w.close("PolicyGroups");
            w.open("PolicyUsers");
            for u in dir.users.values().filter(|u| has(&u.policies)) {
                w.open("member");
                w.leaf("UserName", &u.name);
                w.leaf("UserId", &u.id);
                w.close("member");
            }
            w.close("PolicyUsers");
            w.open("PolicyRoles");
            for r in dir.roles.values().filter(|r| has(&r.policies)) {
                w.open("member");
                w.leaf("RoleName", &r.name);
                w.leaf("RoleId", &r.id);
                w.close("member");
            }
            w.close("PolicyRoles");
            w.leaf("IsTruncated", "false");
        }
        // ---- inline policies ----
        PutUserPolicy | PutGroupPolicy | PutRolePolicy => {
            let kind = kind_of(op);
            let entity = p.req(kind.name_param())?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            let doc = p.req("PolicyDocument")?.to_owned();
            gantry_iam_policy::parse_document(&doc, PolicyKind::Identity)?;
            let _g = svc.write.lock().await;
            let change = edit_policies(svc, kind, &entity, |pol, name| {
                let mut inline = pol.inline.clone();
                inline.insert(pname.clone(), doc.clone());
                let total: usize = inline.values().map(|d| policy_size(d)).sum();
                kind.inline_limit().check(total, name)?;
                pol.inline = inline;
                Ok(())
            })?;
            svc.apply(vec![change]).await?;
        }
        GetUserPolicy | GetGroupPolicy | GetRolePolicy => {
            let kind = kind_of(op);
            let entity = p.req(kind.name_param())?;
            let pname = p.req("PolicyName")?;
            let dir = svc.dir.read();
            let (name, pol) = entity_policies(&dir, kind, entity)?;
            let doc = pol.inline.get(pname).ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "The {} policy with name {pname} cannot be found.",
                    kind.word()
                ))
            })?;
            w.leaf(kind.name_param(), name);
            w.leaf("PolicyName", pname);
            w.leaf("PolicyDocument", &url_encode(doc));
        }
        DeleteUserPolicy | DeleteGroupPolicy | DeleteRolePolicy => {
            let kind = kind_of(op);
            let entity = p.req(kind.name_param())?.to_owned();
            let pname = p.req("PolicyName")?.to_owned();
            let _g = svc.write.lock().await;
            let change = edit_policies(svc, kind, &entity, |pol, _| {
                pol.inline.remove(&pname).map(|_| ()).ok_or_else(|| {
                    IamError::NoSuchEntity(format!(
                        "The {} policy with name {pname} cannot be found.",
                        kind.word()
                    ))
                })
            })?;
            svc.apply(vec![change]).await?;
        }
        ListUserPolicies | ListGroupPolicies | ListRolePolicies => {
            let kind = kind_of(op);
            let entity = p.req(kind.name_param())?;
            let dir = svc.dir.read();
            let (_, pol) = entity_policies(&dir, kind, entity)?;
            let (items, marker) = page(p, pol.inline.keys().map(|k| (k, k)))?;
            w.open("PolicyNames");
            for n in items {
                w.leaf("member", n);
            }
            w.close("PolicyNames");
            write_truncation(&mut w, marker);
        }
        // ---- attachments ----
        AttachUserPolicy | AttachGroupPolicy | AttachRolePolicy | DetachUserPolicy
        | DetachGroupPolicy | DetachRolePolicy => {
            let kind = kind_of(op);
            let attach = matches!(op, AttachUserPolicy | AttachGroupPolicy | AttachRolePolicy);
            let entity = p.req(kind.name_param())?.to_owned();
            let arn = p.req("PolicyArn")?.to_owned();
            let _g = svc.write.lock().await;
            if attach && managed_policy(&svc.dir.read(), account, &arn).is_none() {
                return Err(no_policy(&arn));
            }
            let change = edit_policies(svc, kind, &entity, |pol, _| {
                let present = pol.attached.iter().any(|a| a == &arn);
                if attach {
                    if !present {
                        if pol.attached.len() >= 10 {
                            return Err(IamError::LimitExceeded(format!(
                                "Cannot exceed quota for {}: 10",
                                kind.attach_quota()
                            )));
                        }
                        pol.attached.push(arn.clone());
                    }
                    Ok(())
                } else if present {
                    pol.attached.retain(|a| a != &arn);
                    Ok(())
                } else {
                    Err(IamError::NoSuchEntity(format!(
                        "Policy {arn} was not found."
                    )))
                }
            })?;
            svc.apply(vec![change]).await?;
        }
        ListAttachedUserPolicies | ListAttachedGroupPolicies | ListAttachedRolePolicies => {
            let kind = kind_of(op);
            let entity = p.req(kind.name_param())?;
            let dir = svc.dir.read();
            let (_, pol) = entity_policies(&dir, kind, entity)?;
            let keyed: Vec<(String, &String)> = pol
                .attached
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("{i:04}"), a))
                .collect();
            let (items, marker) = page(p, keyed.iter().map(|(k, a)| (k, *a)))?;
            w.open("AttachedPolicies");
            for arn in items {
                write_attached(&mut w, arn);
            }
            w.close("AttachedPolicies");
            write_truncation(&mut w, marker);
        }
        GetAccountAuthorizationDetails => {
            let dir = svc.dir.read();
            let filter = p.list("Filter");
            let want = |f: &str| filter.is_empty() || filter.iter().any(|x| x == f);
            let mut entries: BTreeMap<String, Detail<'_>> = BTreeMap::new();
            if want("User") {
                for (k, u) in &dir.users {
                    entries.insert(format!("1/{k}"), Detail::User(u));
                }
            }
            if want("Group") {
                for (k, g) in &dir.groups {
                    entries.insert(format!("2/{k}"), Detail::Group(g));
                }
            }
            if want("Role") {
                for (k, r) in &dir.roles {
                    entries.insert(format!("3/{k}"), Detail::Role(r));
                }
            }
            if want("LocalManagedPolicy") {
                for (k, pol) in &dir.policies {
                    entries.insert(format!("4/{k}"), Detail::Policy(pol));
                }
            }
            if want("AWSManagedPolicy") {
                for m in AWS_MANAGED_POLICIES {
                    entries.insert(format!("5/{}", m.name), Detail::Aws(m));
                }
            }
            let (items, marker) = page(p, entries.iter())?;
            write_details(&mut w, &dir, account, &items);
            write_truncation(&mut w, marker);
        }
        SimulatePrincipalPolicy => {
            simulate(svc, p, &mut w)?;
        }
        PutUserPermissionsBoundary | DeleteUserPermissionsBoundary => {
            let name = p.req("UserName")?.to_owned();
            let boundary = match op {
                PutUserPermissionsBoundary => Some(p.req("PermissionsBoundary")?.to_owned()),
                _ => None,
            };
            let _g = svc.write.lock().await;
            let mut u = {
                let dir = svc.dir.read();
                if let Some(b) = &boundary {
                    check_boundary(&dir, account, b)?;
                }
                dir.users
                    .get(&lower(&name))
                    .cloned()
                    .ok_or_else(|| no_user(&name))?
            };
            u.permissions_boundary = boundary;
            svc.apply(vec![Change::User(u)]).await?;
        }
        PutRolePermissionsBoundary | DeleteRolePermissionsBoundary => {
            let name = p.req("RoleName")?.to_owned();
            let boundary = match op {
                PutRolePermissionsBoundary => Some(p.req("PermissionsBoundary")?.to_owned()),
                _ => None,
            };
            let _g = svc.write.lock().await;
            let mut r = {
                let dir = svc.dir.read();
                if let Some(b) = &boundary {
                    check_boundary(&dir, account, b)?;
                }
                dir.roles
                    .get(&lower(&name))
                    .cloned()
                    .ok_or_else(|| no_role(&name))?
            };
            if r.service_linked.is_some() {
                return Err(IamError::UnmodifiableEntity(format!(
                    "Cannot perform the operation on the protected role '{}' - this role is only modifiable by AWS",
                    r.name
                )));
            }
            r.permissions_boundary = boundary;
            svc.apply(vec![Change::Role(r)]).await?;
        }
        TagPolicy | UntagPolicy => {
            let arn = p.req("PolicyArn")?.to_owned();
            refuse_aws_managed(&arn)?;
            let _g = svc.write.lock().await;
            let mut pol = policy_by_arn(&svc.dir.read(), account, &arn)?.clone();
            edit_tags(&mut pol.tags, op == TagPolicy, p)?;
            svc.apply(vec![Change::Policy(pol)]).await?;
        }
        ListPolicyTags => {
            let arn = p.req("PolicyArn")?;
            let dir = svc.dir.read();
            let tags = if is_aws_managed(arn) {
                Vec::new()
            } else {
                policy_by_arn(&dir, account, arn)?.tags.clone()
            };
            wire::write_tags(&mut w, "Tags", &tags);
            w.leaf("IsTruncated", "false");
        }
        TagInstanceProfile | UntagInstanceProfile => {
            let name = p.req("InstanceProfileName")?.to_owned();
            let _g = svc.write.lock().await;
            let mut ip = svc
                .dir
                .read()
                .profiles
                .get(&lower(&name))
                .cloned()
                .ok_or_else(|| no_profile(&name))?;
            edit_tags(&mut ip.tags, op == TagInstanceProfile, p)?;
            svc.apply(vec![Change::Profile(ip)]).await?;
        }
        ListInstanceProfileTags => {
            let name = p.req("InstanceProfileName")?;
            let dir = svc.dir.read();
            let ip = dir
                .profiles
                .get(&lower(name))
                .ok_or_else(|| no_profile(name))?;
            wire::write_tags(&mut w, "Tags", &ip.tags);
            w.leaf("IsTruncated", "false");
        }
        other => {
            return Err(IamError::NotImplemented(format!(
                "The operation {} is not supported by this endpoint.",
                other.as_str()
            )));
        }
    }
    Ok(w.finish())
}

fn no_version(arn: &str, vid: &str) -> IamError {
    IamError::NoSuchEntity(format!("Policy {arn} version {vid} does not exist."))
}

fn refuse_aws_managed(arn: &str) -> Result<(), IamError> {
    if arn.starts_with("arn:aws:iam::aws:policy/") {
        return Err(IamError::InvalidInput(format!(
            "Policy {arn} is an AWS managed policy and cannot be changed."
        )));
    }
    Ok(())
}

fn check_boundary(dir: &Directory, account: &str, arn: &str) -> Result<(), IamError> {
    if managed_policy(dir, account, arn).is_none() {
        return Err(IamError::InvalidInput(format!("ARN {arn} is not valid.")));
    }
    Ok(())
}

fn path_param_prefix(p: &Params) -> Result<String, IamError> {
    let prefix = p.get("PathPrefix").unwrap_or("/").to_owned();
    if !prefix.starts_with('/') {
        return Err(IamError::validation(
            "The specified value for pathPrefix is invalid. It must begin with /.",
        ));
    }
    Ok(prefix)
}

fn max_session(p: &Params) -> Result<Option<u32>, IamError> {
    let m = p.u32("MaxSessionDuration")?;
    if let Some(v) = m
        && !(3600..=43200).contains(&v)
    {
        return Err(IamError::validation(format!(
            "1 validation error detected: Value '{v}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value greater than or equal to 3600"
        )));
    }
    Ok(m)
}

/// `UserName`, or the calling user when absent (IAM's rule for access key operations).
fn caller_user(p: &Params, ctx: &RequestContext) -> Result<String, IamError> {
    if let Some(n) = p.get("UserName") {
        return Ok(n.to_owned());
    }
    match ctx.caller.as_deref() {
        Some(c) if c.kind == gantry_iam_policy::PrincipalKind::User => Ok(c.name.clone()),
        _ => Err(IamError::Validation(
            "Must specify userName when calling with non-User credentials".to_owned(),
        )),
    }
}

fn edit_tags(tags: &mut Vec<crate::model::Tag>, add: bool, p: &Params) -> Result<(), IamError> {
    if add {
        wire::merge_tags(tags, wire::parse_tags(p)?)
    } else {
        let keys = p.list("TagKeys");
        tags.retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
        Ok(())
    }
}

fn kind_of(op: IamOperation) -> Kind {
    let name = op.as_str();
    if name.contains("User") {
        Kind::User
    } else if name.contains("Group") {
        Kind::Group
    } else {
        Kind::Role
    }
}

fn entity_policies<'a>(
    dir: &'a Directory,
    kind: Kind,
    name: &str,
) -> Result<(&'a str, &'a Policies), IamError> {
    match kind {
        Kind::User => dir
            .users
            .get(&lower(name))
            .map(|u| (u.name.as_str(), &u.policies))
            .ok_or_else(|| no_user(name)),
        Kind::Group => dir
            .groups
            .get(&lower(name))
            .map(|g| (g.name.as_str(), &g.policies))
            .ok_or_else(|| no_group(name)),
        Kind::Role => dir
            .roles
            .get(&lower(name))
            .map(|r| (r.name.as_str(), &r.policies))
            .ok_or_else(|| no_role(name)),
    }
}

/// Applies `f` to a copy of the entity's policies; the change to commit.
fn edit_policies(
    svc: &IamService,
    kind: Kind,
    name: &str,
    f: impl FnOnce(&mut Policies, &str) -> Result<(), IamError>,
) -> Result<Change, IamError> {
    let dir = svc.dir.read();
    match kind {
        Kind::User => {
            let mut u = dir
                .users
                .get(&lower(name))
                .cloned()
                .ok_or_else(|| no_user(name))?;
            f(&mut u.policies, &u.name.clone())?;
            Ok(Change::User(u))
        }
        Kind::Group => {
            let mut g = dir
                .groups
                .get(&lower(name))
                .cloned()
                .ok_or_else(|| no_group(name))?;
            f(&mut g.policies, &g.name.clone())?;
            Ok(Change::Group(g))
        }
        Kind::Role => {
            let mut r = dir
                .roles
                .get(&lower(name))
                .cloned()
                .ok_or_else(|| no_role(name))?;
            if r.service_linked.is_some() {
                return Err(IamError::UnmodifiableEntity(format!(
                    "Cannot perform the operation on the protected role '{}' - this role is only modifiable by AWS",
                    r.name
                )));
            }
            f(&mut r.policies, &r.name.clone())?;
            Ok(Change::Role(r))
        }
    }
}

fn profile_roles<'a>(dir: &'a Directory, ip: &InstanceProfile) -> Vec<&'a Role> {
    ip.roles
        .iter()
        .filter_map(|r| dir.roles.get(&lower(r)))
        .collect()
}

fn write_attached(w: &mut XmlWriter, arn: &str) {
    w.open("member");
    w.leaf("PolicyName", arn.rsplit('/').next().unwrap_or(arn));
    w.leaf("PolicyArn", arn);
    w.close("member");
}

fn write_version(w: &mut XmlWriter, tag: &str, pol: &ManagedPolicy, v: &PolicyVersion) {
    w.open(tag);
    w.leaf("Document", &url_encode(&v.document));
    w.leaf("VersionId", &v.id);
    w.leaf(
        "IsDefaultVersion",
        if v.id == pol.default_version {
            "true"
        } else {
            "false"
        },
    );
    w.leaf("CreateDate", &date(v.create_date));
    w.close(tag);
}

enum Listed<'a> {
    Aws(&'static gantry_iam_policy::ManagedPolicy),
    Local(&'a ManagedPolicy),
}

impl Listed<'_> {
    fn arn(&self, account: &str) -> String {
        match self {
            Listed::Aws(m) => m.arn.to_owned(),
            Listed::Local(p) => p.arn(account),
        }
    }
    fn path(&self) -> &str {
        match self {
            Listed::Aws(m) => m.path,
            Listed::Local(p) => &p.path,
        }
    }
}

enum Detail<'a> {
    User(&'a User),
    Group(&'a Group),
    Role(&'a Role),
    Policy(&'a ManagedPolicy),
    Aws(&'static gantry_iam_policy::ManagedPolicy),
}

fn write_inline(w: &mut XmlWriter, tag: &str, pol: &Policies) {
    w.open(tag);
    for (name, doc) in &pol.inline {
        w.open("member");
        w.leaf("PolicyName", name);
        w.leaf("PolicyDocument", &url_encode(doc));
        w.close("member");
    }
    w.close(tag);
}

fn write_attached_list(w: &mut XmlWriter, pol: &Policies) {
    w.open("AttachedManagedPolicies");
    for arn in &pol.attached {
        write_attached(w, arn);
    }
    w.close("AttachedManagedPolicies");
}

fn write_details(w: &mut XmlWriter, dir: &Directory, account: &str, items: &[&Detail<'_>]) {
    w.open("UserDetailList");
    for d in items {
        if let Detail::User(u) = d {
            w.open("member");
            w.leaf("Path", &u.path);
            w.leaf("UserName", &u.name);
            w.leaf("UserId", &u.id);
            w.leaf("Arn", &wire::user_arn(account, u));
            w.leaf("CreateDate", &date(u.create_date));
            write_inline(w, "UserPolicyList", &u.policies);
            w.open("GroupList");
            for g in &u.groups {
                w.leaf("member", g);
            }
            w.close("GroupList");
            write_attached_list(w, &u.policies);
            wire::write_tags(w, "Tags", &u.tags);
            w.close("member");
        }
    }
    w.close("UserDetailList");
    w.open("GroupDetailList");
    for d in items {
        if let Detail::Group(g) = d {
            w.open("member");
            w.leaf("Path", &g.path);
            w.leaf("GroupName", &g.name);
            w.leaf("GroupId", &g.id);
            w.leaf("Arn", &wire::group_arn(account, g));
            w.leaf("CreateDate", &date(g.create_date));
            write_inline(w, "GroupPolicyList", &g.policies);
            write_attached_list(w, &g.policies);
            w.close("member");
        }
    }
    w.close("GroupDetailList");
    w.open("RoleDetailList");
    for d in items {
        if let Detail::Role(r) = d {
            w.open("member");
            w.leaf("Path", &r.path);
            w.leaf("RoleName", &r.name);
            w.leaf("RoleId", &r.id);
            w.leaf("Arn", &wire::role_arn(account, r));
            w.leaf("CreateDate", &date(r.create_date));
            w.leaf("AssumeRolePolicyDocument", &url_encode(&r.trust_policy));
            w.open("InstanceProfileList");
            for ip in dir
                .profiles
                .values()
                .filter(|ip| ip.roles.contains(&r.name))
            {
                let roles = profile_roles(dir, ip);
                wire::write_profile(w, "member", account, ip, &roles);
            }
            w.close("InstanceProfileList");
            write_inline(w, "RolePolicyList", &r.policies);
            write_attached_list(w, &r.policies);
            wire::write_tags(w, "Tags", &r.tags);
            w.close("member");
        }
    }
    w.close("RoleDetailList");
    w.open("Policies");
    for d in items {
        match d {
            Detail::Policy(pol) => {
                let arn = pol.arn(account);
                w.open("member");
                w.leaf("PolicyName", &pol.name);
                w.leaf("PolicyId", &pol.id);
                w.leaf("Arn", &arn);
                w.leaf("Path", &pol.path);
                w.leaf("DefaultVersionId", &pol.default_version);
                w.leaf("AttachmentCount", &attachment_count(dir, &arn).to_string());
                w.leaf("PermissionsBoundaryUsageCount", "0");
                w.leaf("IsAttachable", "true");
                if let Some(desc) = &pol.description {
                    w.leaf("Description", desc);
                }
                w.leaf("CreateDate", &date(pol.create_date));
                w.leaf("UpdateDate", &date(pol.update_date));
                w.open("PolicyVersionList");
                for v in &pol.versions {
                    write_version(w, "member", pol, v);
                }
                w.close("PolicyVersionList");
                w.close("member");
            }
            Detail::Aws(m) => {
                w.open("member");
                w.leaf("PolicyName", m.name);
                w.leaf("PolicyId", &wire::aws_policy_id(m.name));
                w.leaf("Arn", m.arn);
                w.leaf("Path", m.path);
                w.leaf("DefaultVersionId", m.default_version_id);
                w.leaf("AttachmentCount", &attachment_count(dir, m.arn).to_string());
                w.leaf("PermissionsBoundaryUsageCount", "0");
                w.leaf("IsAttachable", "true");
                w.leaf("Description", m.description);
                w.leaf("CreateDate", m.create_date);
                w.leaf("UpdateDate", m.update_date);
                w.open("PolicyVersionList");
                w.open("member");
                w.leaf("Document", &url_encode(m.document));
                w.leaf("VersionId", m.default_version_id);
                w.leaf("IsDefaultVersion", "true");
                w.leaf("CreateDate", m.update_date);
                w.close("member");
                w.close("PolicyVersionList");
                w.close("member");
            }
            _ => {}
        }
    }
    w.close("Policies");
}

/// SimulatePrincipalPolicy: every action against every resource with the source's identity
/// policies (plus `PolicyInputList`) and the optional `ResourcePolicy`.
fn simulate(svc: &IamService, p: &Params, w: &mut XmlWriter) -> Result<(), IamError> {
    let source = p.req("PolicySourceArn")?;
    let actions = p.list("ActionNames");
    if actions.is_empty() {
        return Err(IamError::validation(
            "1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null",
        ));
    }
    let mut resources = p.list("ResourceArns");
    if resources.is_empty() {
        resources.push("*".to_owned());
    }
    let account = svc.account.as_str();
    let invalid = || IamError::InvalidInput(format!("Invalid ARN: {source}"));
    let rest = source
        .strip_prefix(&format!("arn:aws:iam::{account}:"))
        .ok_or_else(invalid)?;
    let (kind, path_name) = rest.split_once('/').ok_or_else(invalid)?;
    let name = path_name.rsplit('/').next().unwrap_or(path_name);
    let mut identity: Vec<std::sync::Arc<Policy>> = Vec::new();
    let dir = svc.dir.read();
    let principal = match kind {
        "user" => {
            let u = dir.users.get(&lower(name)).ok_or_else(|| no_user(name))?;
            identity.extend(u.policies.compiled.iter().cloned());
            identity.extend(
                u.policies
                    .attached
                    .iter()
                    .filter_map(|a| managed_policy(&dir, account, a)),
            );
            for g in &u.groups {
                if let Some(g) = dir.groups.get(&lower(g)) {
                    identity.extend(g.policies.compiled.iter().cloned());
                    identity.extend(
                        g.policies
                            .attached
                            .iter()
                            .filter_map(|a| managed_policy(&dir, account, a)),
                    );
                }
            }
            Principal::user(account, &u.path, &u.name, &u.id)
        }
        "group" => {
            let g = dir.groups.get(&lower(name)).ok_or_else(|| no_group(name))?;
            identity.extend(g.policies.compiled.iter().cloned());
            identity.extend(
                g.policies
                    .attached
                    .iter()
                    .filter_map(|a| managed_policy(&dir, account, a)),
            );
            Principal::user(account, "/", "simulated", "AIDASIMULATED")
        }
        "role" => {
            let r = dir.roles.get(&lower(name)).ok_or_else(|| no_role(name))?;
            identity.extend(r.policies.compiled.iter().cloned());
            identity.extend(
                r.policies
                    .attached
                    .iter()
                    .filter_map(|a| managed_policy(&dir, account, a)),
            );
            Principal::assumed_role(account, &r.path, &r.name, &r.id, "simulated")
        }
        _ => return Err(invalid()),
    };
    drop(dir);
    for doc in p.list("PolicyInputList") {
        identity.push(std::sync::Arc::new(Policy::parse(
            &doc,
            PolicyKind::Identity,
        )?));
    }
    let resource_policy = match p.get("ResourcePolicy") {
        Some(doc) => Some(Policy::parse(doc, PolicyKind::Resource)?),
        None => None,
    };
    let mut context = Context::new();
    for e in p.structs("ContextEntries") {
        let key = e.req("ContextKeyName")?;
        context.set(key, e.list("ContextKeyValues"));
    }
    let refs: Vec<&Policy> = identity.iter().map(|a| a.as_ref()).collect();
    let set = PolicySet {
        identity: &refs,
        resource: resource_policy.as_ref(),
        ..PolicySet::default()
    };
    w.open("EvaluationResults");
    for action in &actions {
        for resource in &resources {
            let res = [resource.as_str()];
            let req = Request {
                principal: &principal,
                action,
                resources: if resource == "*" { &[] } else { &res },
                resource_account: None,
                context: &context,
            };
            let e = evaluate(&req, &set);
            w.open("member");
            w.leaf("EvalActionName", action);
            w.leaf("EvalResourceName", resource);
            w.leaf(
                "EvalDecision",
                match e.decision {
                    Decision::Allow => "allowed",
                    Decision::ExplicitDeny => "explicitDeny",
                    Decision::ImplicitDeny => "implicitDeny",
                },
            );
            w.open("MatchedStatements");
            for m in &e.matched {
                w.open("member");
                w.leaf(
                    "SourcePolicyId",
                    &m.sid
                        .clone()
                        .unwrap_or_else(|| format!("policy{}", m.policy_index + 1)),
                );
                w.leaf(
                    "SourcePolicyType",
                    match m.policy_type {
                        PolicyType::ResourceBased => "resource",
                        _ => "IAM Policy",
                    },
                );
                w.close("member");
            }
            w.close("MatchedStatements");
            w.open("MissingContextValues");
            w.close("MissingContextValues");
            w.close("member");
        }
    }
    w.close("EvaluationResults");
    w.leaf("IsTruncated", "false");
    Ok(())
}
