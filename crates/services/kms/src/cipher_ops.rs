//! Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext,
//! GenerateRandom, and the sealing and opening they share with other services' use of keys.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_front::RequestContext;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::crypto::{Blob, DataCipher, random_bytes};
use crate::model::KeyRecord;
use crate::wire::{
    KeyRef, b64, blob, key_ref, load_key, load_key_member, no_grant_tokens, parse, required,
    symmetric_algorithm, usable,
};
use crate::{KmsError, KmsService};

/// The largest plaintext Encrypt accepts.
const MAX_PLAINTEXT: usize = 4096;
/// The largest ciphertext Decrypt accepts.
const MAX_CIPHERTEXT: usize = 6144;

pub type EncryptionContext = BTreeMap<String, String>;

fn cipher_of(svc: &KmsService, key: &KeyRecord, version: u32) -> Result<DataCipher, KmsError> {
    let m = key.material(version).ok_or_else(invalid_ciphertext)?;
    let wrapped = STANDARD
        .decode(m.wrapped.as_bytes())
        .map_err(|_| KmsError::Unwrap(key.arn.clone()))?;
    svc.master
        .unwrap_material(&key.arn, version, &wrapped)
        .map_err(|_| KmsError::Unwrap(key.arn.clone()))
}

fn invalid_ciphertext() -> KmsError {
    KmsError::InvalidCiphertext(
        "The ciphertext is not valid for any KMS key of this Region, was altered, or was encrypted with a different encryption context.".to_owned(),
    )
}

/// Seals `plaintext` with `key`'s current material; the key must be enabled.
pub fn seal(
    svc: &KmsService,
    key: &KeyRecord,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<(Vec<u8>, String), KmsError> {
    usable(key)?;
    let m = key
        .current()
        .ok_or_else(|| KmsError::Unwrap(key.arn.clone()))?;
    let cipher = cipher_of(svc, key, m.version)?;
    Ok((
        cipher.seal_blob(&key.key_id, m.version, plaintext, context),
        m.id.clone(),
    ))
}

/// The key a blob names, loaded, and the blob parsed.
pub async fn key_of_blob<'a>(
    svc: &KmsService,
    ctx: &RequestContext,
    bytes: &'a [u8],
) -> Result<(Blob<'a>, KeyRecord), KmsError> {
    let parsed = Blob::parse(bytes).ok_or_else(invalid_ciphertext)?;
    let key = load_key(svc, ctx, &KeyRef::Id(parsed.key_id.to_owned()))
        .await
        .map_err(|e| match e {
            KmsError::NotFound(_) => invalid_ciphertext(),
            other => other,
        })?;
    Ok((parsed, key.value))
}

/// Opens a parsed blob with its key; the key must be enabled. Returns the plaintext and the
/// material id.
pub fn open(
    svc: &KmsService,
    key: &KeyRecord,
    parsed: &Blob<'_>,
    context: &EncryptionContext,
) -> Result<(Vec<u8>, String), KmsError> {
    usable(key)?;
    let cipher = cipher_of(svc, key, parsed.version)?;
    let plain = parsed
        .open(&cipher, context)
        .map_err(|_| invalid_ciphertext())?;
    let id = key
        .material(parsed.version)
        .map(|m| m.id.clone())
        .unwrap_or_default();
    Ok((plain, id))
}

