//! KMS's authorization rule for keys, over the IAM directory: the key policy must allow the
//! request, either by naming the caller (its ARN, the role of its session, `*`, its service) or
//! by naming the account (`arn:aws:iam::ACCOUNT:root` or the account id), in which case the
//! caller's IAM policies (with its permissions boundary and session policies) must allow it too.
//! Without an `Allow` in the key policy, IAM policies grant nothing, unlike other resource
//! policies. An explicit `Deny` in either decides. The account root's credentials are not
//! checked (as everywhere in Gantry).

use std::sync::Arc;

use gantry_front::RequestContext;
use gantry_iam_policy::{Decision, Policy, PolicyKind, PolicyType, Request};
use gantry_kms::{KeyAccess, KeyAuthorizer};

use crate::authz;
use crate::identity::Identity;

/// The [`KeyAuthorizer`] KMS asks before acting on a key.
#[derive(Debug)]
pub struct KeyPolicies {
    pub identity: Arc<Identity>,
}

impl KeyAuthorizer for KeyPolicies {
    fn authorize(&self, ctx: &RequestContext, access: &KeyAccess<'_>) -> Result<(), String> {
        let Some(principal) = ctx.caller.as_deref() else {
            return Ok(());
        };
        let denied = |why: &str| {
            format!(
                "User: {} is not authorized to perform: {} on resource: {} because no {why} allows the {} action",
                principal.arn, access.action, access.key_arn, access.action
            )
        };
        let Ok(key_policy) = Policy::parse(access.policy, PolicyKind::Resource) else {
            // Stored policies were validated on write; one that no longer parses allows nothing.
            tracing::warn!(key = access.key_arn, "a stored key policy does not parse");
            return Err(denied("resource-based policy"));
        };
        let Some(policies) = self.identity.policies(ctx, principal) else {
            return Err(denied("identity-based policy"));
        };
        let mut context = authz::base_context(ctx);
        context.insert("kms:CallerAccount", principal.account.clone());
        if let Some(via) = access.via_service {
            context.insert("kms:ViaService", via);
        }
        let resources = [access.key_arn];
        let request = Request {
            principal,
            action: access.action,
            resources: &resources,
            resource_account: None,
            context: &context,
        };
        // Within the account: an explicit deny anywhere decides, and a key policy naming the
        // caller (or its role) grants by itself.
        let within = policies.evaluate(&request, Some(&key_policy));
        match (within.decision, within.policy_type) {
            (Decision::ExplicitDeny, _) => {
                return Err(within
                    .denial_message(&request)
                    .unwrap_or_else(|| denied("resource-based policy")));
            }
            (Decision::Allow, Some(PolicyType::ResourceBased)) => return Ok(()),
            _ => {}
        }
        // Otherwise both sides must allow, as across accounts: the key policy naming the
        // account (or the caller) AND the caller's IAM policies. An empty resource account
        // is never the caller's, which selects that rule.
        let both = Request {
            resource_account: Some(""),
            ..request
        };
        let e = policies.evaluate(&both, Some(&key_policy));
        if e.is_allowed() {
            return Ok(());
        }
        Err(e
            .denial_message(&request)
            .unwrap_or_else(|| denied("resource-based policy")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::credentials::RootCredentials;
    use crate::identity::MasterSealer;
    use gantry_aws_proto::AwsError;
    use gantry_aws_proto::query::QueryRequest;
    use gantry_front::{JsonService, QueryService};
    use gantry_iam::IamService;
    use gantry_iam_policy::Principal;
    use gantry_kms::{KmsService, MasterKey};
    use gantry_store::MemoryStore;
    use serde_json::{Value, json};

    const ACCOUNT: &str = "111122223333";

    fn ctx(caller: Option<&str>) -> RequestContext {
        RequestContext {
            caller: caller.map(|name| {
                Arc::new(Principal::user(
                    ACCOUNT,
                    "/",
                    name,
                    &format!("AIDA{}", name.to_uppercase()),
                ))
            }),
            request_id: "r".into(),
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
            access_key_id: "AKIAEXAMPLE".into(),
            now: 1_700_000_000_000,
        }
    }

    async fn iam_call(iam: &IamService, action: &str, params: &[(&str, &str)]) {
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            body.push_str(&format!("&{k}={enc}"));
        }
        iam.call(
            action,
            &QueryRequest::parse(body.as_bytes(), None),
            &ctx(None),
        )
        .await
        .unwrap();
    }

    /// KMS with the key policy rule installed; users `alice` and `carol` without IAM policies,
    /// `bob` allowed `kms:*` by IAM.
    async fn setup() -> KmsService {
        let iam = Arc::new(
            IamService::open(
                Arc::new(MemoryStore::new()),
                Arc::new(MasterSealer(MasterKey::new(&[7u8; 32]).unwrap())),
                ACCOUNT,
            )
            .await
            .unwrap(),
        );
        for user in ["alice", "bob", "carol"] {
            iam_call(&iam, "CreateUser", &[("UserName", user)]).await;
        }
        let all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
        iam_call(
            &iam,
            "PutUserPolicy",
            &[
                ("UserName", "bob"),
                ("PolicyName", "kms"),
                ("PolicyDocument", all),
            ],
        )
        .await;
        let identity = Arc::new(Identity::new(
            Arc::new(RootCredentials {
                access_key_id: "AKIAROOT".into(),
                secret_access_key: "s".into(),
            }),
            iam,
            "us-east-1",
        ));
        let kms = KmsService::new(
            Arc::new(MemoryStore::new()),
            MasterKey::new(&[9u8; 32]).unwrap(),
        );
        kms.set_key_authorizer(Arc::new(KeyPolicies { identity }));
        kms
    }

    async fn call(
        kms: &KmsService,
        caller: Option<&str>,
        op: &str,
        body: Value,
    ) -> Result<Value, AwsError> {
        kms.call(op, body.to_string().as_bytes(), &ctx(caller))
            .await
    }

    /// A key created by the root with `policy` (AWS's default when `None`); its ARN.
    async fn key(kms: &KmsService, policy: Option<Value>) -> String {
        let body = match policy {
            Some(p) => json!({"Policy": p.to_string()}),
            None => json!({}),
        };
        let v = call(kms, None, "CreateKey", body).await.unwrap();
        v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned()
    }

    fn statement(effect: &str, principal: &str, action: &str) -> Value {
        json!({"Effect": effect, "Principal": {"AWS": principal}, "Action": action, "Resource": "*"})
    }

    fn user(name: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:user/{name}")
    }

    fn root() -> String {
        format!("arn:aws:iam::{ACCOUNT}:root")
    }

    fn policy(statements: Vec<Value>) -> Value {
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    async fn encrypt(kms: &KmsService, caller: &str, key: &str) -> Result<Value, AwsError> {
        call(
            kms,
            Some(caller),
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "aGk="}),
        )
        .await
    }

    fn denied(e: &AwsError, caller: &str, action: &str, key: &str, why: &str) {
        assert_eq!(e.code, "AccessDeniedException");
        assert_eq!(
            e.message,
            format!(
                "User: {} is not authorized to perform: {action} on resource: {key} {why}",
                user(caller)
            )
        );
    }

    #[tokio::test]
    async fn a_key_policy_naming_the_user_allows_without_iam_policies() {
        let kms = setup().await;
        let k = key(
            &kms,
            Some(policy(vec![
                statement("Allow", &root(), "kms:*"),
                statement("Allow", &user("alice"), "kms:Encrypt"),
            ])),
        )
        .await;
        encrypt(&kms, "alice", &k).await.unwrap();
        // Another action is not named for her, and she has no IAM policy.
        let e = call(&kms, Some("alice"), "DescribeKey", json!({"KeyId": k}))
            .await
            .unwrap_err();
        denied(
            &e,
            "alice",
            "kms:DescribeKey",
            &k,
            "because no identity-based policy allows the kms:DescribeKey action",
        );
    }

    #[tokio::test]
    async fn a_root_delegating_policy_needs_an_iam_allow() {
        let kms = setup().await;
        let k = key(&kms, None).await;
        encrypt(&kms, "bob", &k).await.unwrap();
        let e = encrypt(&kms, "carol", &k).await.unwrap_err();
        denied(
            &e,
            "carol",
            "kms:Encrypt",
            &k,
            "because no identity-based policy allows the kms:Encrypt action",
        );
        // By alias too: the alias resolves to the key.
        call(
            &kms,
            None,
            "CreateAlias",
            json!({"AliasName": "alias/app", "TargetKeyId": k}),
        )
        .await
        .unwrap();
        encrypt(&kms, "bob", "alias/app").await.unwrap();
        let e = encrypt(&kms, "carol", "alias/app").await.unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
    }

    #[tokio::test]
    async fn iam_alone_grants_nothing_without_a_key_policy_allow() {
        let kms = setup().await;
        let k = key(
            &kms,
            Some(policy(vec![statement("Allow", &user("alice"), "kms:*")])),
        )
        .await;
        let e = encrypt(&kms, "bob", &k).await.unwrap_err();
        denied(
            &e,
            "bob",
            "kms:Encrypt",
            &k,
            "because no resource-based policy allows the kms:Encrypt action",
        );
        // Decrypt is decided on the key inside the ciphertext.
        let blob = encrypt(&kms, "alice", &k).await.unwrap()["CiphertextBlob"].clone();
        let e = call(
            &kms,
            Some("bob"),
            "Decrypt",
            json!({"CiphertextBlob": blob}),
        )
        .await
        .unwrap_err();
        denied(
            &e,
            "bob",
            "kms:Decrypt",
            &k,
            "because no resource-based policy allows the kms:Decrypt action",
        );
        call(
            &kms,
            Some("alice"),
            "Decrypt",
            json!({"CiphertextBlob": blob}),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_explicit_deny_in_the_key_policy_beats_an_iam_allow() {
        let kms = setup().await;
        let k = key(
            &kms,
            Some(policy(vec![
                statement("Allow", &root(), "kms:*"),
                statement("Deny", &user("bob"), "kms:Decrypt"),
            ])),
        )
        .await;
        let blob = encrypt(&kms, "bob", &k).await.unwrap()["CiphertextBlob"].clone();
        let e = call(
            &kms,
            Some("bob"),
            "Decrypt",
            json!({"CiphertextBlob": blob}),
        )
        .await
        .unwrap_err();
        denied(
            &e,
            "bob",
            "kms:Decrypt",
            &k,
            "with an explicit deny in a resource-based policy",
        );
        // The root's credentials are not checked.
        call(&kms, None, "Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn put_key_policy_guards_against_lockout_and_a_bypassed_lockout_holds() {
        let kms = setup().await;
        let k = key(
            &kms,
            Some(policy(vec![statement("Allow", &user("alice"), "kms:*")])),
        )
        .await;
        let only_carol = policy(vec![statement("Allow", &user("carol"), "kms:*")]).to_string();
        let e = call(
            &kms,
            Some("alice"),
            "PutKeyPolicy",
            json!({"KeyId": k, "PolicyName": "default", "Policy": only_carol}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocumentException");
        assert_eq!(
            e.message,
            "The new key policy will not allow you to update the key policy in the future."
        );
        encrypt(&kms, "alice", &k).await.unwrap();
        // A policy delegating to the account passes the check.
        let delegating = policy(vec![statement("Allow", ACCOUNT, "kms:*")]).to_string();
        call(
            &kms,
            Some("alice"),
            "PutKeyPolicy",
            json!({"KeyId": k, "PolicyName": "default", "Policy": delegating}),
        )
        .await
        .unwrap();
        // Alice has no IAM policy: she is now locked out, bob (IAM kms:*) is in.
        encrypt(&kms, "alice", &k).await.unwrap_err();
        call(
            &kms,
            Some("bob"),
            "PutKeyPolicy",
            json!({"KeyId": k, "PolicyName": "default", "Policy": only_carol, "BypassPolicyLockoutSafetyCheck": true}),
        )
        .await
        .unwrap();
        let e = encrypt(&kms, "bob", &k).await.unwrap_err();
        denied(
            &e,
            "bob",
            "kms:Encrypt",
            &k,
            "because no resource-based policy allows the kms:Encrypt action",
        );
        encrypt(&kms, "carol", &k).await.unwrap();
        // CreateKey applies the same check to the caller.
        let e = call(
            &kms,
            Some("bob"),
            "CreateKey",
            json!({"Policy": only_carol}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocumentException");
    }

    #[tokio::test]
    async fn aws_managed_keys_are_usable_through_their_service_only() {
        let kms = setup().await;
        // Metadata is the account's to read, through IAM (the key is made on first use).
        let v = call(
            &kms,
            Some("bob"),
            "DescribeKey",
            json!({"KeyId": "alias/aws/ssm"}),
        )
        .await
        .unwrap();
        let k = v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
        // Direct use is not allowed by the managed key's policy.
        let e = encrypt(&kms, "bob", "alias/aws/ssm").await.unwrap_err();
        denied(
            &e,
            "bob",
            "kms:Encrypt",
            &k,
            "because no resource-based policy allows the kms:Encrypt action",
        );
        call(
            &kms,
            Some("carol"),
            "DescribeKey",
            json!({"KeyId": "alias/aws/ssm"}),
        )
        .await
        .unwrap_err();
    }
}
