//! Manifest parsing: the four supported media types, the blobs and child manifests a manifest
//! references, its subject (for the referrers API) and its artifact type. Pure.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::RegistryError;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Largest manifest accepted (ECR's limit, the model's `ImageManifest` maximum).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest layer (and blob) accepted: ECR's "Maximum layer size" quota, 52,000 MiB.
pub const MAX_LAYER_BYTES: u64 = 52_000 * 1024 * 1024;

/// A content descriptor as it appears in a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    pub media_type: Option<String>,
    pub digest: Digest,
    pub size: u64,
    /// Non-empty for foreign (non-distributable) layers, which are not stored here.
    pub urls: Vec<String>,
}

/// What the registry needs to know about a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedManifest {
    pub media_type: String,
    /// Config and layers (image manifests only), in manifest order.
    pub blobs: Vec<Descriptor>,
    /// Child manifests (indexes only).
    pub children: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for image manifests without one, the config media type.
    pub artifact_type: Option<String>,
    pub config_media_type: Option<String>,
    pub annotations: Option<Value>,
}

impl ParsedManifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

fn is_supported(mt: &str) -> bool {
    matches!(
        mt,
        DOCKER_MANIFEST | DOCKER_MANIFEST_LIST | OCI_MANIFEST | OCI_INDEX
    )
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::ManifestInvalid(msg.into())
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor, RegistryError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("{what} is not an object")))?;
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no digest")))?
        .parse::<Digest>()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let size = obj
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{what} has no valid size")))?;
    let media_type = obj
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let urls = obj
        .get("urls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Descriptor {
        media_type,
        digest,
        size,
        urls,
    })
}

/// Parses a manifest body. `content_type` is the request's `Content-Type` (may be absent or
/// carry parameters).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, RegistryError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|c| is_supported(c));
    let declared = obj.get("mediaType").and_then(Value::as_str);
    if let Some(d) = declared
        && !is_supported(d)
    {
        return Err(invalid(format!("unsupported manifest media type {d}")));
    }
    if let (Some(d), Some(h)) = (declared, header.as_deref())
        && d != h
    {
        return Err(invalid(format!(
            "mediaType {d} does not match Content-Type {h}"
        )));
    }
    let media_type = match (declared, header) {
        (Some(d), _) => d.to_owned(),
        (None, Some(h)) => h,
        (None, None) if obj.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, None) if obj.contains_key("config") => OCI_MANIFEST.to_owned(),
        (None, None) => return Err(invalid("cannot tell the manifest media type")),
    };
    let subject = obj
        .get("subject")
        .map(|s| descriptor(s, "subject"))
        .transpose()?;
    let annotations = obj.get("annotations").filter(|a| a.is_object()).cloned();
    let explicit_artifact = obj
        .get("artifactType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut parsed = ParsedManifest {
        media_type,
        blobs: Vec::new(),
        children: Vec::new(),
        subject,
        artifact_type: explicit_artifact.clone(),
        config_media_type: None,
        annotations,
    };
    if parsed.is_index() {
        let manifests = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index has no manifests array"))?;
        for (i, m) in manifests.iter().enumerate() {
            parsed
                .children
                .push(descriptor(m, &format!("manifests[{i}]"))?);
        }
    } else {
        let config = descriptor(
            obj.get("config")
                .ok_or_else(|| invalid("manifest has no config"))?,
            "config",
        )?;
        parsed.config_media_type = config.media_type.clone();
        if parsed.artifact_type.is_none() {
            parsed.artifact_type = config.media_type.clone();
        }
        parsed.blobs.push(config);
        let layers = match obj.get("layers") {
            Some(l) => l
                .as_array()
                .ok_or_else(|| invalid("layers is not an array"))?
                .as_slice(),
            None => &[],
        };
        for (i, l) in layers.iter().enumerate() {
            let layer = descriptor(l, &format!("layers[{i}]"))?;
            if layer.size > MAX_LAYER_BYTES {
                return Err(invalid(format!(
                    "layers[{i}] is {} bytes, more than the maximum layer size of {MAX_LAYER_BYTES} \
                     bytes (52,000 MiB)",
                    layer.size
                )));
            }
            parsed.blobs.push(layer);
        }
    }
    Ok(parsed)
}

/// Whether `tag` is a valid tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// Whether `name` is a valid repository name (ECR's pattern, 2..=256 characters).
pub fn valid_repository_name(name: &str) -> bool {
    if name.len() < 2 || name.len() > 256 {
        return false;
    }
    name.split('/').all(|component| {
        let b = component.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                i += 1;
                continue;
            }
            // Separators: '.', '_', '__', or one or more '-'.
            let start = i;
            match c {
                b'.' => i += 1,
                b'_' => {
                    i += 1;
                    if i < b.len() && b[i] == b'_' {
                        i += 1;
                    }
                }
                b'-' => {
                    while i < b.len() && b[i] == b'-' {
                        i += 1;
                    }
                }
                _ => return false,
            }
            if i >= b.len() || !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) || i == start {
                return false;
            }
        }
        true
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_oci_manifest_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/x","digest":"{D}","size":0}},"layers":[{{"mediaType":"l","digest":"{D}","size":0}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}}}}"#
        );
        let p = parse(body.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.artifact_type.as_deref(), Some("application/x"));
        assert!(p.subject.is_some());
    }

    #[test]
    fn rejects_mismatched_content_type() {
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(parse(body.as_bytes(), Some(DOCKER_MANIFEST)).is_err());
        assert!(parse(body.as_bytes(), Some(OCI_INDEX)).unwrap().is_index());
        assert!(parse(b"{}", None).is_err());
        assert!(parse(b"not json", None).is_err());
    }

    #[test]
    fn rejects_a_layer_beyond_ecrs_maximum_layer_size() {
        let layer = |size: u64| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/x","digest":"{D}","size":0}},"layers":[{{"mediaType":"l","digest":"{D}","size":{size},"urls":["https://example.com/l"]}}]}}"#
            )
        };
        assert!(parse(layer(MAX_LAYER_BYTES).as_bytes(), None).is_ok());
        let err = parse(layer(MAX_LAYER_BYTES + 1).as_bytes(), None).unwrap_err();
        assert!(
            matches!(err, RegistryError::ManifestInvalid(ref m) if m.contains("52,000 MiB")),
            "{err}"
        );
    }

    #[test]
    fn validates_names_and_tags() {
        assert!(valid_repository_name("library/busy-box_1.2"));
        assert!(valid_repository_name("a__b"));
        assert!(!valid_repository_name("a"));
        assert!(!valid_repository_name("Abc"));
        assert!(!valid_repository_name("ab/"));
        assert!(!valid_repository_name("a___b"));
        assert!(valid_tag("v1.0_rc-1"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