fn no_recipient(recipient: &Option<Value>) -> Result<(), KmsError> {
    if recipient.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Recipient (attested Nitro Enclaves requests) is not supported.".to_owned(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest {
    key_id: Option<String>,
    plaintext: Option<String>,
    encryption_context: Option<EncryptionContext>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

pub(crate) async fn encrypt(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: EncryptRequest = parse(body)?;
    let plaintext = blob(req.plaintext, "plaintext", MAX_PLAINTEXT)?;
    no_grant_tokens(&req.grant_tokens)?;
    symmetric_algorithm(&req.encryption_algorithm, "encryptionAlgorithm")?;
    let key = load_key_member(svc, ctx, req.key_id, true).await?.value;
    let context = req.encryption_context.unwrap_or_default();
    let (sealed, _) = seal(svc, &key, &plaintext, &context)?;
    if req.dry_run == Some(true) {
        return Err(KmsError::DryRun);
    }
    Ok(json!({
        "CiphertextBlob": b64(&sealed),
        "KeyId": key.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: Option<String>,
    encryption_context: Option<EncryptionContext>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
    dry_run_modifiers: Option<Vec<String>>,
}

/// Checks that an optional `KeyId` names the key that sealed the blob.
async fn expected_key(
    svc: &KmsService,
    ctx: &RequestContext,
    key_id: Option<String>,
    actual: &KeyRecord,
) -> Result<(), KmsError> {
    let Some(k) = key_id else {
        return Ok(());
    };
    let r = key_ref(ctx, &k, true)?;
    let named = load_key(svc, ctx, &r).await?.value;
    if named.key_id != actual.key_id {
        return Err(KmsError::IncorrectKey(
            "The key ID in the request does not identify a CMK that can perform this operation."
                .to_owned(),
        ));
    }
    Ok(())
}

pub(crate) async fn decrypt(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: DecryptRequest = parse(body)?;
    let bytes = blob(req.ciphertext_blob, "ciphertextBlob", MAX_CIPHERTEXT)?;
    no_grant_tokens(&req.grant_tokens)?;
    symmetric_algorithm(&req.encryption_algorithm, "encryptionAlgorithm")?;
    no_recipient(&req.recipient)?;
    if req
        .dry_run_modifiers
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(KmsError::UnsupportedOperation(
            "DryRunModifiers are not supported.".to_owned(),
        ));
    }
    let (parsed, key) = key_of_blob(svc, ctx, &bytes).await?;
    expected_key(svc, ctx, req.key_id, &key).await?;
    let context = req.encryption_context.unwrap_or_default();
    let (plain, material) = open(svc, &key, &parsed, &context)?;
    if req.dry_run == Some(true) {
        return Err(KmsError::DryRun);
    }
    Ok(json!({
        "KeyId": key.arn,
        "Plaintext": b64(&plain),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "KeyMaterialId": material,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptRequest {
    ciphertext_blob: Option<String>,
    source_encryption_context: Option<EncryptionContext>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<EncryptionContext>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
    dry_run_modifiers: Option<Vec<String>>,
}

pub(crate) async fn re_encrypt(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    let req: ReEncryptRequest = parse(body)?;
    let bytes = blob(req.ciphertext_blob, "ciphertextBlob", MAX_CIPHERTEXT)?;
    no_grant_tokens(&req.grant_tokens)?;
    symmetric_algorithm(
        &req.source_encryption_algorithm,
        "sourceEncryptionAlgorithm",
    )?;
    symmetric_algorithm(
        &req.destination_encryption_algorithm,
        "destinationEncryptionAlgorithm",
    )?;
    if req
        .dry_run_modifiers
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(KmsError::UnsupportedOperation(
            "DryRunModifiers are not supported.".to_owned(),
        ));
    }
    let destination = load_key_member(svc, ctx, req.destination_key_id, true)
        .await?
        .value;
    let (parsed, source) = key_of_blob(svc, ctx, &bytes).await?;
    expected_key(svc, ctx, req.source_key_id, &source).await?;
    let (plain, source_material) = open(
        svc,
        &source,
        &parsed,
        &req.source_encryption_context.unwrap_or_default(),
    )?;
    let (sealed, dest_material) = seal(
        svc,
        &destination,
        &plain,
        &req.destination_encryption_context.unwrap_or_default(),
    )?;
    if req.dry_run == Some(true) {
        return Err(KmsError::DryRun);
    }
    Ok(json!({
        "CiphertextBlob": b64(&sealed),
        "SourceKeyId": source.arn,
        "KeyId": destination.arn,
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "SourceKeyMaterialId": source_material,
        "DestinationKeyMaterialId": dest_material,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyRequest {
    key_id: Option<String>,
    encryption_context: Option<EncryptionContext>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
}

fn data_key_len(number_of_bytes: Option<i64>, key_spec: Option<&str>) -> Result<usize, KmsError> {
    match (number_of_bytes, key_spec) {
        (Some(_), Some(_)) | (None, None) => Err(KmsError::validation(
            "Please specify either number of bytes or key spec.",
        )),
        (Some(n), None) if (1..=1024).contains(&n) => Ok(n as usize),
        (Some(n), None) => Err(KmsError::validation(format!(
            "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
        ))),
        (None, Some("AES_256")) => Ok(32),
        (None, Some("AES_128")) => Ok(16),
        (None, Some(s)) => Err(KmsError::validation(format!(
            "1 validation error detected: Value '{s}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
        ))),
    }
}

async fn generate_data_key(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
    with_plaintext: bool,
) -> Result<Value, KmsError> {
    let req: GenerateDataKeyRequest = parse(body)?;
    no_grant_tokens(&req.grant_tokens)?;
    no_recipient(&req.recipient)?;
    let len = data_key_len(req.number_of_bytes, req.key_spec.as_deref())?;
    let key = load_key_member(svc, ctx, req.key_id, true).await?.value;
    let data_key = random_bytes(len);
    let (sealed, material) = seal(
        svc,
        &key,
        &data_key,
        &req.encryption_context.unwrap_or_default(),
    )?;
    if req.dry_run == Some(true) {
        return Err(KmsError::DryRun);
    }
    let mut v = json!({
        "CiphertextBlob": b64(&sealed),
        "KeyId": key.arn,
        "KeyMaterialId": material,
    });
    if with_plaintext {
        v["Plaintext"] = json!(b64(&data_key));
    }
    Ok(v)
}

pub(crate) async fn generate_data_key_with_plaintext(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    generate_data_key(svc, body, ctx, true).await
}

pub(crate) async fn generate_data_key_without_plaintext(
    svc: &KmsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, KmsError> {
    generate_data_key(svc, body, ctx, false).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateRandomRequest {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
    recipient: Option<Value>,
}

pub(crate) async fn generate_random(body: &[u8]) -> Result<Value, KmsError> {
    let req: GenerateRandomRequest = parse(body)?;
    no_recipient(&req.recipient)?;
    if req.custom_key_store_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Custom key stores are not supported.".to_owned(),
        ));
    }
    let n = required(req.number_of_bytes, "numberOfBytes")?;
    if !(1..=1024).contains(&n) {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024"
        )));
    }
    Ok(json!({"Plaintext": b64(&random_bytes(n as usize))}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_take_bytes_or_a_spec() {
        assert_eq!(data_key_len(None, Some("AES_256")).unwrap(), 32);
        assert_eq!(data_key_len(None, Some("AES_128")).unwrap(), 16);
        assert_eq!(data_key_len(Some(64), None).unwrap(), 64);
        assert!(data_key_len(None, None).is_err());
        assert!(data_key_len(Some(1), Some("AES_256")).is_err());
        assert!(data_key_len(Some(1025), None).is_err());
        assert!(data_key_len(None, Some("AES_512")).is_err());
    }
}
