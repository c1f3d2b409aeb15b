//! Secrets Manager through its `JsonService` on the in-memory store, with a stand-in for KMS
//! (the real one is wired by the binary and tested end to end): versions and staging labels,
//! idempotency, deletion and recovery, identifiers, bad input, and a key that refuses.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use gantry_front::{JsonService, RequestContext};
use gantry_secretsmanager::{
    Encrypted, EncryptionContext, KeyFailure, SecretCipher, SecretsManagerService,
};
use gantry_store::{MemoryStore, Store};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 24 * 3600 * 1000;
const TOKEN1: &str = "11111111-1111-4111-8111-111111111111";
const TOKEN2: &str = "22222222-2222-4222-8222-222222222222";

/// Stands in for KMS: "encrypts" by XOR and records the key and context, so a blob opens only
/// with its context; can be switched to answer as a disabled key does.
#[derive(Debug, Default)]
struct FakeKms {
    disabled: AtomicBool,
}

fn key_arn(key: Option<&str>) -> String {
    format!(
        "arn:aws:kms:us-east-1:111122223333:key/{}",
        key.unwrap_or("aws-managed")
    )
}

#[async_trait]
impl SecretCipher for FakeKms {
    async fn encrypt(
        &self,
        _ctx: &RequestContext,
        key: Option<&str>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KeyFailure> {
        let arn = key_arn(key);
        if self.disabled.load(Ordering::SeqCst) {
            return Err(KeyFailure {
                code: "DisabledException".into(),
                message: format!("{arn} is disabled."),
                internal: false,
            });
        }
        let data: Vec<u8> = plaintext.iter().map(|b| b ^ 0x5a).collect();
        let blob = serde_json::to_vec(&json!({"key": arn, "ctx": context, "data": data})).unwrap();
        Ok(Encrypted { blob, key_arn: arn })
    }

    async fn decrypt(
        &self,
        _ctx: &RequestContext,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyFailure> {
        let v: Value = serde_json::from_slice(blob).unwrap();
        if self.disabled.load(Ordering::SeqCst) {
            return Err(KeyFailure {
                code: "DisabledException".into(),
                message: format!("{} is disabled.", v["key"].as_str().unwrap()),
                internal: false,
            });
        }
        if v["ctx"] != json!(context) {
            return Err(KeyFailure {
                code: "InvalidCiphertextException".into(),
                message: "context".into(),
                internal: false,
            });
        }
        Ok(v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8 ^ 0x5a)
            .collect())
    }

    async fn check_key(&self, _ctx: &RequestContext, key: &str) -> Result<String, KeyFailure> {
        Ok(key_arn(Some(key)))
    }
}

struct Harness {
    svc: SecretsManagerService,
    kms: Arc<FakeKms>,
    store: Arc<MemoryStore>,
}

fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let kms = Arc::new(FakeKms::default());
    let svc = SecretsManagerService::new(store.clone(), kms.clone());
    Harness { svc, kms, store }
}

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

