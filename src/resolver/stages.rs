//! An item between the stages of [`super::Resolver::get_assessments`]: its
//! plan, the access decision made for it, its page; and the clock of the
//! stages' time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use legacy_bridge::AssessmentRow;

use super::Timings;
use super::args::GetAssessmentsArgs;
use super::error::ResolveError;
use super::token::TokenScope;
use crate::authz::{Access, Decision};
use crate::profiles::{ProfileError, ProfileRead};
use crate::sqlserver::{AssessmentRecord, Page, PageRequest, SqlError};

/// An item that passed validation, token verification and the caller check.
pub(super) struct Planned {
    pub args: GetAssessmentsArgs,
    pub request: PageRequest,
    pub access: Access,
}

/// An item between the stages: failed (with the decision made for it),
/// planned, or planned with its page read.
pub(super) enum Staged {
    Failed(ResolveError, Decision),
    Planned(Planned),
    Paged(Planned, Result<Page, SqlError>),
}

impl Staged {
    /// The request of a planned item `which` picks, whose page is still to read.
    pub fn to_read(&self, which: &impl Fn(&Planned) -> bool) -> Option<&PageRequest> {
        match self {
            Staged::Planned(plan) if which(plan) => Some(&plan.request),
            _ => None,
        }
    }

    /// A school-scoped item, once the profiles are read: still planned if
    /// the student is in the caller's school, failed otherwise.
    pub fn entitled(self, profiles: &Result<HashMap<String, ProfileRead>, ProfileError>) -> Self {
        match self {
            Staged::Planned(plan) => match entitle(&plan, profiles) {
                Ok(()) => Staged::Planned(plan),
                Err((e, decision)) => Staged::Failed(e, decision),
            },
            other => other,
        }
    }
}

/// The batch's profiles, as read once, and what reading them took.
pub(super) struct ProfilesRead {
    pub result: Result<HashMap<String, ProfileRead>, ProfileError>,
    pub elapsed: Duration,
    pub requested: u32,
}

/// A caller limited to a school reads the student only if the profile says
/// the student is in it. A missing profile, or one that does not decode, is
/// refused exactly like another school's student (`Denied`); a DynamoDB
/// failure is that error (it says nothing about the student: `Undecided`),
/// and no SQL is sent for the item.
pub(super) fn entitle(
    plan: &Planned,
    profiles: &Result<HashMap<String, ProfileRead>, ProfileError>,
) -> Result<(), (ResolveError, Decision)> {
    let found =
        (profiles.as_ref()).map_err(|e| (ResolveError::Profile(e.clone()), Decision::Undecided))?;
    let entitled = match found.get(&plan.args.student_id) {
        Some(Ok(profile)) => plan.access.permits(profile.school_id.as_deref()),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "school-scoped caller refused: the profile does not decode");
            false
        }
        None => false,
    };
    if entitled {
        Ok(())
    } else {
        let e = ResolveError::Unauthorized;
        Err((e, Decision::Denied))
    }
}

/// The time a batch's items spent on SQL Server and on the legacy component,
/// summed over the items (a single invocation: its own).
#[derive(Default)]
pub(super) struct StageClock {
    sql_ns: AtomicU64,
    legacy_ns: AtomicU64,
}

impl StageClock {
    pub async fn sql<T>(&self, work: impl Future<Output = T>) -> T {
        Self::timed(&self.sql_ns, work).await
    }

    pub async fn legacy<T>(&self, work: impl Future<Output = T>) -> T {
        Self::timed(&self.legacy_ns, work).await
    }

    async fn timed<T>(total: &AtomicU64, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        total.fetch_add(spent, Ordering::Relaxed);
        output
    }

    pub fn timings(&self, profiles: Option<&ProfilesRead>) -> Timings {
        Timings {
            profiles: profiles.map_or(Duration::ZERO, |p| p.elapsed),
            profiles_requested: profiles.map_or(0, |p| p.requested),
            sql: Duration::from_nanos(self.sql_ns.load(Ordering::Relaxed)),
            legacy: Duration::from_nanos(self.legacy_ns.load(Ordering::Relaxed)),
        }
    }
}

pub(super) fn scope(args: &GetAssessmentsArgs) -> TokenScope<'_> {
    TokenScope {
        student_id: &args.student_id,
        assessment_type: args.assessment_type,
        from: args.from,
        to: args.to,
    }
}

/// A record as the legacy component takes it.
pub(super) fn legacy_row(record: &AssessmentRecord) -> AssessmentRow {
    AssessmentRow {
        id: record.assessment_id.to_string(),
        assessment_type: record.assessment_type,
        administered_at_unix_ms: record.administered_at.and_utc().timestamp_millis(),
        raw_score: record.raw_score,
        items_attempted: record.items_attempted,
        items_correct: record.items_correct,
        duration_seconds: record.duration_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::Profile;
    use assessments_common::dynamo::DynamoError;

    fn plan(access: Access) -> Planned {
        let args = super::super::parse_args(Some(&serde_json::json!({"studentId": "stu-0001"})))
            .expect("valid arguments");
        let request = PageRequest {
            student_id: args.student_id.clone(),
            assessment_type: None,
            from: None,
            to: None,
            after: None,
            page_size: args.limit,
        };
        Planned {
            args,
            request,
            access,
        }
    }

    fn profile(school: &str) -> ProfileRead {
        Ok(Profile {
            student_id: "stu-0001".to_owned(),
            grade: 3,
            reading_level: 3.2,
            school_id: Some(school.to_owned()),
        })
    }

    #[test]
    fn a_school_scoped_item_is_decided_by_its_students_profile() {
        let school = plan(Access::School("sch-001".to_owned()));
        let found = |read: ProfileRead| Ok(HashMap::from([("stu-0001".to_owned(), read)]));
        assert!(entitle(&school, &found(profile("sch-001"))).is_ok());
        let decision = |profiles| entitle(&school, &profiles).err().map(|(_, d)| d);
        assert_eq!(decision(found(profile("sch-002"))), Some(Decision::Denied));
        let malformed = ProfileError::Malformed {
            reason: "grade".to_owned(),
        };
        assert_eq!(decision(found(Err(malformed))), Some(Decision::Denied));
        assert_eq!(
            decision(Ok(HashMap::new())),
            Some(Decision::Denied),
            "no profile"
        );
        let unavailable = ProfileError::Dynamo(DynamoError::Unavailable {
            table: "student profiles",
            reason: "throttled".to_owned(),
        });
        let (e, d) = entitle(&school, &Err(unavailable)).expect_err("not decided");
        assert_eq!(d, Decision::Undecided);
        assert!(matches!(e, ResolveError::Profile(_)), "{e:?}");
    }
}
