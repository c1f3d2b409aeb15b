//! KMS through its `JsonService` on the in-memory store: the key lifecycle, aliases, the
//! cryptographic round trips, rotation and deletion, as a client sees them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gantry_front::{JsonService, RequestContext};
use gantry_kms::{KmsService, MasterKey};
use gantry_store::MemoryStore;
use serde_json::{Value, json};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn ctx(now: u64) -> RequestContext {
    RequestContext {
        caller: None,
        request_id: "req".into(),
        region: "us-east-1".into(),
        account_id: "111122223333".into(),
        access_key_id: "AKIAEXAMPLE".into(),
        now,
    }
}

fn service() -> KmsService {
    KmsService::new(
        Arc::new(MemoryStore::new()),
        MasterKey::new(&[7u8; 32]).unwrap(),
    )
}

async fn call(svc: &KmsService, op: &str, body: Value) -> Result<Value, (String, String)> {
    svc.call(op, body.to_string().as_bytes(), &ctx(1_700_000_000_000))
        .await
        .map_err(|e| (e.code.to_string(), e.message))
}

async fn create_key(svc: &KmsService) -> Value {
    call(svc, "CreateKey", json!({"Description": "app"}))
        .await
        .unwrap()["KeyMetadata"]
        .clone()
}

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

#[tokio::test]
async fn created_keys_are_described_listed_and_carry_the_default_policy() {
    let svc = service();
    let meta = create_key(&svc).await;
    let id = meta["KeyId"].as_str().unwrap();
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["KeyManager"], "CUSTOMER");
    assert_eq!(meta["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(
        meta["Arn"],
        format!("arn:aws:kms:us-east-1:111122223333:key/{id}")
    );
    let d = call(&svc, "DescribeKey", json!({"KeyId": meta["Arn"]}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"], meta);
    let l = call(&svc, "ListKeys", json!({})).await.unwrap();
    assert_eq!(l["Keys"][0]["KeyId"], id);
    assert_eq!(l["Truncated"], false);
    let p = call(&svc, "GetKeyPolicy", json!({"KeyId": id}))
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(p["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(policy["Id"], "key-default-1");
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::111122223333:root"
    );
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_with_context_and_alias() {
    let svc = service();
    let meta = create_key(&svc).await;
    let id = meta["KeyId"].as_str().unwrap();
    call(
        &svc,
        "CreateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": id}),
    )
    .await
    .unwrap();
    let enc = call(
        &svc,
        "Encrypt",
        json!({"KeyId": "alias/app", "Plaintext": b64(b"hello"), "EncryptionContext": {"a": "1"}}),
    )
    .await
    .unwrap();
    assert_eq!(enc["KeyId"], meta["Arn"]);
    let blob = enc["CiphertextBlob"].as_str().unwrap();
    let dec = call(
        &svc,
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": {"a": "1"}}),
    )
    .await
    .unwrap();
    assert_eq!(dec["Plaintext"], b64(b"hello"));
    assert_eq!(dec["KeyId"], meta["Arn"]);
    let wrong = call(&svc, "Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap_err();
    assert_eq!(wrong.0, "InvalidCiphertextException");
    let other = create_key(&svc).await;
    let wrong_key = call(
        &svc,
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": {"a": "1"}, "KeyId": other["KeyId"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong_key.0, "IncorrectKeyException");
    let garbage = call(
        &svc,
        "Decrypt",
        json!({"CiphertextBlob": b64(b"not a blob at all, clearly")}),
    )
    .await
    .unwrap_err();
    assert_eq!(garbage.0, "InvalidCiphertextException");
}

#[tokio::test]
async fn disabled_and_pending_deletion_keys_refuse_cryptography() {
    let svc = service();
    let meta = create_key(&svc).await;
    let id = meta["KeyId"].as_str().unwrap();
    let arn = meta["Arn"].as_str().unwrap();
    let blob = call(
        &svc,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap()["CiphertextBlob"]
        .clone();
    call(&svc, "DisableKey", json!({"KeyId": id}))
        .await
        .unwrap();
    let e = call(
        &svc,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        ("DisabledException".into(), format!("{arn} is disabled."))
    );
    let e = call(&svc, "Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "DisabledException");
    call(&svc, "EnableKey", json!({"KeyId": id})).await.unwrap();
    let s = call(
        &svc,
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    assert_eq!(s["KeyState"], "PendingDeletion");
    assert_eq!(s["PendingWindowInDays"], 7);
    let e = call(
        &svc,
        "GenerateDataKey",
        json!({"KeyId": id, "KeySpec": "AES_256"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        (
            "KMSInvalidStateException".into(),
            format!("{arn} is pending deletion.")
        )
    );
    let e = call(
        &svc,
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 3}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "ValidationException");
    call(&svc, "CancelKeyDeletion", json!({"KeyId": id}))
        .await
        .unwrap();
    let d = call(&svc, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
}

#[tokio::test]
async fn keys_are_deleted_by_maintenance_after_their_waiting_period() {
    let svc = service();
    let meta = create_key(&svc).await;
    let id = meta["KeyId"].as_str().unwrap();
    call(
        &svc,
        "CreateAlias",
        json!({"AliasName": "alias/gone", "TargetKeyId": id}),
    )
    .await
    .unwrap();
    call(
        &svc,
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    let t0 = 1_700_000_000_000;
    assert_eq!(svc.maintain(t0 + 6 * DAY_MS).await.unwrap(), (0, 0));
    assert_eq!(svc.maintain(t0 + 7 * DAY_MS).await.unwrap(), (1, 0));
    let e = call(&svc, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "NotFoundException");
    let aliases = call(&svc, "ListAliases", json!({})).await.unwrap();
    assert!(
        !aliases["Aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["AliasName"] == "alias/gone")
    );
}

#[tokio::test]
async fn rotation_keeps_old_ciphertexts_readable() {
    let svc = service();
    let id = create_key(&svc).await["KeyId"].as_str().unwrap().to_owned();
    let old = call(
        &svc,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"v1")}),
    )
    .await
    .unwrap()["CiphertextBlob"]
        .clone();
    call(&svc, "RotateKeyOnDemand", json!({"KeyId": id}))
        .await
        .unwrap();
    call(
        &svc,
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    )
    .await
    .unwrap();
    assert_eq!(
        svc.maintain(1_700_000_000_000 + 90 * DAY_MS).await.unwrap(),
        (0, 1)
    );
    let new = call(
        &svc,
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(b"v3")}),
    )
    .await
    .unwrap()["CiphertextBlob"]
        .clone();
    assert_ne!(old, new);
    for (blob, plain) in [(old, "v1"), (new, "v3")] {
        let d = call(&svc, "Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap();
        assert_eq!(d["Plaintext"], b64(plain.as_bytes()));
    }
    let r = call(&svc, "ListKeyRotations", json!({"KeyId": id}))
        .await
        .unwrap();
    let types: Vec<&str> = r["Rotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["RotationType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ON_DEMAND", "AUTOMATIC"]);
}

#[tokio::test]
async fn aws_managed_keys_are_created_on_first_use_and_listed_before() {
    let svc = service();
    let aliases = call(&svc, "ListAliases", json!({})).await.unwrap();
    let sm = aliases["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AliasName"] == "alias/aws/secretsmanager")
        .unwrap()
        .clone();
    assert!(sm.get("TargetKeyId").is_none());
    let c = ctx(1_700_000_000_000);
    let context = BTreeMap::from([("SecretARN".to_owned(), "arn:s".to_owned())]);
    let via = gantry_kms::OnBehalf {
        action: "kms:GenerateDataKey",
        service: "secretsmanager",
    };
    let (blob, arn) = svc
        .encrypt_for(
            &c,
            &via,
            "alias/aws/secretsmanager",
            &[b'x'; 10_000],
            &context,
        )
        .await
        .unwrap();
    let (plain, arn2) = svc.decrypt_for(&c, &via, &blob, &context).await.unwrap();
    assert_eq!((plain.len(), &arn2), (10_000, &arn));
    // The same key on the next use.
    let again = svc
        .resolve_key(&c, "alias/aws/secretsmanager")
        .await
        .unwrap();
    assert_eq!(again.arn, arn);
    assert!(again.aws_managed);
    let d = call(
        &svc,
        "DescribeKey",
        json!({"KeyId": "alias/aws/secretsmanager"}),
    )
    .await
    .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyManager"], "AWS");
    let e = call(
        &svc,
        "DisableKey",
        json!({"KeyId": d["KeyMetadata"]["KeyId"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "AccessDeniedException");
    let e = call(
        &svc,
        "CreateAlias",
        json!({"AliasName": "alias/aws/mine", "TargetKeyId": d["KeyMetadata"]["KeyId"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "InvalidAliasNameException");
}

#[tokio::test]
async fn aliases_are_unique_and_follow_their_target() {
    let svc = service();
    let a = create_key(&svc).await["KeyId"].as_str().unwrap().to_owned();
    let b = create_key(&svc).await["KeyId"].as_str().unwrap().to_owned();
    call(
        &svc,
        "CreateAlias",
        json!({"AliasName": "alias/x", "TargetKeyId": a}),
    )
    .await
    .unwrap();
    let e = call(
        &svc,
        "CreateAlias",
        json!({"AliasName": "alias/x", "TargetKeyId": b}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "AlreadyExistsException");
    call(
        &svc,
        "UpdateAlias",
        json!({"AliasName": "alias/x", "TargetKeyId": b}),
    )
    .await
    .unwrap();
    let l = call(&svc, "ListAliases", json!({"KeyId": b}))
        .await
        .unwrap();
    assert_eq!(l["Aliases"][0]["AliasName"], "alias/x");
    assert_eq!(l["Aliases"][0]["TargetKeyId"], b);
    call(&svc, "DeleteAlias", json!({"AliasName": "alias/x"}))
        .await
        .unwrap();
    let e = call(&svc, "DescribeKey", json!({"KeyId": "alias/x"}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "NotFoundException".into(),
            "Alias arn:aws:kms:us-east-1:111122223333:alias/x is not found.".into()
        )
    );
}

#[tokio::test]
async fn unsupported_features_answer_clear_errors() {
    let svc = service();
    let e = call(
        &svc,
        "CreateKey",
        json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "UnsupportedOperationException");
    let e = call(&svc, "CreateGrant", json!({})).await.unwrap_err();
    assert_eq!(e.0, "UnsupportedOperationException");
    let e = call(&svc, "CreateKey", json!({"Policy": "{nope"}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "MalformedPolicyDocumentException".into(),
            "Syntax errors in policy.".into()
        )
    );
}

#[tokio::test]
async fn tags_round_trip() {
    let svc = service();
    let id = create_key(&svc).await["KeyId"].as_str().unwrap().to_owned();
    call(
        &svc,
        "TagResource",
        json!({"KeyId": id, "Tags": [{"TagKey": "env", "TagValue": "prod"}, {"TagKey": "team", "TagValue": "a"}]}),
    )
    .await
    .unwrap();
    call(
        &svc,
        "UntagResource",
        json!({"KeyId": id, "TagKeys": ["team"]}),
    )
    .await
    .unwrap();
    let t = call(&svc, "ListResourceTags", json!({"KeyId": id}))
        .await
        .unwrap();
    assert_eq!(t["Tags"], json!([{"TagKey": "env", "TagValue": "prod"}]));
}

#[tokio::test]
async fn a_deposed_leaders_maintenance_deletes_nothing() {
    use gantry_store::{FencedStore, Store, claim_leadership};
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = KmsService::new(store.clone(), MasterKey::new(&[7u8; 32]).unwrap());
    let id = create_key(&svc).await["KeyId"].as_str().unwrap().to_owned();
    call(
        &svc,
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    // This replica led, then another replica was elected: its maintenance copy is deposed.
    let fenced = Arc::new(FencedStore::new(store.clone()));
    fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
    claim_leadership(store.as_ref(), "b").await.unwrap();
    let deposed = svc.writing_through(fenced.clone());
    let due = 1_700_000_000_000 + 8 * DAY_MS;
    let _ = deposed.maintain(due).await;
    let d = call(&svc, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "PendingDeletion");
    // Elected again: the same job now deletes the key.
    fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
    assert_eq!(deposed.maintain(due).await.unwrap().0, 1);
    let e = call(&svc, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "NotFoundException");
}
