//! IAM's wire: flattened query parameters (`Tags.member.N.Key`), the XML shapes botocore reads,
//! URL-encoded policy documents (IAM returns documents percent-encoded; botocore decodes them),
//! and `Marker`/`MaxItems` pagination.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use gantry_aws_proto::pagination::{decode_token, encode_token};
use gantry_aws_proto::query::{QueryRequest, XmlWriter};

use crate::error::IamError;
use crate::model::{AccessKey, Group, InstanceProfile, ManagedPolicy, Role, Tag, User};

/// Flattened query parameters.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    pub fn from_request(req: &QueryRequest) -> Self {
        let mut map = BTreeMap::new();
        for (k, v) in req.pairs() {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Self { map }
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            map: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A required member; IAM's wording when it is missing.
    pub fn req(&self, name: &str) -> Result<&str, IamError> {
        self.get(name).ok_or_else(|| {
            IamError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ))
        })
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, IamError> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<u32>().map_err(|_| {
                    IamError::validation(format!("'{v}' is not a valid value for {name}"))
                })
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, IamError> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(IamError::validation(format!(
                    "'{v}' is not a valid boolean for {name}"
                ))),
            })
            .transpose()
    }

    /// `name.member.N`, ordered by N.
    pub fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u64, String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, v.clone())))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// `name.member.N.<rest>` as one `Params` per N, ordered by N.
    pub fn structs(&self, name: &str) -> Vec<Params> {
        let prefix = format!("{name}.member.");
        let mut items: BTreeMap<u64, Params> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            let Some((i, member)) = rest.split_once('.') else {
                continue;
            };
            let Ok(i) = i.parse::<u64>() else { continue };
            items
                .entry(i)
                .or_default()
                .map
                .insert(member.to_owned(), v.clone());
        }
        items.into_values().collect()
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `Tags.member.N.Key/Value`; at most 50, keys unique.
pub fn parse_tags(p: &Params) -> Result<Vec<Tag>, IamError> {
    let mut out: Vec<Tag> = Vec::new();
    for t in p.structs("Tags") {
        let key = t.req("Key")?.to_owned();
        let value = t.get("Value").unwrap_or("").to_owned();
        if out.iter().any(|o| o.key == key) {
            return Err(IamError::InvalidInput(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive."
                    .to_owned(),
            ));
        }
        out.push(Tag { key, value });
    }
    if out.len() > 50 {
        return Err(IamError::LimitExceeded(
            "The number of tags has reached the maximum limit.".to_owned(),
        ));
    }
    Ok(out)
}

/// Merges `new` into `tags` (same key: value replaced), keeping the 50-tag quota.
pub fn merge_tags(tags: &mut Vec<Tag>, new: Vec<Tag>) -> Result<(), IamError> {
    for t in new {
        match tags.iter_mut().find(|o| o.key.eq_ignore_ascii_case(&t.key)) {
            Some(o) => o.value = t.value,
            None => tags.push(t),
        }
    }
    if tags.len() > 50 {
        return Err(IamError::LimitExceeded(
            "The number of tags has reached the maximum limit.".to_owned(),
        ));
    }
    Ok(())
}

/// A path: `/` or `/a/b/`, as IAM's model pattern says.
pub fn check_path(path: &str) -> Result<(), IamError> {
    let ok = path == "/"
        || (path.starts_with('/')
            && path.ends_with('/')
            && path.len() <= 512
            && path.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c)));
    if ok {
        Ok(())
    } else {
        Err(IamError::validation(
            "The specified value for path is invalid. It must begin and end with / and contain only alphanumeric characters and/or / characters.",
        ))
    }
}

/// The percent-encoding IAM applies to documents in responses (RFC 3986 unreserved kept).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// ISO 8601 without milliseconds, as IAM writes dates.
pub fn date(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    let s = gantry_aws_proto::pagination::iso8601(t);
    // `2026-11-21T23:40:12.123Z` → `2026-11-21T23:40:12Z`
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

/// One page of `items` (sorted by key) after `Marker`, at most `MaxItems` (1-1000, default 100).
pub fn page<'a, T>(
    p: &Params,
    items: impl Iterator<Item = (&'a String, T)>,
) -> Result<(Vec<T>, Option<String>), IamError> {
    let max = p.u32("MaxItems")?.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(IamError::validation(format!(
            "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value less than or equal to 1000"
        )));
    }
    let after = match p.get("Marker") {
        Some(m) => Some(
            decode_token(m).ok_or_else(|| IamError::validation("Invalid Marker.".to_owned()))?,
        ),
        None => None,
    };
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if after.as_deref().is_some_and(|a| k.as_str() <= a) {
            continue;
        }
        if out.len() == max as usize {
            more = true;
            break;
        }
        last = Some(k.clone());
        out.push(v);
    }
    Ok((
        out,
        if more {
            last.map(|l| encode_token(&l))
        } else {
            None
        },
    ))
}

