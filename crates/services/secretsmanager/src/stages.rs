//! Staging labels, pure: attaching a new version, moving a label (UpdateSecretVersionStage), and
//! removing outdated versions. Invariants: a label is on at most one version, and once a secret
//! has a version, exactly one version holds `AWSCURRENT`.

use std::collections::BTreeMap;

use crate::model::{AWSCURRENT, AWSPREVIOUS, DAY_MS, VersionMeta};

/// Most versions a secret keeps before outdated ones are removed.
pub const MAX_VERSIONS: usize = 100;
/// Most staging labels across the versions of one secret.
pub const MAX_LABELS: usize = 20;

/// Why a label cannot move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// The label is on another version and the request did not name it in RemoveFromVersionId.
    #[error(
        "The parameter RemoveFromVersionId can't be empty. Staging label {label} is currently attached to version {holder}, so you must explicitly reference that version in RemoveFromVersionId."
    )]
    RemoveFromRequired { label: String, holder: String },
    /// RemoveFromVersionId names a version that does not hold the label.
    #[error(
        "The staging label {label} is not attached to version {version}, so you can't remove it from that version."
    )]
    NotAttached { label: String, version: String },
    /// A version id the secret does not have.
    #[error("Secrets Manager can't find the specified secret version: {0}")]
    NoSuchVersion(String),
    /// Removing AWSCURRENT without moving it: the secret would have no current version.
    #[error(
        "You can't remove the staging label AWSCURRENT from version {0} without moving it to another version with MoveToVersionId."
    )]
    CurrentWouldVanish(String),
    /// More labels than a secret may carry.
    #[error("A secret can have at most {MAX_LABELS} staging labels across all of its versions.")]
    TooManyLabels,
}

fn detach(versions: &mut BTreeMap<String, VersionMeta>, label: &str) -> Option<String> {
    let mut holder = None;
    for (id, v) in versions.iter_mut() {
        if let Some(i) = v.stages.iter().position(|s| s == label) {
            v.stages.remove(i);
            holder = Some(id.clone());
        }
    }
    holder
}

fn attach(versions: &mut BTreeMap<String, VersionMeta>, id: &str, label: &str) {
    if let Some(v) = versions.get_mut(id)
        && !v.stages.iter().any(|s| s == label)
    {
        v.stages.push(label.to_owned());
    }
}

fn label_count(versions: &BTreeMap<String, VersionMeta>) -> usize {
    versions.values().map(|v| v.stages.len()).sum()
}

/// Adds version `id` (already in `versions`, without labels) with `labels`: each label leaves the
/// version that held it; when `AWSCURRENT` moves, `AWSPREVIOUS` goes to the version it left. The
/// first version of a secret always gets `AWSCURRENT`.
pub fn attach_new_version(
    versions: &mut BTreeMap<String, VersionMeta>,
    id: &str,
    labels: &[String],
) -> Result<(), StageError> {
    let first = versions.len() == 1;
    let mut labels: Vec<String> = labels.to_vec();
    if first && !labels.iter().any(|l| l == AWSCURRENT) {
        labels.push(AWSCURRENT.to_owned());
    }
    for label in &labels {
        let previous = detach(versions, label);
        attach(versions, id, label);
        if label == AWSCURRENT
            && let Some(prev) = previous.filter(|p| p != id)
        {
            detach(versions, AWSPREVIOUS);
            attach(versions, &prev, AWSPREVIOUS);
        }
    }
    if label_count(versions) > MAX_LABELS {
        return Err(StageError::TooManyLabels);
    }
    Ok(())
}

/// UpdateSecretVersionStage: removes `label` from `remove_from` and/or attaches it to `move_to`.
pub fn move_label(
    versions: &mut BTreeMap<String, VersionMeta>,
    label: &str,
    remove_from: Option<&str>,
    move_to: Option<&str>,
) -> Result<(), StageError> {
    for id in [remove_from, move_to].into_iter().flatten() {
        if !versions.contains_key(id) {
            return Err(StageError::NoSuchVersion(id.to_owned()));
        }
    }
    let holder = versions
        .iter()
        .find(|(_, v)| v.stages.iter().any(|s| s == label))
        .map(|(id, _)| id.clone());
    match (remove_from, &holder) {
        (Some(r), Some(h)) if r != h => {
            return Err(StageError::NotAttached {
                label: label.to_owned(),
                version: r.to_owned(),
            });
        }
        (Some(r), None) => {
            return Err(StageError::NotAttached {
                label: label.to_owned(),
                version: r.to_owned(),
            });
        }
        (None, Some(h)) if move_to != Some(h.as_str()) => {
            return Err(StageError::RemoveFromRequired {
                label: label.to_owned(),
                holder: h.clone(),
            });
        }
        _ => {}
    }
    if label == AWSCURRENT
        && move_to.is_none()
        && let Some(h) = &holder
    {
        return Err(StageError::CurrentWouldVanish(h.clone()));
    }
    if let Some(to) = move_to {
        let previous = detach(versions, label);
        attach(versions, to, label);
        if label == AWSCURRENT
            && let Some(prev) = previous.filter(|p| p != to)
        {
            detach(versions, AWSPREVIOUS);
            attach(versions, &prev, AWSPREVIOUS);
        }
    } else {
        detach(versions, label);
    }
    if label_count(versions) > MAX_LABELS {
        return Err(StageError::TooManyLabels);
    }
    Ok(())
}

