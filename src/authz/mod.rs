//! Who may read which student's assessments.
//!
//! AppSync authenticates the caller (API key, Cognito user pools, OIDC, IAM,
//! or a Lambda authorizer) and passes who it is in the event's `identity`;
//! it does not decide which students that caller may read. This module does,
//! per item, after validation and before any SQL or native call:
//!
//! Nothing is granted by default: with `AUTHZ_ADMIN_GROUPS` and
//! `AUTHZ_SCHOOL_CLAIM` unset or empty nobody is an admin and no claim scopes a
//! school, so every token caller is refused until the deployment names the
//! group and the claim it trusts (infra/template.yaml sets both from parameters).
//!
//! | caller (AppSync auth mode) | may read |
//! |---|---|
//! | in a group of `AUTHZ_ADMIN_GROUPS` (Cognito `groups`, or the OIDC `groups` claim; a Lambda authorizer's `groups` context key) | any student |
//! | with the school claim `AUTHZ_SCHOOL_CLAIM` (Cognito/OIDC claim; a Lambda authorizer's `resolverContext` key of the same name without `custom:`) | the students whose profile's `schoolId` equals it |
//! | IAM, `userArn` matching one of `AUTHZ_TRUSTED_ROLE_ARNS` | any student (backend services) |
//! | API key (null identity) | any student if `AUTHZ_ALLOW_API_KEY=true`, else none |
//! | anything else | none |
//!
//! A caller not entitled to a student gets `Unauthorized` whether or not the
//! student exists: a school-scoped caller is refused for a missing profile
//! exactly as for another school's student, so ids cannot be enumerated.

mod caller;

use assessments_common::config::{ConfigError, Env};
use serde_json::Value;

pub use caller::{Caller, TokenKind};

/// What became of an item's access, as its audit line records it: decided
/// once per item, by the resolver, before any SQL or native call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The caller may read the student.
    Allowed,
    /// The caller may not (or, school-scoped, the student is not in its school
    /// or does not exist).
    Denied,
    /// The request was invalid: no decision was made.
    Rejected,
    /// A school-scoped caller whose student's profile could not be read: its
    /// rows are read only once the profile shows the student in the school.
    Undecided,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Rejected => "rejected",
            Decision::Undecided => "undecided",
        }
    }
}

/// What a caller may read, before looking at any student.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Any student.
    All,
    /// The students of this school (the profile's `schoolId`).
    School(String),
    /// No student; the reason is for the logs, never for the client.
    Denied(&'static str),
}

impl Access {
    /// Whether a student with this profile school may be read.
    pub fn permits(&self, profile_school: Option<&str>) -> bool {
        match self {
            Access::All => true,
            Access::School(school) => profile_school == Some(school.as_str()),
            Access::Denied(_) => false,
        }
    }
}

