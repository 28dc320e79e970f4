//! AppSync direct Lambda resolver events, as AppSync sends them: one event
//! per field, or a list of them when batching is on. Built here once for the
//! tests, the playground's gateway and the soak.

use serde_json::{Map, Value, json};

/// The selection most tests and the soak ask for.
const DEFAULT_SELECTION: [&str; 3] = ["items", "items/id", "nextToken"];
const DEFAULT_SELECTION_GRAPHQL: &str = "{ items { id } nextToken }";

/// One resolver event, built field by field; [`ResolverEvent::into_json`] gives the payload.
#[derive(Debug, Clone)]
pub struct ResolverEvent {
    field_name: String,
    arguments: Value,
    headers: Map<String, Value>,
    identity: Value,
    selection_list: Vec<String>,
    selection_graphql: String,
    variables: Map<String, Value>,
}

impl ResolverEvent {
    /// An event for `Query.<field_name>` with these arguments.
    pub fn query(field_name: &str, arguments: Value) -> Self {
        ResolverEvent {
            field_name: field_name.to_owned(),
            arguments,
            headers: Map::new(),
            identity: Value::Null,
            selection_list: DEFAULT_SELECTION.iter().map(|s| (*s).to_owned()).collect(),
            selection_graphql: DEFAULT_SELECTION_GRAPHQL.to_owned(),
            variables: Map::new(),
        }
    }

    /// An event for `Query.getAssessments`.
    pub fn get_assessments(arguments: Value) -> Self {
        Self::query("getAssessments", arguments)
    }

    /// The HTTP headers of the GraphQL request.
    pub fn headers(mut self, headers: impl IntoIterator<Item = (String, String)>) -> Self {
        self.headers = headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        self
    }

    /// The caller's identity as AppSync's auth mode resolved it (`null` for API keys).
    pub fn identity(mut self, identity: Value) -> Self {
        self.identity = identity;
        self
    }

    /// The selection set: its paths (`selectionSetList`) and its text.
    pub fn selection(mut self, list: Vec<String>, graphql: String) -> Self {
        self.selection_list = list;
        self.selection_graphql = graphql;
        self
    }

    /// The operation's variables.
    pub fn variables(mut self, variables: Map<String, Value>) -> Self {
        self.variables = variables;
        self
    }

    pub fn into_json(self) -> Value {
        json!({
            "arguments": self.arguments,
            "identity": self.identity,
            "source": null,
            "request": { "headers": self.headers, "domainName": null },
            "prev": null,
            "info": {
                "parentTypeName": "Query",
                "fieldName": self.field_name,
                "selectionSetList": self.selection_list,
                "selectionSetGraphQL": self.selection_graphql,
                "variables": self.variables,
            },
            "stash": {},
        })
    }
}

/// The event for `Query.getAssessments(arguments)` with the default selection.
pub fn get_assessments(arguments: Value) -> Value {
    ResolverEvent::get_assessments(arguments).into_json()
}

/// A batched invocation: the list of events AppSync sends when batching is on.
pub fn batch(events: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(events.into_iter().collect())
}

/// Caller identities as AppSync puts them in `identity`, one builder per auth
/// mode (the shapes of AppSync's resolver context reference), and the demo
/// personas the playground lets a person choose from.
pub mod identity {
    use serde_json::{Map, Value, json};

    use crate::fixtures::{DEMO_SCHOOL_A, DEMO_SCHOOL_B};

    /// The school claim of these identities: the one the playground and the
    /// test stacks name in `AUTHZ_SCHOOL_CLAIM` (the resolver reads none by default).
    pub const SCHOOL_CLAIM: &str = "custom:schoolId";

    fn claims(sub: &str, school: Option<&str>) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".to_owned(), json!(sub));
        if let Some(school) = school {
            claims.insert(SCHOOL_CLAIM.to_owned(), json!(school));
        }
        claims
    }

    /// API key auth: AppSync sends no identity.
    pub fn api_key() -> Value {
        Value::Null
    }

    /// A Cognito user pools caller in `groups`, with a school claim if any.
    pub fn cognito(username: &str, groups: &[&str], school: Option<&str>) -> Value {
        let mut claims = claims(username, school);
        claims.insert("cognito:groups".to_owned(), json!(groups));
        claims.insert("cognito:username".to_owned(), json!(username));
        json!({
            "sub": username,
            "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_local",
            "username": username,
            "claims": claims,
            "sourceIp": ["127.0.0.1"],
            "defaultAuthStrategy": "ALLOW",
            "groups": groups,
        })
    }

    /// An OpenID Connect caller: only `claims`, `issuer` and `sub`; groups in the `groups` claim.
    pub fn oidc(sub: &str, groups: &[&str], school: Option<&str>) -> Value {
        let mut claims = claims(sub, school);
        claims.insert("groups".to_owned(), json!(groups));
        json!({"claims": claims, "issuer": "https://idp.example.com", "sub": sub})
    }

    /// An IAM caller (SigV4), e.g. a backend service's assumed role.
    pub fn iam(user_arn: &str) -> Value {
        let account = user_arn.split(':').nth(4).unwrap_or("000000000000");
        json!({
            "accountId": account,
            "cognitoIdentityAuthProvider": null,
            "cognitoIdentityAuthType": null,
            "cognitoIdentityId": null,
            "cognitoIdentityPoolId": null,
            "sourceIp": ["127.0.0.1"],
            "userArn": user_arn,
            "username": "AROALOCAL:session",
        })
    }

    /// A Lambda authorizer caller: what the authorizer returned as `resolverContext`.
    pub fn lambda_authorizer(context: Value) -> Value {
        json!({ "resolverContext": context })
    }

    /// The playground's "who am I" choices: name, what it shows, identity.
    pub fn personas() -> Vec<(&'static str, &'static str, Value)> {
        vec![
            (
                "admin",
                "Cognito user in the admins group: any student",
                cognito("admin", &["admins"], None),
            ),
            (
                "teacher-a",
                "Cognito teacher of school A (sch-001): stu-0001 and the odd students from stu-0003",
                cognito("teacher-a", &["teachers"], Some(DEMO_SCHOOL_A)),
            ),
            (
                "teacher-b",
                "Cognito teacher of school B (sch-002): stu-0002 and the even students from stu-0004",
                cognito("teacher-b", &["teachers"], Some(DEMO_SCHOOL_B)),
            ),
            (
                "api-key",
                "API key (no identity): allowed only where AUTHZ_ALLOW_API_KEY=true",
                api_key(),
            ),
        ]
    }

    /// The persona called `name`.
    pub fn persona(name: &str) -> Option<Value> {
        personas()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, identity)| identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_has_the_shape_appsync_sends() {
        let event = ResolverEvent::get_assessments(json!({"studentId": "stu-0001"}))
            .headers([("x-api-key".to_owned(), "k".to_owned())])
            .into_json();
        assert_eq!(event["arguments"]["studentId"], "stu-0001");
        assert_eq!(event["info"]["parentTypeName"], "Query");
        assert_eq!(event["info"]["fieldName"], "getAssessments");
        assert_eq!(event["request"]["headers"]["x-api-key"], "k");
        assert!(event["identity"].is_null());
        assert_eq!(
            batch([event.clone(), event]).as_array().map(Vec::len),
            Some(2)
        );
    }
}