/// Removes outdated versions (no label, created more than a day before `now`), oldest first,
/// while the secret has more than [`MAX_VERSIONS`]. Returns the removed ids.
pub fn prune(versions: &mut BTreeMap<String, VersionMeta>, now: u64) -> Vec<String> {
    let mut removed = Vec::new();
    if versions.len() <= MAX_VERSIONS {
        return removed;
    }
    let mut outdated: Vec<(u64, String)> = versions
        .iter()
        .filter(|(_, v)| v.stages.is_empty() && v.created_ms + DAY_MS <= now)
        .map(|(id, v)| (v.created_ms, id.clone()))
        .collect();
    outdated.sort();
    for (_, id) in outdated {
        if versions.len() <= MAX_VERSIONS {
            break;
        }
        versions.remove(&id);
        removed.push(id);
    }
    removed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::ValueKind;
    use proptest::prelude::*;

    fn meta(created: u64) -> VersionMeta {
        VersionMeta {
            stages: vec![],
            created_ms: created,
            last_accessed_ms: None,
            kind: ValueKind::String,
            kms_key_arn: "k".into(),
        }
    }

    fn add(
        v: &mut BTreeMap<String, VersionMeta>,
        id: &str,
        labels: &[&str],
    ) -> Result<(), StageError> {
        v.insert(id.into(), meta(0));
        let labels: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        attach_new_version(v, id, &labels)
    }

    fn stages(v: &BTreeMap<String, VersionMeta>, id: &str) -> Vec<String> {
        v[id].stages.clone()
    }

    #[test]
    fn new_current_versions_push_the_old_one_to_previous() {
        let mut v = BTreeMap::new();
        add(&mut v, "a", &[]).unwrap();
        assert_eq!(stages(&v, "a"), ["AWSCURRENT"]);
        add(&mut v, "b", &["AWSCURRENT"]).unwrap();
        assert_eq!(stages(&v, "a"), ["AWSPREVIOUS"]);
        assert_eq!(stages(&v, "b"), ["AWSCURRENT"]);
        add(&mut v, "c", &["AWSCURRENT"]).unwrap();
        assert!(stages(&v, "a").is_empty());
        assert_eq!(stages(&v, "b"), ["AWSPREVIOUS"]);
        // A pending version leaves the current one alone.
        add(&mut v, "d", &["AWSPENDING"]).unwrap();
        assert_eq!(stages(&v, "c"), ["AWSCURRENT"]);
        assert_eq!(stages(&v, "d"), ["AWSPENDING"]);
    }

    #[test]
    fn moving_a_held_label_requires_naming_its_holder() {
        let mut v = BTreeMap::new();
        add(&mut v, "a", &[]).unwrap();
        add(&mut v, "b", &["AWSPENDING"]).unwrap();
        let e = move_label(&mut v, "AWSCURRENT", None, Some("b")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The parameter RemoveFromVersionId can't be empty. Staging label AWSCURRENT is currently attached to version a, so you must explicitly reference that version in RemoveFromVersionId."
        );
        assert!(matches!(
            move_label(&mut v, "AWSCURRENT", Some("b"), Some("b")),
            Err(StageError::NotAttached { .. })
        ));
        move_label(&mut v, "AWSCURRENT", Some("a"), Some("b")).unwrap();
        assert_eq!(stages(&v, "a"), ["AWSPREVIOUS"]);
        assert_eq!(stages(&v, "b"), ["AWSPENDING", "AWSCURRENT"]);
        assert!(matches!(
            move_label(&mut v, "AWSCURRENT", Some("b"), None),
            Err(StageError::CurrentWouldVanish(_))
        ));
        move_label(&mut v, "AWSPENDING", Some("b"), None).unwrap();
        assert_eq!(stages(&v, "b"), ["AWSCURRENT"]);
        assert!(matches!(
            move_label(&mut v, "X", None, Some("zzz")),
            Err(StageError::NoSuchVersion(_))
        ));
    }

    #[test]
    fn pruning_keeps_labelled_and_recent_versions() {
        let mut v = BTreeMap::new();
        for i in 0..(MAX_VERSIONS + 5) {
            let id = format!("v{i:03}");
            v.insert(id.clone(), meta(i as u64));
            attach_new_version(&mut v, &id, &["AWSCURRENT".into()]).unwrap();
        }
        // Everything is less than a day old: nothing goes.
        assert!(prune(&mut v, 1000).is_empty());
        let removed = prune(&mut v, DAY_MS + 1000);
        assert_eq!(removed, ["v000", "v001", "v002", "v003", "v004"]);
        assert_eq!(v.len(), MAX_VERSIONS);
        assert!(v.contains_key("v103") && v.contains_key("v104"));
    }

    proptest! {
        #[test]
        fn labels_stay_unique_and_current_stays_single(ops in proptest::collection::vec((0u8..4, 0usize..6, proptest::option::of(0usize..6)), 1..40)) {
            let labels = ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS", "custom"];
            let mut v: BTreeMap<String, VersionMeta> = BTreeMap::new();
            let mut next = 0usize;
            for (label, a, b) in ops {
                let label = labels[label as usize];
                let ids: Vec<String> = v.keys().cloned().collect();
                if a == 0 || ids.is_empty() {
                    let id = format!("v{next}");
                    next += 1;
                    v.insert(id.clone(), meta(next as u64));
                    let _ = attach_new_version(&mut v, &id, &[label.to_owned()]);
                } else {
                    let from = b.and_then(|i| ids.get(i % ids.len())).map(String::as_str);
                    let to = ids.get(a % ids.len()).map(String::as_str);
                    let mut trial = v.clone();
                    if move_label(&mut trial, label, from, to).is_ok() {
                        v = trial;
                    }
                }
                for l in labels {
                    let holders = v.values().filter(|m| m.stages.iter().any(|s| s == l)).count();
                    prop_assert!(holders <= 1, "{l} on {holders} versions");
                }
                let current = v.values().filter(|m| m.stages.iter().any(|s| s == "AWSCURRENT")).count();
                prop_assert_eq!(current, 1);
            }
        }
    }
}
