//! Who may read which student, through the built binary under a local Lambda
//! Runtime API: every identity kind AppSync sends, allowed and refused as the
//! policy says (`src/authz.rs`), per item of a batch; refused students never
//! reach SQL Server; a missing student is refused exactly like a forbidden
//! one. And the `nextToken` keys from Secrets Manager: rotated, with the old
//! key accepted during its grace period only.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use testkit::appsync::{ResolverEvent, identity};
use testkit::fixtures::{DEMO_SCHOOL_A, DEMO_SCHOOL_B};
use testkit::function::{Function, lambda_env};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

use support::{RESOLVER_BINARY, Stack};

const TIMEOUT: Duration = Duration::from_secs(20);
const TRUSTED_ROLE: &str = "arn:aws:iam::111122223333:role/reports";

fn event(student_id: &str, caller: Value) -> Value {
    ResolverEvent::get_assessments(json!({"studentId": student_id, "limit": 2}))
        .identity(caller)
        .into_json()
}

/// What a refused item says: the same for every student, existing or not,
/// and naming none (AppSync logs errors).
fn refused() -> Value {
    json!({
        "data": null,
        "errorType": "Unauthorized",
        "errorMessage": "studentId: not authorized to read the assessments of this studentId",
    })
}

/// The binary with no API-key callers, one trusted role, the stack's admin
/// group and school claim (`admins`, `custom:schoolId`), and `extra`.
fn spawn(stack: &Stack, api: &RuntimeApi, extra: &[(&str, &str)]) -> Function {
    spawn_without(stack, api, &[], extra)
}