/// `<IsTruncated>` and `<Marker>` after a list.
pub fn write_truncation(w: &mut XmlWriter, marker: Option<String>) {
    w.leaf(
        "IsTruncated",
        if marker.is_some() { "true" } else { "false" },
    );
    if let Some(m) = marker {
        w.leaf("Marker", &m);
    }
}

pub fn write_tags(w: &mut XmlWriter, tag: &str, tags: &[Tag]) {
    w.open(tag);
    for t in tags {
        w.open("member");
        w.leaf("Key", &t.key);
        w.leaf("Value", &t.value);
        w.close("member");
    }
    w.close(tag);
}

pub fn user_arn(account: &str, u: &User) -> String {
    format!("arn:aws:iam::{account}:user{}{}", u.path, u.name)
}

pub fn group_arn(account: &str, g: &Group) -> String {
    format!("arn:aws:iam::{account}:group{}{}", g.path, g.name)
}

pub fn role_arn(account: &str, r: &Role) -> String {
    format!("arn:aws:iam::{account}:role{}{}", r.path, r.name)
}

pub fn profile_arn(account: &str, p: &InstanceProfile) -> String {
    format!(
        "arn:aws:iam::{account}:instance-profile{}{}",
        p.path, p.name
    )
}

/// The `User` shape.
pub fn write_user(w: &mut XmlWriter, tag: &str, account: &str, u: &User, with_tags: bool) {
    w.open(tag);
    w.leaf("Path", &u.path);
    w.leaf("UserName", &u.name);
    w.leaf("UserId", &u.id);
    w.leaf("Arn", &user_arn(account, u));
    w.leaf("CreateDate", &date(u.create_date));
    if let Some(b) = &u.permissions_boundary {
        write_boundary(w, b);
    }
    if with_tags && !u.tags.is_empty() {
        write_tags(w, "Tags", &u.tags);
    }
    w.close(tag);
}

fn write_boundary(w: &mut XmlWriter, arn: &str) {
    w.open("PermissionsBoundary");
    w.leaf("PermissionsBoundaryType", "Policy");
    w.leaf("PermissionsBoundaryArn", arn);
    w.close("PermissionsBoundary");
}

/// The `Group` shape.
pub fn write_group(w: &mut XmlWriter, tag: &str, account: &str, g: &Group) {
    w.open(tag);
    w.leaf("Path", &g.path);
    w.leaf("GroupName", &g.name);
    w.leaf("GroupId", &g.id);
    w.leaf("Arn", &group_arn(account, g));
    w.leaf("CreateDate", &date(g.create_date));
    w.close(tag);
}

/// The `Role` shape.
pub fn write_role(w: &mut XmlWriter, tag: &str, account: &str, r: &Role, full: bool) {
    w.open(tag);
    w.leaf("Path", &r.path);
    w.leaf("RoleName", &r.name);
    w.leaf("RoleId", &r.id);
    w.leaf("Arn", &role_arn(account, r));
    w.leaf("CreateDate", &date(r.create_date));
    w.leaf("AssumeRolePolicyDocument", &url_encode(&r.trust_policy));
    if let Some(d) = &r.description {
        w.leaf("Description", d);
    }
    w.leaf("MaxSessionDuration", &r.max_session_duration.to_string());
    if let Some(b) = &r.permissions_boundary {
        write_boundary(w, b);
    }
    if full && !r.tags.is_empty() {
        write_tags(w, "Tags", &r.tags);
    }
    w.close(tag);
}

/// The `Policy` shape of a customer-managed policy.
pub fn write_policy(
    w: &mut XmlWriter,
    tag: &str,
    account: &str,
    p: &ManagedPolicy,
    attachments: usize,
) {
    w.open(tag);
    w.leaf("PolicyName", &p.name);
    w.leaf("PolicyId", &p.id);
    w.leaf("Arn", &p.arn(account));
    w.leaf("Path", &p.path);
    w.leaf("DefaultVersionId", &p.default_version);
    w.leaf("AttachmentCount", &attachments.to_string());
    w.leaf("PermissionsBoundaryUsageCount", "0");
    w.leaf("IsAttachable", "true");
    if let Some(d) = &p.description {
        w.leaf("Description", d);
    }
    w.leaf("CreateDate", &date(p.create_date));
    w.leaf("UpdateDate", &date(p.update_date));
    if !p.tags.is_empty() {
        write_tags(w, "Tags", &p.tags);
    }
    w.close(tag);
}