impl Harness {
    async fn call_at(&self, now: u64, op: &str, body: Value) -> Result<Value, (String, String)> {
        self.svc
            .call(op, body.to_string().as_bytes(), &ctx(now))
            .await
            .map_err(|e| (e.code.to_string(), e.message))
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, (String, String)> {
        self.call_at(T0, op, body).await
    }

    async fn store_dump(&self) -> String {
        let page = self.store.scan("", None, 0).await.unwrap();
        page.records
            .iter()
            .map(|r| format!("{} {}\n", r.key, String::from_utf8_lossy(&r.value)))
            .collect()
    }
}

#[tokio::test]
async fn versions_and_staging_labels_move_as_in_aws() {
    let h = harness();
    let c = h
        .call(
            "CreateSecret",
            json!({"Name": "prod/db", "SecretString": r#"{"user":"admin","password":"p1"}"#, "ClientRequestToken": TOKEN1}),
        )
        .await
        .unwrap();
    assert_eq!(c["VersionId"], TOKEN1);
    let arn = c["ARN"].as_str().unwrap().to_owned();
    let g = h
        .call("GetSecretValue", json!({"SecretId": "prod/db"}))
        .await
        .unwrap();
    assert_eq!(g["SecretString"], r#"{"user":"admin","password":"p1"}"#);
    assert_eq!(g["VersionStages"], json!(["AWSCURRENT"]));
    let p = h
        .call(
            "PutSecretValue",
            json!({"SecretId": arn, "SecretString": "v2", "ClientRequestToken": TOKEN2}),
        )
        .await
        .unwrap();
    assert_eq!(p["VersionStages"], json!(["AWSCURRENT"]));
    let prev = h
        .call(
            "GetSecretValue",
            json!({"SecretId": "prod/db", "VersionStage": "AWSPREVIOUS"}),
        )
        .await
        .unwrap();
    assert_eq!(prev["VersionId"], TOKEN1);
    let d = h
        .call("DescribeSecret", json!({"SecretId": "prod/db"}))
        .await
        .unwrap();
    assert_eq!(
        d["VersionIdsToStages"],
        json!({TOKEN1: ["AWSPREVIOUS"], TOKEN2: ["AWSCURRENT"]})
    );
    // Moving AWSCURRENT back needs the version that holds it.
    let e = h
        .call(
            "UpdateSecretVersionStage",
            json!({"SecretId": "prod/db", "VersionStage": "AWSCURRENT", "MoveToVersionId": TOKEN1}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidParameterException");
    assert!(
        e.1.contains(&format!("currently attached to version {TOKEN2}")),
        "{}",
        e.1
    );
    h.call(
        "UpdateSecretVersionStage",
        json!({"SecretId": "prod/db", "VersionStage": "AWSCURRENT", "MoveToVersionId": TOKEN1, "RemoveFromVersionId": TOKEN2}),
    )
    .await
    .unwrap();
    let g = h
        .call("GetSecretValue", json!({"SecretId": "prod/db"}))
        .await
        .unwrap();
    assert_eq!(g["VersionId"], TOKEN1);
    let l = h
        .call("ListSecretVersionIds", json!({"SecretId": "prod/db"}))
        .await
        .unwrap();
    assert_eq!(l["Versions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn client_request_tokens_make_writes_idempotent() {
    let h = harness();
    h.call(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "a", "ClientRequestToken": TOKEN1}),
    )
    .await
    .unwrap();
    // The same create again answers as the first time.
    let again = h
        .call(
            "CreateSecret",
            json!({"Name": "s", "SecretString": "a", "ClientRequestToken": TOKEN1}),
        )
        .await
        .unwrap();
    assert_eq!(again["VersionId"], TOKEN1);
    let e = h
        .call(
            "CreateSecret",
            json!({"Name": "s", "SecretString": "b", "ClientRequestToken": TOKEN2}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "ResourceExistsException".into(),
            "The operation failed because the secret s already exists.".into()
        )
    );
    h.call(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "b", "ClientRequestToken": TOKEN2}),
    )
    .await
    .unwrap();
    h.call(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "b", "ClientRequestToken": TOKEN2}),
    )
    .await
    .unwrap();
    let e = h
        .call(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "c", "ClientRequestToken": TOKEN2}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "ResourceExistsException");
    let l = h
        .call("ListSecretVersionIds", json!({"SecretId": "s"}))
        .await
        .unwrap();
    assert_eq!(l["Versions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn deletion_waits_out_the_recovery_window_and_can_be_undone() {
    let h = harness();
    let arn = h
        .call("CreateSecret", json!({"Name": "app", "SecretString": "x"}))
        .await
        .unwrap()["ARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = h
        .call(
            "DeleteSecret",
            json!({"SecretId": "app", "RecoveryWindowInDays": 3}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.1,
        "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive)."
    );
    let e = h
        .call("DeleteSecret", json!({"SecretId": "app", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidParameterException");
    let d = h
        .call(
            "DeleteSecret",
            json!({"SecretId": "app", "RecoveryWindowInDays": 7}),
        )
        .await
        .unwrap();
    assert_eq!(
        d["DeletionDate"].as_f64().unwrap(),
        (T0 + 7 * DAY_MS) as f64 / 1000.0
    );
    let e = h
        .call("GetSecretValue", json!({"SecretId": "app"}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "InvalidRequestException".into(),
            "You can't perform this operation on the secret because it was marked for deletion."
                .into()
        )
    );
    let desc = h
        .call("DescribeSecret", json!({"SecretId": "app"}))
        .await
        .unwrap();
    assert!(desc["DeletedDate"].is_number());
    let listed = h.call("ListSecrets", json!({})).await.unwrap();
    assert!(listed["SecretList"].as_array().unwrap().is_empty());
    let listed = h
        .call("ListSecrets", json!({"IncludePlannedDeletion": true}))
        .await
        .unwrap();
    assert_eq!(listed["SecretList"].as_array().unwrap().len(), 1);
    let e = h
        .call("CreateSecret", json!({"Name": "app", "SecretString": "y"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidRequestException");
    h.call("RestoreSecret", json!({"SecretId": arn}))
        .await
        .unwrap();
    assert_eq!(
        h.call("GetSecretValue", json!({"SecretId": "app"}))
            .await
            .unwrap()["SecretString"],
        "x"
    );
    // Scheduled again, the window passes: gone, and the name is free.
    h.call(
        "DeleteSecret",
        json!({"SecretId": "app", "RecoveryWindowInDays": 7}),
    )
    .await
    .unwrap();
    assert_eq!(h.svc.maintain(T0 + 7 * DAY_MS).await.unwrap(), 1);
    let e = h
        .call_at(
            T0 + 8 * DAY_MS,
            "DescribeSecret",
            json!({"SecretId": "app"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "ResourceNotFoundException");
    assert!(!h.store_dump().await.contains("secretsmanager/value"));
    h.call_at(
        T0 + 8 * DAY_MS,
        "CreateSecret",
        json!({"Name": "app", "SecretString": "z"}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn force_delete_removes_everything_at_once() {
    let h = harness();
    h.call("CreateSecret", json!({"Name": "tmp", "SecretString": "x"}))
        .await
        .unwrap();
    h.call(
        "PutSecretValue",
        json!({"SecretId": "tmp", "SecretString": "y"}),
    )
    .await
    .unwrap();
    h.call(
        "DeleteSecret",
        json!({"SecretId": "tmp", "ForceDeleteWithoutRecovery": true}),
    )
    .await
    .unwrap();
    assert!(!h.store_dump().await.contains("secretsmanager/"));
    let e = h
        .call("GetSecretValue", json!({"SecretId": "tmp"}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "ResourceNotFoundException".into(),
            "Secrets Manager can't find the specified secret.".into()
        )
    );
}

#[tokio::test]
async fn secret_ids_are_names_partial_arns_and_full_arns() {
    let h = harness();
    let arn = h
        .call(
            "CreateSecret",
            json!({"Name": "team/api-key", "SecretBinary": "AAEC"}),
        )
        .await
        .unwrap()["ARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let partial = &arn[..arn.len() - 7];
    for id in ["team/api-key", partial, arn.as_str()] {
        let g = h
            .call("GetSecretValue", json!({"SecretId": id}))
            .await
            .unwrap();
        assert_eq!(g["SecretBinary"], "AAEC", "{id}");
        assert_eq!(g["ARN"], arn);
    }
    let wrong_suffix = format!("{partial}-zzzzzz");
    let e = h
        .call("GetSecretValue", json!({"SecretId": wrong_suffix}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "ResourceNotFoundException");
}

#[tokio::test]
async fn bad_input_gets_aws_errors_and_writes_nothing() {
    let h = harness();
    let e = h
        .call(
            "CreateSecret",
            json!({"Name": "bad name", "SecretString": "x"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "ValidationException".into(),
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!".into()
        )
    );
    let big = "s".repeat(65537);
    let e = h
        .call("CreateSecret", json!({"Name": "big", "SecretString": big}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "ValidationException");
    assert!(!e.1.contains("sss"));
    assert!(h.store_dump().await.is_empty());
    h.call("CreateSecret", json!({"Name": "ok", "SecretString": "v1"}))
        .await
        .unwrap();
    let before = h.store_dump().await;
    let e = h
        .call(
            "PutSecretValue",
            json!({"SecretId": "ok", "SecretString": big}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "ValidationException");
    let e = h
        .call("PutSecretValue", json!({"SecretId": "ok"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidRequestException");
    h.kms.disabled.store(true, Ordering::SeqCst);
    let e = h
        .call(
            "PutSecretValue",
            json!({"SecretId": "ok", "SecretString": "v2"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "EncryptionFailure");
    assert!(e.1.contains("is disabled."), "{}", e.1);
    let e = h
        .call("GetSecretValue", json!({"SecretId": "ok"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "DecryptionFailure");
    let e = h
        .call("CreateSecret", json!({"Name": "new", "SecretString": "v"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "EncryptionFailure");
    assert_eq!(h.store_dump().await, before);
    h.kms.disabled.store(false, Ordering::SeqCst);
    let e = h
        .call("RotateSecret", json!({"SecretId": "ok"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidRequestException");
    assert!(e.1.contains("not supported"));
}

#[tokio::test]
async fn the_store_never_holds_plaintext() {
    let h = harness();
    h.call(
        "CreateSecret",
        json!({"Name": "canary", "SecretString": "CANARY-VALUE-1234"}),
    )
    .await
    .unwrap();
    h.call(
        "PutSecretValue",
        json!({"SecretId": "canary", "SecretString": "CANARY-VALUE-5678"}),
    )
    .await
    .unwrap();
    let dump = h.store_dump().await;
    assert!(!dump.contains("CANARY-VALUE"), "{dump}");
}

#[tokio::test]
async fn list_secrets_filters_sorts_and_pages() {
    let h = harness();
    for (i, name) in ["prod/a", "prod/b", "dev/a", "prod/c"].iter().enumerate() {
        h.call_at(
            T0 + i as u64,
            "CreateSecret",
            json!({"Name": name, "Tags": [{"Key": "env", "Value": name.split('/').next().unwrap()}]}),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"MaxResults": 2, "Filters": [{"Key": "name", "Values": ["prod/"]}]});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = h.call("ListSecrets", body).await.unwrap();
        for s in page["SecretList"].as_array().unwrap() {
            names.push(s["Name"].as_str().unwrap().to_owned());
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["prod/a", "prod/b", "prod/c"]);
    let desc = h
        .call(
            "ListSecrets",
            json!({"SortOrder": "desc", "Filters": [{"Key": "tag-value", "Values": ["!prod"]}]}),
        )
        .await
        .unwrap();
    assert_eq!(desc["SecretList"][0]["Name"], "dev/a");
    assert_eq!(desc["SecretList"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn resource_policies_are_validated() {
    let h = harness();
    h.call("CreateSecret", json!({"Name": "p"})).await.unwrap();
    let e = h
        .call(
            "PutResourcePolicy",
            json!({"SecretId": "p", "ResourcePolicy": "{\"Version\":"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        (
            "MalformedPolicyDocumentException".into(),
            "Syntax errors in policy.".into()
        )
    );
    let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let e = h
        .call(
            "PutResourcePolicy",
            json!({"SecretId": "p", "ResourcePolicy": public, "BlockPublicPolicy": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "PublicPolicyException");
    h.call(
        "PutResourcePolicy",
        json!({"SecretId": "p", "ResourcePolicy": public}),
    )
    .await
    .unwrap();
    let g = h
        .call("GetResourcePolicy", json!({"SecretId": "p"}))
        .await
        .unwrap();
    assert_eq!(g["ResourcePolicy"], public);
    h.call("DeleteResourcePolicy", json!({"SecretId": "p"}))
        .await
        .unwrap();
    let g = h
        .call("GetResourcePolicy", json!({"SecretId": "p"}))
        .await
        .unwrap();
    assert!(g.get("ResourcePolicy").is_none());
}

#[tokio::test]
async fn batch_get_reports_missing_secrets_as_errors() {
    let h = harness();
    h.call("CreateSecret", json!({"Name": "one", "SecretString": "1"}))
        .await
        .unwrap();
    let b = h
        .call(
            "BatchGetSecretValue",
            json!({"SecretIdList": ["one", "missing"]}),
        )
        .await
        .unwrap();
    assert_eq!(b["SecretValues"][0]["SecretString"], "1");
    assert_eq!(b["Errors"][0]["SecretId"], "missing");
    assert_eq!(b["Errors"][0]["ErrorCode"], "ResourceNotFoundException");
}

#[tokio::test]
async fn get_secret_value_for_is_get_secret_value() {
    let h = harness();
    let arn = h
        .call(
            "CreateSecret",
            json!({"Name": "creds", "SecretString": r#"{"username":"u","password":"p"}"#}),
        )
        .await
        .unwrap()["ARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .svc
        .get_secret_value_for(&ctx(T0), &arn, None, None)
        .await
        .unwrap();
    assert_eq!(
        r.value,
        gantry_secretsmanager::SecretValue::String(r#"{"username":"u","password":"p"}"#.into())
    );
    assert!(!format!("{r:?}").contains("password"));
}

#[tokio::test]
async fn a_deposed_leaders_maintenance_deletes_nothing() {
    use gantry_store::{FencedStore, claim_leadership};
    let h = harness();
    h.call("CreateSecret", json!({"Name": "app", "SecretString": "x"}))
        .await
        .unwrap();
    h.call(
        "DeleteSecret",
        json!({"SecretId": "app", "RecoveryWindowInDays": 7}),
    )
    .await
    .unwrap();
    // This replica led, then another replica was elected: its maintenance copy is deposed.
    let store: Arc<dyn Store> = h.store.clone();
    let fenced = Arc::new(FencedStore::new(store.clone()));
    fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
    claim_leadership(store.as_ref(), "b").await.unwrap();
    let deposed = h.svc.writing_through(fenced.clone());
    let _ = deposed.maintain(T0 + 8 * DAY_MS).await;
    assert!(
        h.store_dump().await.contains("secretsmanager/value"),
        "a deposed leader deleted a secret"
    );
    // Elected again: the same job now deletes it.
    fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
    assert_eq!(deposed.maintain(T0 + 8 * DAY_MS).await.unwrap(), 1);
    assert!(!h.store_dump().await.contains("secretsmanager/value"));
}
