//! Parameter Store through its `JsonService` on the in-memory store, with a stand-in for KMS
//! (the real one is wired by the binary and tested end to end).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use gantry_front::{JsonService, RequestContext};
use gantry_ssm::{EncryptionContext, KeyFailure, ParameterCipher, SsmService};
use gantry_store::{MemoryStore, Store};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct FakeKms {
    disabled: AtomicBool,
}

#[async_trait]
impl ParameterCipher for FakeKms {
    async fn encrypt(
        &self,
        _ctx: &RequestContext,
        key: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyFailure> {
        if self.disabled.load(Ordering::SeqCst) {
            return Err(KeyFailure {
                code: "DisabledException".into(),
                message: format!("{key} is disabled."),
                internal: false,
            });
        }
        let data: Vec<u8> = plaintext.iter().map(|b| b ^ 0x33).collect();
        Ok(serde_json::to_vec(&json!({"key": key, "ctx": context, "data": data})).unwrap())
    }

    async fn decrypt(
        &self,
        _ctx: &RequestContext,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyFailure> {
        let v: Value = serde_json::from_slice(blob).unwrap();
        if self.disabled.load(Ordering::SeqCst) || v["ctx"] != json!(context) {
            return Err(KeyFailure {
                code: "DisabledException".into(),
                message: "disabled".into(),
                internal: false,
            });
        }
        Ok(v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8 ^ 0x33)
            .collect())
    }
}

struct Harness {
    svc: SsmService,
    kms: Arc<FakeKms>,
    store: Arc<MemoryStore>,
}

fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let kms = Arc::new(FakeKms::default());
    Harness {
        svc: SsmService::new(store.clone(), kms.clone()),
        kms,
        store,
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        caller: None,
        request_id: "req-1".into(),
        region: "us-east-1".into(),
        account_id: "111122223333".into(),
        access_key_id: "AKIAEXAMPLE".into(),
        now: 1_700_000_000_000,
    }
}

impl Harness {
    async fn call(&self, op: &str, body: Value) -> Result<Value, (String, String)> {
        self.svc
            .call(op, body.to_string().as_bytes(), &ctx())
            .await
            .map_err(|e| (e.code.to_string(), e.message))
    }

    async fn dump(&self) -> String {
        self.store
            .scan("", None, 0)
            .await
            .unwrap()
            .records
            .iter()
            .map(|r| format!("{} {}\n", r.key, String::from_utf8_lossy(&r.value)))
            .collect()
    }
}

#[tokio::test]
async fn secure_strings_are_encrypted_and_read_with_or_without_decryption() {
    let h = harness();
    let p = h
        .call(
            "PutParameter",
            json!({"Name": "/app/db/password", "Value": "S3CRET-VALUE", "Type": "SecureString"}),
        )
        .await
        .unwrap();
    assert_eq!(p, json!({"Version": 1, "Tier": "Standard"}));
    assert!(!h.dump().await.contains("S3CRET-VALUE"));
    let plain = h
        .call(
            "GetParameter",
            json!({"Name": "/app/db/password", "WithDecryption": true}),
        )
        .await
        .unwrap();
    assert_eq!(plain["Parameter"]["Value"], "S3CRET-VALUE");
    assert_eq!(plain["Parameter"]["Type"], "SecureString");
    assert_eq!(
        plain["Parameter"]["ARN"],
        "arn:aws:ssm:us-east-1:111122223333:parameter/app/db/password"
    );
    let cipher = h
        .call("GetParameter", json!({"Name": "/app/db/password"}))
        .await
        .unwrap();
    let v = cipher["Parameter"]["Value"].as_str().unwrap();
    assert_ne!(v, "S3CRET-VALUE");
    assert!(!v.contains("S3CRET"));
    let d = h.call("DescribeParameters", json!({})).await.unwrap();
    assert_eq!(d["Parameters"][0]["KeyId"], "alias/aws/ssm");
}

