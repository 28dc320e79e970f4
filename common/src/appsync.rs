//! AppSync direct Lambda resolver events, as AppSync sends them: one event
//! per field, or a list of them when batching is on; and the caller's
//! `identity` in the shape each auth mode gives it. Built here once for the
//! PreTraffic hook's smoke events, the tests, the playground's gateway and
//! `parity`.
//!
//! The shapes: "Resolver context" and "Identity" in AppSync's resolver
//! context reference
//! (<https://docs.aws.amazon.com/appsync/latest/devguide/resolver-context-reference-js.html>).

use serde_json::{Map, Value, json};

/// The selection most events ask for.
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

    /// The caller's identity as AppSync's auth mode resolved it (`null` for
    /// API keys; see [`identity`]).
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

/// Caller identities as AppSync puts them in `identity`, one builder per auth mode.
pub mod identity {
    use serde_json::{Map, Value, json};

    fn claims(sub: &str, school: Option<(&str, &str)>) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("sub".to_owned(), json!(sub));
        if let Some((claim, school)) = school {
            claims.insert(claim.to_owned(), json!(school));
        }
        claims
    }

    /// API key auth: AppSync sends no identity.
    pub fn api_key() -> Value {
        Value::Null
    }

    /// A Cognito user pools caller in `groups`, with a school claim
    /// (`(claim, school)`) if any.
    pub fn cognito(username: &str, groups: &[&str], school: Option<(&str, &str)>) -> Value {
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
    pub fn oidc(sub: &str, groups: &[&str], school: Option<(&str, &str)>) -> Value {
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
        let iam = identity::iam("arn:aws:sts::111122223333:assumed-role/reports/s");
        assert_eq!(iam["accountId"], "111122223333");
        let cognito = identity::cognito("t", &["teachers"], Some(("custom:schoolId", "sch-1")));
        assert_eq!(cognito["claims"]["custom:schoolId"], "sch-1");
    }
}