/// The `Policy` shape of an AWS-managed policy.
pub fn write_aws_policy(
    w: &mut XmlWriter,
    tag: &str,
    m: &gantry_iam_policy::ManagedPolicy,
    attachments: usize,
) {
    w.open(tag);
    w.leaf("PolicyName", m.name);
    w.leaf("PolicyId", &aws_policy_id(m.name));
    w.leaf("Arn", m.arn);
    w.leaf("Path", m.path);
    w.leaf("DefaultVersionId", m.default_version_id);
    w.leaf("AttachmentCount", &attachments.to_string());
    w.leaf("PermissionsBoundaryUsageCount", "0");
    w.leaf("IsAttachable", "true");
    w.leaf("Description", m.description);
    w.leaf("CreateDate", m.create_date);
    w.leaf("UpdateDate", m.update_date);
    w.close(tag);
}

/// A stable `ANPA…` id for an AWS-managed policy (derived from its name).
pub fn aws_policy_id(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::from("ANPAI");
    for round in 0..16u8 {
        for b in name.bytes().chain([round]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push(ALPHABET[(h % 32) as usize] as char);
    }
    out
}

pub fn write_key(w: &mut XmlWriter, tag: &str, k: &AccessKey) {
    w.open(tag);
    w.leaf("UserName", &k.user);
    w.leaf("AccessKeyId", &k.id);
    w.leaf("Status", k.status.as_str());
    w.leaf("CreateDate", &date(k.create_date));
    w.close(tag);
}

pub fn write_profile(
    w: &mut XmlWriter,
    tag: &str,
    account: &str,
    p: &InstanceProfile,
    roles: &[&Role],
) {
    w.open(tag);
    w.leaf("Path", &p.path);
    w.leaf("InstanceProfileName", &p.name);
    w.leaf("InstanceProfileId", &p.id);
    w.leaf("Arn", &profile_arn(account, p));
    w.leaf("CreateDate", &date(p.create_date));
    w.open("Roles");
    for r in roles {
        write_role(w, "member", account, r, false);
    }
    w.close("Roles");
    if !p.tags.is_empty() {
        write_tags(w, "Tags", &p.tags);
    }
    w.close(tag);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_percent_encoded_as_iam_does() {
        assert_eq!(
            url_encode(r#"{"Version": "2012-10-17"}"#),
            "%7B%22Version%22%3A%20%222012-10-17%22%7D"
        );
    }

    #[test]
    fn pages_follow_markers_to_the_end() {
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut pairs = vec![("MaxItems", "2")];
            if let Some(m) = &marker {
                pairs.push(("Marker", m.as_str()));
            }
            let p = Params::from_pairs(&pairs);
            let (items, next) = page(&p, keys.iter().map(|k| (k, k.clone()))).unwrap();
            assert!(items.len() <= 2);
            seen.extend(items);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        assert_eq!(seen, keys);
    }

    proptest::proptest! {
        /// Following markers visits every item exactly once, in order, whatever the page size.
        #[test]
        fn markers_visit_every_item_once(n in 0usize..60, size in 1u32..12) {
            let keys: Vec<String> = (0..n).map(|i| format!("k{i:03}")).collect();
            let mut seen = Vec::new();
            let mut marker: Option<String> = None;
            for _ in 0..=n {
                let size_text = size.to_string();
                let mut pairs = vec![("MaxItems", size_text.as_str())];
                if let Some(m) = &marker {
                    pairs.push(("Marker", m.as_str()));
                }
                let p = Params::from_pairs(&pairs);
                let (items, next) = page(&p, keys.iter().map(|k| (k, k.clone()))).unwrap();
                proptest::prop_assert!(items.len() <= size as usize);
                seen.extend(items);
                match next {
                    Some(m) => marker = Some(m),
                    None => break,
                }
            }
            proptest::prop_assert_eq!(seen, keys);
        }
    }

    #[test]
    fn dates_have_no_milliseconds() {
        assert_eq!(date(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