/// The policy's settings (`AUTHZ_*`), read at init. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzPolicy {
    /// `AUTHZ_ADMIN_GROUPS`: comma-separated; default none (nobody is an admin).
    pub admin_groups: Vec<String>,
    /// `AUTHZ_SCHOOL_CLAIM`, e.g. `custom:schoolId`: default none (no claim scopes a
    /// school). It must be a claim the user cannot write (docs/security.md).
    pub school_claim: Option<String>,
    /// `AUTHZ_TRUSTED_ROLE_ARNS`: comma-separated role (or user) ARNs; default none.
    pub trusted_role_arns: Vec<String>,
    /// `AUTHZ_ALLOW_API_KEY`: `true` lets API-key callers read any student
    /// (local and demo APIs only); default `false`.
    pub allow_api_key: bool,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl AuthzPolicy {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allow_api_key = env.flag("AUTHZ_ALLOW_API_KEY")?.unwrap_or(false);
        let trusted_role_arns = env
            .string("AUTHZ_TRUSTED_ROLE_ARNS")?
            .map(|t| list(&t))
            .unwrap_or_default();
        if let Some(bad) = trusted_role_arns.iter().find(|a| !a.starts_with("arn:")) {
            return Err(ConfigError::Invalid {
                name: "AUTHZ_TRUSTED_ROLE_ARNS",
                reason: format!("{bad:?} is not an ARN"),
            });
        }
        Ok(AuthzPolicy {
            admin_groups: env
                .string("AUTHZ_ADMIN_GROUPS")?
                .map(|t| list(&t))
                .unwrap_or_default(),
            school_claim: env
                .string("AUTHZ_SCHOOL_CLAIM")?
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
            trusted_role_arns,
            allow_api_key,
        })
    }

    /// What `caller` may read.
    pub fn access(&self, caller: &Caller) -> Access {
        match caller {
            Caller::ApiKey if self.allow_api_key => Access::All,
            Caller::ApiKey => {
                Access::Denied("API key callers are not allowed (AUTHZ_ALLOW_API_KEY)")
            }
            Caller::Iam {
                user_arn: Some(arn),
            } if self.trusts(arn) => Access::All,
            Caller::Iam { .. } => Access::Denied("IAM caller not in AUTHZ_TRUSTED_ROLE_ARNS"),
            Caller::Token { groups, claims, .. } => {
                if groups.iter().any(|g| self.admin_groups.contains(g)) {
                    return Access::All;
                }
                match self.school_claim.as_ref().and_then(|c| claims.get(c)) {
                    Some(Value::String(school)) if !school.is_empty() => {
                        Access::School(school.clone())
                    }
                    _ => Access::Denied("no admin group and no school claim"),
                }
            }
            Caller::LambdaAuthorizer { context } => {
                let groups = context.get("groups").and_then(Value::as_str).map(list);
                if groups.is_some_and(|g| g.iter().any(|g| self.admin_groups.contains(g))) {
                    return Access::All;
                }
                let key = self
                    .school_claim
                    .as_deref()
                    .map(|c| c.strip_prefix("custom:").unwrap_or(c));
                match key.and_then(|k| context.get(k)) {
                    Some(Value::String(school)) if !school.is_empty() => {
                        Access::School(school.clone())
                    }
                    _ => Access::Denied("Lambda authorizer context has no admin group or school"),
                }
            }
            Caller::Unrecognized => Access::Denied("identity of no known auth mode"),
        }
    }

    /// `arn` (AppSync's `userArn`) is one of the trusted ARNs, or the session
    /// of a trusted role: `arn:aws:sts::A:assumed-role/R/<session>` matches the
    /// role `arn:aws:iam::A:role/R` (with any path before `R`).
    fn trusts(&self, arn: &str) -> bool {
        self.trusted_role_arns.iter().any(|trusted| {
            if trusted == arn {
                return true;
            }
            let (Some(role), Some(session)) = (role_parts(trusted), assumed_role_parts(arn)) else {
                return false;
            };
            role == session
        })
    }
}

/// `(partition, service, account, resource)` of `arn:<partition>:<service>:<region>:<account>:<resource>`.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let (partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    Some((partition, service, account, resource))
}

/// `(partition, account, role name)` of `arn:<p>:iam::<account>:role/<path/>name`.
fn role_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let (partition, service, account, resource) = arn_parts(arn)?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (service == "iam" && !name.is_empty()).then_some((partition, account, name))
}

