//! AppSync direct Lambda resolver events for the tests, the playground and
//! the soak: the event builder is `assessments_common::appsync`'s (one
//! shape, shared with the PreTraffic hook); here are the demo's identities.

pub use assessments_common::appsync::{ResolverEvent, batch, get_assessments};
use serde_json::{Value, json};

use crate::fixtures::{DEMO_SCHOOL_A, Fixtures};

/// Events over the playground's data (the demo fixtures, the personas): every student read by an admin in pages of 3, by
/// a teacher of its school with a type filter, refused to a teacher of the
/// other school; date ranges; a missing student; invalid arguments; batches.
pub fn playground_events() -> Vec<Value> {
    let fixtures = Fixtures::demo();
    let persona = |name: &str| identity::persona(name).unwrap_or(Value::Null);
    let read = |who: &str, arguments: Value| {
        ResolverEvent::get_assessments(arguments)
            .identity(persona(who))
            .into_json()
    };
    let types = [
        "ORAL_READING_FLUENCY",
        "READING_COMPREHENSION",
        "PHONOLOGICAL_AWARENESS",
    ];
    let mut events = Vec::new();
    for (i, student) in fixtures.students.iter().enumerate() {
        let id = &student.student_id;
        let (own, other) = if student.school_id.as_deref() == Some(DEMO_SCHOOL_A) {
            ("teacher-a", "teacher-b")
        } else {
            ("teacher-b", "teacher-a")
        };
        events.push(read("admin", json!({ "studentId": id, "limit": 3 })));
        events.push(read(
            own,
            json!({ "studentId": id, "assessmentType": types[i % types.len()], "limit": 5 }),
        ));
        events.push(read(other, json!({ "studentId": id })));
        if i % 5 == 0 {
            events.push(read(
                "admin",
                json!({ "studentId": id, "dateRange": { "from": "2025-01-01", "to": "2025-06-30" } }),
            ));
        }
    }
    events.push(read("admin", json!({ "studentId": "stu-9999" })));
    events.push(read("teacher-a", json!({ "studentId": "stu-9999" })));
    events.push(read(
        "admin",
        json!({ "studentId": "stu-0001", "limit": 0 }),
    ));
    events.push(read("admin", json!({ "studentId": "not an id!" })));
    events.push(read(
        "admin",
        json!({ "studentId": "stu-0001", "dateRange": { "from": "2025-06-30", "to": "2025-01-01" } }),
    ));
    for chunk in fixtures.students.chunks(10) {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let who = if j % 3 == 2 { "teacher-b" } else { "admin" };
                read(who, json!({ "studentId": s.student_id, "limit": 4 }))
            })
            .collect();
        events.push(Value::Array(batch));
    }
    events
}

/// Caller identities as AppSync puts them in `identity`, with the school
/// claim the test stacks trust, and the demo personas the playground lets a
/// person choose from.
pub mod identity {
    use assessments_common::appsync::identity as shapes;
    use serde_json::Value;

    use crate::fixtures::{DEMO_SCHOOL_A, DEMO_SCHOOL_B};

    pub use shapes::{api_key, iam, lambda_authorizer};

    /// The school claim of these identities: the one the playground and the
    /// test stacks name in `AUTHZ_SCHOOL_CLAIM` (the resolver reads none by default).
    pub const SCHOOL_CLAIM: &str = "custom:schoolId";

    /// A Cognito user pools caller in `groups`, with a school claim if any.
    pub fn cognito(username: &str, groups: &[&str], school: Option<&str>) -> Value {
        shapes::cognito(username, groups, school.map(|s| (SCHOOL_CLAIM, s)))
    }

    /// An OpenID Connect caller: only `claims`, `issuer` and `sub`; groups in the `groups` claim.
    pub fn oidc(sub: &str, groups: &[&str], school: Option<&str>) -> Value {
        shapes::oidc(sub, groups, school.map(|s| (SCHOOL_CLAIM, s)))
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