#[tokio::test]
async fn versions_labels_and_selectors() {
    let h = harness();
    h.call(
        "PutParameter",
        json!({"Name": "/cfg/url", "Value": "v1", "Type": "String"}),
    )
    .await
    .unwrap();
    let e = h
        .call(
            "PutParameter",
            json!({"Name": "/cfg/url", "Value": "v2", "Type": "String"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "ParameterAlreadyExists");
    let p = h
        .call(
            "PutParameter",
            json!({"Name": "/cfg/url", "Value": "v2", "Overwrite": true}),
        )
        .await
        .unwrap();
    assert_eq!(p["Version"], 2);
    let l = h
        .call(
            "LabelParameterVersion",
            json!({"Name": "/cfg/url", "ParameterVersion": 1, "Labels": ["stable", "1bad"]}),
        )
        .await
        .unwrap();
    assert_eq!(l, json!({"InvalidLabels": ["1bad"], "ParameterVersion": 1}));
    let g = h
        .call("GetParameter", json!({"Name": "/cfg/url:stable"}))
        .await
        .unwrap();
    assert_eq!(
        (
            g["Parameter"]["Value"].clone(),
            g["Parameter"]["Selector"].clone()
        ),
        (json!("v1"), json!(":stable"))
    );
    let g = h
        .call("GetParameter", json!({"Name": "/cfg/url:2"}))
        .await
        .unwrap();
    assert_eq!(g["Parameter"]["Value"], "v2");
    let e = h
        .call("GetParameter", json!({"Name": "/cfg/url:7"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "ParameterVersionNotFound");
    let hist = h
        .call("GetParameterHistory", json!({"Name": "/cfg/url"}))
        .await
        .unwrap();
    assert_eq!(hist["Parameters"][0]["Labels"], json!(["stable"]));
    assert_eq!(hist["Parameters"][1]["Value"], "v2");
    let u = h
        .call(
            "UnlabelParameterVersion",
            json!({"Name": "/cfg/url", "ParameterVersion": 1, "Labels": ["stable", "nope"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        u,
        json!({"RemovedLabels": ["stable"], "InvalidLabels": ["nope"]})
    );
    let e = h
        .call(
            "PutParameter",
            json!({"Name": "/cfg/url", "Value": "x", "Type": "SecureString", "Overwrite": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "HierarchyTypeMismatchException");
}

#[tokio::test]
async fn one_hundred_versions_then_the_oldest_goes_unless_labelled() {
    let h = harness();
    for i in 0..100 {
        h.call(
            "PutParameter",
            json!({"Name": "n", "Value": format!("v{i}"), "Type": "String", "Overwrite": true}),
        )
        .await
        .unwrap();
    }
    h.call(
        "LabelParameterVersion",
        json!({"Name": "n", "ParameterVersion": 1, "Labels": ["keep"]}),
    )
    .await
    .unwrap();
    let e = h
        .call(
            "PutParameter",
            json!({"Name": "n", "Value": "v101", "Overwrite": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "ParameterMaxVersionLimitExceeded");
    h.call(
        "UnlabelParameterVersion",
        json!({"Name": "n", "ParameterVersion": 1, "Labels": ["keep"]}),
    )
    .await
    .unwrap();
    let p = h
        .call(
            "PutParameter",
            json!({"Name": "n", "Value": "v101", "Overwrite": true}),
        )
        .await
        .unwrap();
    assert_eq!(p["Version"], 101);
    let e = h
        .call("GetParameter", json!({"Name": "n:1"}))
        .await
        .unwrap_err();
    assert_eq!(e.0, "ParameterVersionNotFound");
}

#[tokio::test]
async fn paths_recurse_and_page() {
    let h = harness();
    for n in ["/a/1", "/a/2", "/a/b/3", "/a/b/c/4", "/z/5"] {
        h.call(
            "PutParameter",
            json!({"Name": n, "Value": "x", "Type": "String"}),
        )
        .await
        .unwrap();
    }
    let one = h
        .call("GetParametersByPath", json!({"Path": "/a"}))
        .await
        .unwrap();
    let names: Vec<&str> = one["Parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/a/1", "/a/2"]);
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"Path": "/a", "Recursive": true, "MaxResults": 1});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = h.call("GetParametersByPath", body).await.unwrap();
        for p in page["Parameters"].as_array().unwrap() {
            all.push(p["Name"].as_str().unwrap().to_owned());
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(all, ["/a/1", "/a/2", "/a/b/3", "/a/b/c/4"]);
    let d = h
        .call("DescribeParameters", json!({"ParameterFilters": [{"Key": "Path", "Option": "Recursive", "Values": ["/a/b"]}]}))
        .await
        .unwrap();
    assert_eq!(d["Parameters"].as_array().unwrap().len(), 2);
    let e = h
        .call(
            "GetParametersByPath",
            json!({"Path": "/a", "ParameterFilters": [{"Key": "Name", "Values": ["x"]}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidFilterKey");
}

#[tokio::test]
async fn get_and_delete_many_report_invalid_names() {
    let h = harness();
    h.call(
        "PutParameter",
        json!({"Name": "/x", "Value": "1", "Type": "StringList"}),
    )
    .await
    .unwrap();
    let g = h
        .call("GetParameters", json!({"Names": ["/x", "/missing"]}))
        .await
        .unwrap();
    assert_eq!(g["Parameters"][0]["Value"], "1");
    assert_eq!(g["InvalidParameters"], json!(["/missing"]));
    let d = h
        .call("DeleteParameters", json!({"Names": ["/x", "/missing"]}))
        .await
        .unwrap();
    assert_eq!(
        d,
        json!({"DeletedParameters": ["/x"], "InvalidParameters": ["/missing"]})
    );
    let e = h
        .call("DeleteParameter", json!({"Name": "/x"}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ("ParameterNotFound".into(), "Parameter /x not found.".into())
    );
    assert!(h.dump().await.is_empty());
}

#[tokio::test]
async fn bad_input_and_a_disabled_key_write_nothing() {
    let h = harness();
    for (body, code) in [
        (
            json!({"Name": "/aws/x", "Value": "v", "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/a b", "Value": "v", "Type": "String"}),
            "ValidationException",
        ),
        (json!({"Name": "/n", "Value": "v"}), "ValidationException"),
        (
            json!({"Name": "/n", "Value": "v", "Type": "Text"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/n", "Value": "x".repeat(4097), "Type": "String"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/n", "Value": "abc", "Type": "String", "AllowedPattern": "\\d+"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/n", "Value": "v", "Type": "String", "KeyId": "alias/k"}),
            "ValidationException",
        ),
        (
            json!({"Name": "/n", "Value": "v", "Type": "String", "Policies": "[]"}),
            "UnsupportedOperationException",
        ),
    ] {
        let e = h.call("PutParameter", body.clone()).await.unwrap_err();
        assert_eq!(e.0, code, "{body}");
    }
    assert!(h.dump().await.is_empty());
    h.kms.disabled.store(true, Ordering::SeqCst);
    let e = h
        .call(
            "PutParameter",
            json!({"Name": "/s", "Value": "v", "Type": "SecureString", "KeyId": "alias/app"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidKeyId");
    assert!(e.1.contains("Error Code: DisabledException"), "{}", e.1);
    assert!(h.dump().await.is_empty());
    let e = h.call("SendCommand", json!({})).await.unwrap_err();
    assert_eq!(e.0, "UnsupportedOperationException");
}

#[tokio::test]
async fn tags_on_parameters() {
    let h = harness();
    h.call("PutParameter", json!({"Name": "/t", "Value": "v", "Type": "String", "Tags": [{"Key": "env", "Value": "dev"}]}))
        .await
        .unwrap();
    h.call("AddTagsToResource", json!({"ResourceType": "Parameter", "ResourceId": "/t", "Tags": [{"Key": "team", "Value": "a"}]}))
        .await
        .unwrap();
    h.call(
        "RemoveTagsFromResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/t", "TagKeys": ["env"]}),
    )
    .await
    .unwrap();
    let l = h
        .call(
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/t"}),
        )
        .await
        .unwrap();
    assert_eq!(l["TagList"], json!([{"Key": "team", "Value": "a"}]));
    let e = h
        .call(
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": "/none"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, "InvalidResourceId");
}

#[tokio::test]
async fn get_parameters_for_is_get_parameters() {
    let h = harness();
    h.call(
        "PutParameter",
        json!({"Name": "/p", "Value": "hidden", "Type": "SecureString"}),
    )
    .await
    .unwrap();
    let r = h
        .svc
        .get_parameters_for(&ctx(), &["/p".to_owned(), "/q".to_owned()], true)
        .await
        .unwrap();
    assert_eq!(r.parameters[0].value, "hidden");
    assert_eq!(r.invalid, ["/q"]);
    assert!(!format!("{r:?}").contains("hidden"));
}