/// [`spawn`], with the settings `unset` removed first.
fn spawn_without(
    stack: &Stack,
    api: &RuntimeApi,
    unset: &[&str],
    extra: &[(&str, &str)],
) -> Function {
    let mut env = stack.env();
    env.retain(|(k, _)| k != "AUTHZ_ALLOW_API_KEY" && !unset.contains(&k.as_str()));
    env.push((
        "AUTHZ_TRUSTED_ROLE_ARNS".to_owned(),
        TRUSTED_ROLE.to_owned(),
    ));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env.extend(lambda_env(api, "assessments-resolver"));
    Function::spawn(RESOLVER_BINARY, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_kind_reads_exactly_the_students_the_policy_allows() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let _function = spawn(&stack, &api, &[]);
    let teacher_a = || identity::cognito("teacher-a", &["teachers"], Some(DEMO_SCHOOL_A));

    // (student, caller, allowed): stu-0001/0003 are in school A, stu-0002/0004 in B,
    // stu-9999 has rows but no profile, stu-7777 has nothing at all.
    let cases: Vec<(&str, Value, bool)> = vec![
        // Cognito user pools: the admin group reads anyone, a teacher their school.
        (
            "stu-0002",
            identity::cognito("root", &["admins"], None),
            true,
        ),
        ("stu-0001", teacher_a(), true),
        ("stu-0003", teacher_a(), true),
        ("stu-0002", teacher_a(), false),
        ("stu-9999", teacher_a(), false),
        ("stu-7777", teacher_a(), false),
        (
            "stu-0001",
            identity::cognito("nobody", &["teachers"], None),
            false,
        ),
        // OIDC: groups and the school in the token's claims.
        (
            "stu-0004",
            identity::oidc("o-admin", &["admins"], None),
            true,
        ),
        (
            "stu-0002",
            identity::oidc("o-b", &[], Some(DEMO_SCHOOL_B)),
            true,
        ),
        (
            "stu-0001",
            identity::oidc("o-b", &[], Some(DEMO_SCHOOL_B)),
            false,
        ),
        // IAM: only the trusted role, also as an assumed-role session.
        (
            "stu-0001",
            identity::iam("arn:aws:sts::111122223333:assumed-role/reports/nightly"),
            true,
        ),
        ("stu-0001", identity::iam(TRUSTED_ROLE), true),
        (
            "stu-0001",
            identity::iam("arn:aws:sts::111122223333:assumed-role/reports-2/x"),
            false,
        ),
        (
            "stu-0001",
            identity::iam("arn:aws:iam::999999999999:role/reports"),
            false,
        ),
        // Lambda authorizer: its resolverContext.
        (
            "stu-0003",
            identity::lambda_authorizer(json!({"schoolId": DEMO_SCHOOL_A})),
            true,
        ),
        (
            "stu-0004",
            identity::lambda_authorizer(json!({"groups": "staff,admins"})),
            true,
        ),
        (
            "stu-0003",
            identity::lambda_authorizer(json!({"schoolId": DEMO_SCHOOL_B})),
            false,
        ),
        // API key: refused unless AUTHZ_ALLOW_API_KEY=true.
        ("stu-0001", identity::api_key(), false),
        // An identity of no known shape.
        ("stu-0001", json!({"weird": true}), false),
    ];
    let batch = Value::Array(cases.iter().map(|(s, c, _)| event(s, c.clone())).collect());
    let InvocationResult::Response(answer) = api.invoke(batch, TIMEOUT).await.expect("invoke")
    else {
        panic!("a batch always gets a response")
    };
    let answers = answer.as_array().expect("a list");
    assert_eq!(answers.len(), cases.len());
    for ((student, caller, allowed), answer) in cases.iter().zip(answers) {
        if *allowed {
            assert!(
                answer["data"]["items"].is_array() && answer.get("errorType").is_none(),
                "{student} for {caller}: {answer}"
            );
        } else {
            assert_eq!(answer, &refused(), "{student} for {caller}");
        }
    }
    // The readable students had rows to show (stu-0001/0002/0003/0004 all
    // have profiles; stu-0001 has 74 assessments).
    assert_eq!(
        answers[1]["data"]["items"].as_array().map(Vec::len),
        Some(2)
    );

    // A single invocation: the error document, the same for a missing student
    // as for another school's.
    for student in ["stu-0002", "stu-9999"] {
        let result = api
            .invoke(event(student, teacher_a()), TIMEOUT)
            .await
            .expect("invoke");
        let InvocationResult::Error(error) = result else {
            panic!("{student}: expected an error, got {result:?}")
        };
        assert_eq!(error["errorType"], "Unauthorized");
        assert_eq!(error["errorMessage"], refused()["errorMessage"]);
    }

    // Nothing refused reached SQL Server: the refused-only students' ids are in no statement.
    let statements = stack.tds().recorded();
    assert!(!statements.is_empty());
    for student in ["stu-9999", "stu-7777"] {
        assert!(
            statements
                .iter()
                .all(|s| s.params.iter().all(|p| p.value.as_str() != Some(student))),
            "{student} was queried: {statements:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_callers_read_only_where_the_setting_allows_it() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let _function = spawn(&stack, &api, &[("AUTHZ_ALLOW_API_KEY", "true")]);
    let result = api
        .invoke(event("stu-0002", identity::api_key()), TIMEOUT)
        .await
        .expect("invoke");
    assert!(
        matches!(&result, InvocationResult::Response(page) if page["items"].is_array()),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_group_and_school_claim_are_settings() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let _function = spawn(
        &stack,
        &api,
        &[
            ("AUTHZ_ADMIN_GROUPS", "district-staff, auditors"),
            ("AUTHZ_SCHOOL_CLAIM", "custom:campus"),
        ],
    );
    let batch = json!([
        event("stu-0002", identity::cognito("d", &["auditors"], None)),
        event("stu-0002", identity::cognito("a", &["admins"], None)),
        event(
            "stu-0003",
            identity::oidc("t", &[], None).tap_claim("custom:campus", DEMO_SCHOOL_A)
        ),
        event(
            "stu-0003",
            identity::lambda_authorizer(json!({"campus": DEMO_SCHOOL_A}))
        ),
        event(
            "stu-0003",
            identity::cognito("t", &["teachers"], Some(DEMO_SCHOOL_A))
        ),
    ]);
    let InvocationResult::Response(answer) = api.invoke(batch, TIMEOUT).await.expect("invoke")
    else {
        panic!("a batch always gets a response")
    };
    assert!(answer[0]["data"]["items"].is_array(), "{answer}");
    assert_eq!(answer[1], refused(), "admins is no longer the admin group");
    assert!(answer[2]["data"]["items"].is_array(), "{answer}");
    assert!(answer[3]["data"]["items"].is_array(), "{answer}");
    assert_eq!(answer[4], refused(), "custom:schoolId is no longer read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_admin_group_and_no_school_claim_set_nobody_is_admitted() {
    let stack = Stack::start(&[]).await;
    for unset in ["", " "] {
        let api = RuntimeApi::start().await.expect("runtime API");
        // Unset (the first run) or set but empty (the second), as the template
        // leaves them when its parameters are left at their defaults.
        let extra: &[(&str, &str)] = if unset.is_empty() {
            &[]
        } else {
            &[("AUTHZ_ADMIN_GROUPS", unset), ("AUTHZ_SCHOOL_CLAIM", unset)]
        };
        let mut function = spawn_without(
            &stack,
            &api,
            &["AUTHZ_ADMIN_GROUPS", "AUTHZ_SCHOOL_CLAIM"],
            extra,
        );
        let batch = json!([
            event("stu-0002", identity::cognito("root", &["admins"], None)),
            event(
                "stu-0001",
                identity::cognito("t", &["teachers"], Some(DEMO_SCHOOL_A))
            ),
            event(
                "stu-0001",
                identity::lambda_authorizer(json!({"groups": "admins", "schoolId": DEMO_SCHOOL_A}))
            ),
        ]);
        let InvocationResult::Response(answer) = api.invoke(batch, TIMEOUT).await.expect("invoke")
        else {
            panic!("a batch always gets a response")
        };
        assert_eq!(
            answer,
            json!([refused(), refused(), refused()]),
            "{unset:?}"
        );
        function.terminate();
    }
}

/// The audit line's student hash, computed as docs/security.md says:
/// HMAC-SHA256(HMAC-SHA256(nextToken key, label), student id), 16 bytes, base64url.
fn audit_ref(token_key: &str, student_id: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mac = |key: &[u8], data: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes()
    };
    let audit_key = mac(token_key.as_bytes(), b"assessments-resolver audit v1");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(&mac(&audit_key, student_id.as_bytes())[..16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_has_one_audit_line_and_no_line_names_a_student() {
    let stack = Stack::start(&[]).await;
    let token_key = (stack.env().into_iter())
        .find(|(k, _)| k == "NEXT_TOKEN_KEY")
        .map(|(_, v)| v)
        .expect("the stack's key");
    let teacher = || identity::cognito("teacher-a", &["teachers"], Some(DEMO_SCHOOL_A));
    // (student, caller, limit, decision, errorType)
    let cases: [(&str, Value, i64, &str, Option<&str>); 5] = [
        (
            "stu-0002",
            identity::cognito("root", &["admins"], None),
            2,
            "allowed",
            None,
        ),
        ("stu-0001", teacher(), 2, "allowed", None),
        ("stu-0002", teacher(), 2, "denied", Some("Unauthorized")),
        (
            "stu-7777",
            identity::iam(TRUSTED_ROLE),
            2,
            "allowed",
            Some("NotFound"),
        ),
        (
            "stu-0001",
            teacher(),
            0,
            "rejected",
            Some("ValidationError"),
        ),
    ];
    // At the default level, and at `error`: audit lines are kept at every level.
    for level in [None, Some("error")] {
        let api = RuntimeApi::start().await.expect("runtime API");
        let extra: Vec<(&str, &str)> = level.map(|l| ("RUST_LOG", l)).into_iter().collect();
        let mut function = spawn(&stack, &api, &extra);
        let batch = Value::Array(
            (cases.iter())
                .map(|(student, caller, limit, ..)| {
                    ResolverEvent::get_assessments(json!({"studentId": student, "limit": limit}))
                        .identity(caller.clone())
                        .into_json()
                })
                .collect(),
        );
        let InvocationResult::Response(answers) = api.invoke(batch, TIMEOUT).await.expect("invoke")
        else {
            panic!("a batch always gets a response")
        };
        let (output, _) = function.terminate();
        let audit: Vec<Value> = (output.iter())
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "audit")
            .collect();
        assert_eq!(audit.len(), cases.len(), "{level:?}: {output:#?}");
        for ((case, line), answer) in cases
            .iter()
            .zip(&audit)
            .zip(answers.as_array().expect("list"))
        {
            let (student, caller, _, decision, error_type) = case;
            assert_eq!(line["student"], audit_ref(&token_key, student), "{line}");
            assert_eq!(line["decision"], *decision, "{line}");
            assert_eq!(line["error_type"].as_str(), *error_type, "{line}");
            assert_eq!(answer.get("errorType").and_then(Value::as_str), *error_type);
            let caller_id = caller["sub"].as_str().or(caller["userArn"].as_str());
            assert_eq!(line["caller_id"].as_str(), caller_id, "{line}");
            assert!(
                line["request_id"].is_string() && line["audit_key"].is_string(),
                "{line}"
            );
        }
        assert_eq!(audit[0]["caller_kind"], "cognito");
        assert_eq!(audit[3]["caller_kind"], "iam");
        // The raw ids are in no line: not the audit lines, not the others.
        for line in &output {
            for student in ["stu-0001", "stu-0002", "stu-7777"] {
                assert!(!line.contains(student), "{student} logged: {line}");
            }
        }
    }
}

/// Adds a claim to an identity built by [`identity`].
trait TapClaim {
    fn tap_claim(self, claim: &str, value: &str) -> Value;
}

impl TapClaim for Value {
    fn tap_claim(mut self, claim: &str, value: &str) -> Value {
        self["claims"][claim] = json!(value);
        self
    }
}

const KEY_1: &str = "first-next-token-key-of-at-least-32-bytes";
const KEY_2: &str = "second-next-token-key-of-at-least-32-bytes";

fn key_secret(key: &str) -> String {
    json!({ "nextTokenKey": key }).to_string()
}

/// A page's token, from a function signing with the secret's current key.
async fn first_page_token(api: &RuntimeApi) -> String {
    let result = api
        .invoke(event("stu-0001", identity::api_key()), TIMEOUT)
        .await
        .expect("invoke");
    let InvocationResult::Response(page) = result else {
        panic!("expected a page, got {result:?}")
    };
    page["nextToken"].as_str().expect("a nextToken").to_owned()
}

async fn next_page(api: &RuntimeApi, token: &str) -> InvocationResult {
    let args = json!({"studentId": "stu-0001", "limit": 2, "nextToken": token});
    api.invoke(ResolverEvent::get_assessments(args).into_json(), TIMEOUT)
        .await
        .expect("invoke")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_token_keys_rotate_through_secrets_manager_with_a_grace_period() {
    let stack = Stack::start(&[]).await;
    let endpoint = stack.dynamo().endpoint();
    let arn =
        testkit::secrets::create_secret(&endpoint, "assessments/next-token", &key_secret(KEY_1))
            .expect("create the secret");
    let with_secret = |grace: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("AUTHZ_ALLOW_API_KEY", "true".to_owned()),
            ("NEXT_TOKEN_SECRET_ARN", arn.clone()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.clone()),
            ("NEXT_TOKEN_KEY_GRACE_SECONDS", grace.to_owned()),
        ]
    };
    let start = |api: &RuntimeApi, settings: &[(&'static str, String)]| {
        let mut env = stack.env();
        // The plaintext key is gone: the secret is the only source.
        env.retain(|(k, _)| k != "NEXT_TOKEN_KEY");
        env.extend(settings.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env.extend(lambda_env(api, "assessments-resolver"));
        Function::spawn(RESOLVER_BINARY, env)
    };

    // An environment started before the rotation signs with key 1.
    let old_api = RuntimeApi::start().await.expect("runtime API");
    let mut old = start(&old_api, &with_secret("3600"));
    let old_token = first_page_token(&old_api).await;
    assert!(matches!(
        next_page(&old_api, &old_token).await,
        InvocationResult::Response(_)
    ));

    testkit::secrets::put_secret_value(&endpoint, &arn, &key_secret(KEY_2)).expect("rotate");

    // After the rotation, with an hour's grace: the old token still reads its
    // next page; new tokens are signed with key 2 (another key id).
    let api = RuntimeApi::start().await.expect("runtime API");
    let _new = start(&api, &with_secret("3600"));
    let result = next_page(&api, &old_token).await;
    assert!(
        matches!(result, InvocationResult::Response(_)),
        "{result:?}"
    );
    let new_token = first_page_token(&api).await;
    let key_id = |t: &str| t.split('.').next().map(str::to_owned);
    assert_ne!(key_id(&new_token), key_id(&old_token));

    // The environment started before the rotation meets a key-2 token: it
    // re-reads the secret and accepts it.
    let result = next_page(&old_api, &new_token).await;
    assert!(
        matches!(result, InvocationResult::Response(_)),
        "{result:?}"
    );
    let (logs, _) = old.terminate();
    assert!(
        logs.iter().any(|l| l.contains("nextToken keys re-read")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .all(|l| !l.contains(KEY_1) && !l.contains(KEY_2)),
        "keys never logged"
    );

    // With no grace left, the rotated-out key's token is refused.
    let expired_api = RuntimeApi::start().await.expect("runtime API");
    let _expired = start(&expired_api, &with_secret("0"));
    let result = next_page(&expired_api, &old_token).await;
    let InvocationResult::Error(error) = result else {
        panic!("expected the token refused, got {result:?}")
    };
    assert_eq!(error["errorType"], "ValidationError");
    assert_eq!(
        error["errorMessage"],
        "nextToken: is not a token this API issued (altered, forged or expired)"
    );
    let result = next_page(&expired_api, &new_token).await;
    assert!(
        matches!(result, InvocationResult::Response(_)),
        "{result:?}"
    );
}
