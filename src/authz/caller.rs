//! Who the caller is, from the event's `identity`: one [`Caller`] per AppSync
//! auth mode.

use serde_json::{Map, Value};

/// The caller as AppSync's auth mode resolved it.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// API key authorization: AppSync sends a null identity.
    ApiKey,
    /// IAM (SigV4): the caller's ARN, `arn:aws:sts::<account>:assumed-role/<role>/<session>`
    /// for a role, `arn:aws:iam::<account>:user/<name>` for a user.
    Iam { user_arn: Option<String> },
    /// Cognito user pools or OIDC: the token's claims and the caller's groups.
    Token {
        kind: TokenKind,
        groups: Vec<String>,
        claims: Map<String, Value>,
    },
    /// A Lambda authorizer: the `resolverContext` it returned.
    LambdaAuthorizer { context: Map<String, Value> },
    /// An identity of no known shape: refused.
    Unrecognized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Cognito,
    Oidc,
}

impl Caller {
    /// How the logs name the caller's kind (never its claims).
    pub fn kind(&self) -> &'static str {
        match self {
            Caller::ApiKey => "api_key",
            Caller::Iam { .. } => "iam",
            Caller::Token {
                kind: TokenKind::Cognito,
                ..
            } => "cognito",
            Caller::Token {
                kind: TokenKind::Oidc,
                ..
            } => "oidc",
            Caller::LambdaAuthorizer { .. } => "lambda_authorizer",
            Caller::Unrecognized => "unrecognized",
        }
    }

    /// Who the caller is, for the audit line: a token's or a Lambda
    /// authorizer's `sub`, an IAM caller's ARN; none for an API key.
    pub fn id(&self) -> Option<&str> {
        match self {
            Caller::Iam { user_arn } => user_arn.as_deref(),
            Caller::Token { claims, .. } => claims.get("sub").and_then(Value::as_str),
            Caller::LambdaAuthorizer { context } => context.get("sub").and_then(Value::as_str),
            Caller::ApiKey | Caller::Unrecognized => None,
        }
    }

    /// The caller from an event's `identity`, by the fields each auth mode
    /// sets ("Identity" in AppSync's resolver context reference):
    /// * API key: `null`;
    /// * Lambda authorizer: `resolverContext`;
    /// * IAM: `accountId`, `userArn`, `cognitoIdentityPoolId`...;
    /// * Cognito user pools: `claims`, with `username`, `groups`, `defaultAuthStrategy`;
    /// * OIDC: `claims`, `issuer` and `sub` only.
    ///
    /// Written by hand: `aws_lambda_events`' `AppSyncIdentity` is an untagged
    /// enum whose IAM variant requires nothing but `sourceIp`, so a Cognito
    /// identity deserializes as IAM, and its Cognito variant has no `groups`.
    pub fn from_identity(identity: &Value) -> Caller {
        let Value::Object(identity) = identity else {
            return if identity.is_null() {
                Caller::ApiKey
            } else {
                Caller::Unrecognized
            };
        };
        if let Some(context) = identity.get("resolverContext") {
            return match context {
                Value::Object(context) => Caller::LambdaAuthorizer {
                    context: context.clone(),
                },
                Value::Null => Caller::LambdaAuthorizer {
                    context: Map::new(),
                },
                _ => Caller::Unrecognized,
            };
        }
        if ["accountId", "userArn", "cognitoIdentityPoolId"]
            .iter()
            .any(|k| identity.contains_key(*k))
        {
            return Caller::Iam {
                user_arn: identity
                    .get("userArn")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
        }
        token_caller(identity)
    }
}

/// A Cognito or OIDC caller: its claims and groups (Cognito: the identity's
/// `groups` and the `cognito:groups` claim; OIDC: the `groups` claim).
fn token_caller(identity: &Map<String, Value>) -> Caller {
    let Some(Value::Object(claims)) = identity.get("claims") else {
        return Caller::Unrecognized;
    };
    let strings = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        }
    };
    let cognito = ["username", "groups", "defaultAuthStrategy"]
        .iter()
        .any(|k| identity.contains_key(*k));
    let (kind, groups) = if cognito {
        let mut groups = strings(identity.get("groups"));
        groups.extend(strings(claims.get("cognito:groups")));
        (TokenKind::Cognito, groups)
    } else {
        (TokenKind::Oidc, strings(claims.get("groups")))
    };
    Caller::Token {
        kind,
        groups,
        claims: claims.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_auth_mode_identity_is_read_as_its_caller() {
        assert_eq!(Caller::from_identity(&Value::Null), Caller::ApiKey);
        // As AppSync sends them (the developer guide's examples).
        let cognito = json!({
            "sub": "192879fc-a240-4bf1-ab5a-d6a00f3063f9",
            "issuer": "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_abc",
            "username": "teacher1",
            "claims": {"custom:schoolId": "sch-001", "cognito:groups": ["teachers"]},
            "sourceIp": ["203.0.113.1"],
            "defaultAuthStrategy": "ALLOW",
            "groups": ["staff"]
        });
        match Caller::from_identity(&cognito) {
            Caller::Token {
                kind: TokenKind::Cognito,
                groups,
                claims,
            } => {
                assert_eq!(groups, ["staff", "teachers"]);
                assert_eq!(claims["custom:schoolId"], "sch-001");
            }
            other => panic!("not Cognito: {other:?}"),
        }
        let oidc = json!({
            "claims": {"groups": ["admins"], "sub": "x"},
            "issuer": "https://idp.example.com",
            "sub": "x"
        });
        assert!(matches!(
            Caller::from_identity(&oidc),
            Caller::Token { kind: TokenKind::Oidc, groups, .. } if groups == ["admins"]
        ));
        let iam = json!({
            "accountId": "111122223333",
            "cognitoIdentityPoolId": null,
            "cognitoIdentityId": null,
            "sourceIp": ["203.0.113.1"],
            "username": "AROAEXAMPLE:session",
            "userArn": "arn:aws:sts::111122223333:assumed-role/reports/session"
        });
        assert_eq!(
            Caller::from_identity(&iam),
            Caller::Iam {
                user_arn: Some("arn:aws:sts::111122223333:assumed-role/reports/session".into())
            }
        );
        let lambda = json!({"resolverContext": {"schoolId": "sch-002"}});
        assert!(
            matches!(Caller::from_identity(&lambda), Caller::LambdaAuthorizer { context } if context["schoolId"] == "sch-002")
        );
        for odd in [
            json!("admin"),
            json!({}),
            json!({"claims": "x"}),
            json!({"resolverContext": 1}),
        ] {
            assert_eq!(Caller::from_identity(&odd), Caller::Unrecognized, "{odd}");
        }
    }
}
