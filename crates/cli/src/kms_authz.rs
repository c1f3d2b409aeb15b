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
    use crate::identity::tests::iam_call;
    use gantry_aws_proto::AwsError;
    use gantry_front::JsonService;
    use gantry_iam::IamService;
    use gantry_iam_policy::Principal;
    use gantry_kms::{KmsService, MasterKey};
    use gantry_store::MemoryStore;
    use serde_json::{Value, json};

    use crate::secrets::{Denied, ExecutionRoleAuthorizer, KmsKeys, TaskSecretResolver};
    use gantry_ecs::task_secrets::{TaskScope, TaskSecrets};
    use gantry_secretsmanager::SecretsManagerService;
    use gantry_ssm::SsmService;

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

    /// KMS with the key policy rule installed; users `alice` and `carol` without IAM policies,
    /// `bob` allowed `kms:*` by IAM.
    async fn setup() -> Arc<KmsService> {
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
        Arc::new(kms)
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

    /// Secrets Manager and Parameter Store over `kms`, as the server wires them.
    fn services(kms: &Arc<KmsService>) -> (SecretsManagerService, SsmService) {
        let store = Arc::new(MemoryStore::new());
        let keys = Arc::new(KmsKeys::new(kms.clone(), ACCOUNT));
        (
            SecretsManagerService::new(store.clone(), keys.clone()),
            SsmService::new(store, keys),
        )
    }

    async fn svc_call(
        svc: &dyn JsonService,
        caller: Option<&str>,
        op: &str,
        body: Value,
    ) -> Result<Value, AwsError> {
        svc.call(op, body.to_string().as_bytes(), &ctx(caller))
            .await
    }

    /// A key whose policy lets `alice` use it only through Secrets Manager and `bob` (IAM
    /// `kms:*`) through the account; `carol` has neither.
    async fn via_service_key(kms: &KmsService) -> String {
        let mut through_sm = statement("Allow", &user("alice"), "kms:*");
        through_sm["Condition"] = json!({
            "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
        });
        key(
            kms,
            Some(policy(vec![
                statement("Allow", &root(), "kms:*"),
                through_sm,
            ])),
        )
        .await
    }

    #[tokio::test]
    async fn secrets_manager_needs_the_caller_allowed_on_a_customer_key() {
        let kms = setup().await;
        let k = via_service_key(&kms).await;
        let (sm, _) = services(&kms);
        let create = |name: &str| json!({"Name": name, "SecretString": "s3cr3t", "KmsKeyId": k});
        // Allowed through the service only: the direct call is refused.
        svc_call(&sm, Some("alice"), "CreateSecret", create("a"))
            .await
            .unwrap();
        encrypt(&kms, "alice", &k).await.unwrap_err();
        let v = svc_call(
            &sm,
            Some("alice"),
            "GetSecretValue",
            json!({"SecretId": "a"}),
        )
        .await
        .unwrap();
        assert_eq!(v["SecretString"], "s3cr3t");
        svc_call(&sm, Some("bob"), "CreateSecret", create("b"))
            .await
            .unwrap();
        // Neither the key policy nor IAM allows carol: nothing is written.
        let e = svc_call(&sm, Some("carol"), "CreateSecret", create("c"))
            .await
            .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        assert_eq!(
            e.message,
            format!(
                "Access to KMS is not allowed (User: {} is not authorized to perform: kms:GenerateDataKey on resource: {k} because no identity-based policy allows the kms:GenerateDataKey action)",
                user("carol")
            )
        );
        let e = svc_call(&sm, None, "DescribeSecret", json!({"SecretId": "c"}))
            .await
            .unwrap_err();
        assert_eq!(e.code, "ResourceNotFoundException");
        let e = svc_call(
            &sm,
            Some("carol"),
            "GetSecretValue",
            json!({"SecretId": "a"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        assert!(
            e.message.contains(&format!("kms:Decrypt on resource: {k}")),
            "{}",
            e.message
        );
        let e = svc_call(
            &sm,
            Some("carol"),
            "PutSecretValue",
            json!({"SecretId": "a", "SecretString": "other"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        let v = svc_call(&sm, None, "GetSecretValue", json!({"SecretId": "a"}))
            .await
            .unwrap();
        assert_eq!(v["SecretString"], "s3cr3t");
        // The default key is the service's own: anyone the service lets in may use it.
        svc_call(
            &sm,
            Some("carol"),
            "CreateSecret",
            json!({"Name": "d", "SecretString": "x"}),
        )
        .await
        .unwrap();
        let v = svc_call(
            &sm,
            Some("carol"),
            "GetSecretValue",
            json!({"SecretId": "d"}),
        )
        .await
        .unwrap();
        assert_eq!(v["SecretString"], "x");
    }

    #[tokio::test]
    async fn parameter_store_checks_encrypt_and_decrypt_via_ssm() {
        let kms = setup().await;
        let k = via_service_key(&kms).await;
        let (_, ssm) = services(&kms);
        let put =
            |name: &str| json!({"Name": name, "Value": "tok", "Type": "SecureString", "KeyId": k});
        // alice's statement names Secrets Manager, not Parameter Store.
        let e = svc_call(&ssm, Some("alice"), "PutParameter", put("/a"))
            .await
            .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        assert!(
            e.message.starts_with(&format!(
                "User: {} is not authorized to perform: kms:Encrypt on resource: {k}",
                user("alice")
            )),
            "{}",
            e.message
        );
        svc_call(&ssm, Some("bob"), "PutParameter", put("/b"))
            .await
            .unwrap();
        let get = json!({"Name": "/b", "WithDecryption": true});
        let v = svc_call(&ssm, Some("bob"), "GetParameter", get.clone())
            .await
            .unwrap();
        assert_eq!(v["Parameter"]["Value"], "tok");
        let e = svc_call(&ssm, Some("carol"), "GetParameter", get)
            .await
            .unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        assert!(e.message.contains("kms:Decrypt"), "{}", e.message);
        // Without decryption the key is not used.
        svc_call(&ssm, Some("carol"), "GetParameter", json!({"Name": "/b"}))
            .await
            .unwrap();
        let e = svc_call(&ssm, None, "GetParameter", json!({"Name": "/a"}))
            .await
            .unwrap_err();
        assert_eq!(e.code, "ParameterNotFound");
        // The AWS managed key needs nothing more.
        svc_call(
            &ssm,
            Some("carol"),
            "PutParameter",
            json!({"Name": "/d", "Value": "x", "Type": "SecureString"}),
        )
        .await
        .unwrap();
        let v = svc_call(
            &ssm,
            Some("carol"),
            "GetParameter",
            json!({"Name": "/d", "WithDecryption": true}),
        )
        .await
        .unwrap();
        assert_eq!(v["Parameter"]["Value"], "x");
    }

    /// An execution role authorizer that lets the task read as `principal`.
    struct ReadsAs(Arc<Principal>);

    #[async_trait::async_trait]
    impl ExecutionRoleAuthorizer for ReadsAs {
        async fn authorize(
            &self,
            _: &TaskScope,
            _: &str,
            _: &str,
        ) -> Result<Option<Arc<Principal>>, Denied> {
            Ok(Some(self.0.clone()))
        }
        async fn role_session(
            &self,
            _: &TaskScope,
            role_arn: &str,
        ) -> Result<gantry_domain::secrets::TaskRoleCredentials, Denied> {
            Err(Denied(format!("cannot assume {role_arn} here")))
        }
    }

    #[tokio::test]
    async fn task_secrets_are_decrypted_as_the_execution_role() {
        let kms = setup().await;
        let k = via_service_key(&kms).await;
        let (sm, ssm) = services(&kms);
        let arn = svc_call(
            &sm,
            None,
            "CreateSecret",
            json!({"Name": "db", "SecretString": "pw", "KmsKeyId": k}),
        )
        .await
        .unwrap()["ARN"]
            .as_str()
            .unwrap()
            .to_owned();
        let (sm, ssm) = (Arc::new(sm), Arc::new(ssm));
        let task = TaskScope {
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
            task_arn: format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/c/t"),
            execution_role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/exec")),
            task_role_arn: None,
        };
        let as_user = |name: &str| ctx(Some(name)).caller.unwrap();
        let alice =
            TaskSecretResolver::new(sm.clone(), ssm.clone(), Arc::new(ReadsAs(as_user("alice"))));
        assert_eq!(alice.value_from(&task, &arn).await.unwrap(), "pw");
        let carol = TaskSecretResolver::new(sm, ssm, Arc::new(ReadsAs(as_user("carol"))));
        let e = carol.value_from(&task, &arn).await.unwrap_err();
        assert!(
            e.contains(&format!(
                "AccessDeniedException: Access to KMS is not allowed (User: {} is not authorized to perform: kms:Decrypt on resource: {k}",
                user("carol")
            )),
            "{e}"
        );
    }
}