/// `(partition, account, role name)` of `arn:<p>:sts::<account>:assumed-role/<name>/<session>`.
fn assumed_role_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let (partition, service, account, resource) = arn_parts(arn)?;
    let mut resource = resource.strip_prefix("assumed-role/")?.split('/');
    let name = resource.next()?;
    resource.next()?;
    (service == "sts" && !name.is_empty()).then_some((partition, account, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn cognito(groups: &[&str], school: Option<&str>) -> Caller {
        Caller::Token {
            kind: TokenKind::Cognito,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            claims: claims(school.map_or(json!({}), |s| json!({"custom:schoolId": s}))),
        }
    }

    #[test]
    fn each_caller_kind_gets_what_the_policy_says() {
        let policy = AuthzPolicy {
            admin_groups: vec!["admins".to_owned()],
            school_claim: Some("custom:schoolId".to_owned()),
            trusted_role_arns: vec!["arn:aws:iam::111122223333:role/service/reports".to_owned()],
            ..AuthzPolicy::default()
        };
        assert_eq!(policy.access(&cognito(&["admins"], None)), Access::All);
        assert_eq!(
            policy.access(&cognito(&["teachers"], Some("sch-001"))),
            Access::School("sch-001".to_owned())
        );
        assert!(matches!(
            policy.access(&cognito(&["teachers"], None)),
            Access::Denied(_)
        ));
        assert!(matches!(policy.access(&Caller::ApiKey), Access::Denied(_)));
        let open = AuthzPolicy {
            allow_api_key: true,
            ..policy.clone()
        };
        assert_eq!(open.access(&Caller::ApiKey), Access::All);

        let iam = |arn: &str| Caller::Iam {
            user_arn: Some(arn.to_owned()),
        };
        assert_eq!(
            policy.access(&iam(
                "arn:aws:sts::111122223333:assumed-role/reports/session-1"
            )),
            Access::All
        );
        for refused in [
            "arn:aws:sts::111122223333:assumed-role/other/session-1",
            "arn:aws:sts::999999999999:assumed-role/reports/session-1",
            "arn:aws:sts::111122223333:assumed-role/reports",
            "arn:aws:iam::111122223333:user/reports",
        ] {
            assert!(
                matches!(policy.access(&iam(refused)), Access::Denied(_)),
                "{refused}"
            );
        }
        assert!(matches!(
            policy.access(&Caller::Iam { user_arn: None }),
            Access::Denied(_)
        ));

        let lambda = |context: Value| Caller::LambdaAuthorizer {
            context: claims(context),
        };
        assert_eq!(
            policy.access(&lambda(json!({"schoolId": "sch-002"}))),
            Access::School("sch-002".to_owned())
        );
        assert_eq!(
            policy.access(&lambda(json!({"groups": "staff, admins"}))),
            Access::All
        );
        assert!(matches!(
            policy.access(&lambda(json!({"custom:schoolId": "sch-002"}))),
            Access::Denied(_)
        ));
        assert!(matches!(
            policy.access(&Caller::Unrecognized),
            Access::Denied(_)
        ));
    }

    #[test]
    fn the_default_policy_grants_nothing() {
        let policy = AuthzPolicy::from_env(&Env::from_pairs([
            ("AUTHZ_ADMIN_GROUPS", " "),
            ("AUTHZ_SCHOOL_CLAIM", ""),
        ]))
        .expect("valid");
        assert_eq!(policy, AuthzPolicy::default());
        for caller in [
            cognito(&["admins"], None),
            cognito(&["teachers"], Some("sch-001")),
            Caller::ApiKey,
            Caller::Iam { user_arn: None },
            Caller::LambdaAuthorizer {
                context: claims(json!({"groups": "admins", "schoolId": "sch-001"})),
            },
        ] {
            assert!(
                matches!(policy.access(&caller), Access::Denied(_)),
                "{caller:?}"
            );
        }
    }

    #[test]
    fn a_school_scope_permits_only_its_school() {
        let access = Access::School("sch-001".to_owned());
        assert!(access.permits(Some("sch-001")));
        assert!(!access.permits(Some("sch-002")));
        assert!(!access.permits(None));
        assert!(Access::All.permits(None));
        assert!(!Access::Denied("x").permits(Some("sch-001")));
    }

    #[test]
    fn settings_parse_and_refuse_nonsense() {
        let env = Env::from_pairs([
            ("AUTHZ_ADMIN_GROUPS", "district-admins, admins"),
            ("AUTHZ_SCHOOL_CLAIM", "school"),
            ("AUTHZ_ALLOW_API_KEY", "true"),
        ]);
        let policy = AuthzPolicy::from_env(&env).expect("valid");
        assert_eq!(policy.admin_groups, ["district-admins", "admins"]);
        assert_eq!(policy.school_claim.as_deref(), Some("school"));
        assert!(policy.allow_api_key);
        assert_eq!(
            AuthzPolicy::from_env(&Env::default()),
            Ok(AuthzPolicy::default())
        );
        let bad = AuthzPolicy::from_env(&Env::from_pairs([("AUTHZ_ALLOW_API_KEY", "yes")]));
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                name: "AUTHZ_ALLOW_API_KEY",
                ..
            })
        ));
        let bad = AuthzPolicy::from_env(&Env::from_pairs([("AUTHZ_TRUSTED_ROLE_ARNS", "reports")]));
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                name: "AUTHZ_TRUSTED_ROLE_ARNS",
                ..
            })
        ));
    }
}
