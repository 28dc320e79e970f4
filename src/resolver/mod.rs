//! The business rules of `getAssessments`, independent of the event format:
//! validate, authorize, read the profile and the rows, score the rows
//! through the legacy component, enrich, page.
//!
//! Authorization ([`crate::authz`]) comes before any SQL or native call: a
//! caller entitled to every student has its rows read at the same time as the
//! profiles; a caller limited to a school has them read only once the
//! profile shows the student is in that school.
//!
//! A batch reads each distinct student's profile once, and its items' pages
//! in a few statements: the items split into at most as many chunks as the
//! SQL pool has connections, each chunk one statement
//! ([`SqlPool::fetch_pages`]); a single item is read with the page query.
//! Scoring then runs per item, at most as many at a time as the pool has
//! connections.
//! Nothing here outlives the call: every per-request value is owned by the
//! request's future.

mod args;
mod error;
pub mod keys;
mod output;
mod token;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assessments_common::budget::Budget;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use crate::authz::{Access, AuthzPolicy, Caller};
use crate::legacy::{AssessmentRow, LegacyEngine, ScoredAssessment, StudentContext};
use crate::profiles::{Profile, ProfileError, ProfileRead, ProfileStore};
use crate::sqlserver::{AssessmentRecord, Page, PageRequest, SqlError, SqlPool};

pub use args::{DEFAULT_LIMIT, GetAssessmentsArgs, MAX_LIMIT, MAX_RANGE_DAYS, parse_args};
pub use error::{ErrorType, ResolveError};
pub use keys::{KeySource, TokenKeySettings};
pub use output::{Assessment, AssessmentPage, UtcMillis};
pub use token::{MIN_KEY_LEN, SigningKey, TokenKeys, TokenScope, TokenSigner};

/// One item of an invocation: the validated arguments and who asks.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRequest {
    pub args: GetAssessmentsArgs,
    pub caller: Caller,
}

/// Where one invocation spent its time, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Reading the batch's profiles (once for the batch).
    pub profiles: Duration,
    /// Waiting for SQL Server: the batch's page reads (each a few
    /// statements at once), end to end.
    pub sql: Duration,
    /// Scoring through the legacy component, summed over the batch's items.
    pub legacy: Duration,
    /// Distinct student profiles requested from DynamoDB.
    pub profiles_requested: u32,
}

/// The resolver and the dependencies it owns, built once per execution environment.
#[derive(Debug)]
pub struct Resolver {
    profiles: ProfileStore,
    sql: SqlPool,
    legacy: LegacyEngine,
    tokens: TokenSigner,
    key_source: Option<KeySource>,
    policy: AuthzPolicy,
}

/// An item that passed validation, token verification and the caller check.
struct Planned {
    args: GetAssessmentsArgs,
    request: PageRequest,
    access: Access,
}

/// An item between the stages: failed, planned, or planned with its page read.
enum Staged {
    Failed(ResolveError),
    Planned(Planned),
    Paged(Planned, Result<Page, SqlError>),
}

impl From<Result<Planned, ResolveError>> for Staged {
    fn from(plan: Result<Planned, ResolveError>) -> Self {
        match plan {
            Ok(plan) => Staged::Planned(plan),
            Err(e) => Staged::Failed(e),
        }
    }
}

impl Resolver {
    pub fn new(
        profiles: ProfileStore,
        sql: SqlPool,
        legacy: LegacyEngine,
        tokens: (TokenSigner, Option<KeySource>),
        policy: AuthzPolicy,
    ) -> Self {
        Resolver {
            profiles,
            sql,
            legacy,
            tokens: tokens.0,
            key_source: tokens.1,
            policy,
        }
    }

    pub fn policy(&self) -> &AuthzPolicy {
        &self.policy
    }

    /// The `nextToken` keys in use.
    pub fn token_keys(&self) -> std::sync::Arc<TokenKeys> {
        self.tokens.keys()
    }

    pub fn sql(&self) -> &SqlPool {
        &self.sql
    }

    pub fn legacy(&self) -> &LegacyEngine {
        &self.legacy
    }

    pub fn profiles(&self) -> &ProfileStore {
        &self.profiles
    }

    /// Resolves a batch of `getAssessments` calls (one element for a single
    /// invoke). The results are in the same order; each item fails on its own.
    /// `now` is the invocation's one clock read, every item's `processedAt`.
    /// Every item's waits end within `budget`: an item still waiting then
    /// fails alone with a timeout naming the dependency.
    ///
    /// Stages: plan each item (validate, verify its token, authorize the
    /// caller); read every distinct student's profile once for the batch and,
    /// at the same time, the pages of the items whose caller may read every
    /// student ([`Self::read_pages`]: a few statements for the batch); entitle
    /// the school-scoped items by their profiles and read their pages; then
    /// finish each item ([`Self::finish`]: scored and assembled), at most as
    /// many at once as the pool has connections.
    pub async fn get_assessments(
        &self,
        items: Vec<Result<ItemRequest, ResolveError>>,
        now: DateTime<Utc>,
        budget: &Budget,
    ) -> (Vec<Result<AssessmentPage, ResolveError>>, Timings) {
        self.refresh_keys(&items, budget).await;
        let plans: Vec<Result<Planned, ResolveError>> = (items.into_iter())
            .map(|item| item.and_then(|item| self.plan(item, now)))
            .collect();
        let mut students: Vec<String> = plans
            .iter()
            .flatten()
            .map(|p| p.args.student_id.clone())
            .collect();
        students.sort_unstable();
        students.dedup();
        // Boxed here and below: the dependencies' futures are large (kilobytes),
        // and unboxed they are copied whole each time a combinator moves or
        // completes one (memcpy was a fifth of an invocation's instructions).
        let read: Pin<Box<dyn Future<Output = Arc<ProfilesRead>> + Send + '_>> =
            Box::pin(self.read_profiles(students, budget));
        let clock = StageClock::default();
        let staged: Vec<Staged> = plans.into_iter().map(Staged::from).collect();
        // A caller entitled to every student: its pages read with the profiles.
        let open = |p: &Planned| p.access == Access::All;
        let pages = Box::pin(self.read_pages(staged, open, budget, &clock));
        let (profiles, staged) = tokio::join!(read, pages);
        // A caller limited to a school: once the profile shows the student is in it.
        let staged = (staged.into_iter())
            .map(|item| match item {
                Staged::Planned(plan) => match entitle(&plan, &profiles.result) {
                    Ok(()) => Staged::Planned(plan),
                    Err(e) => Staged::Failed(e),
                },
                other => other,
            })
            .collect();
        let staged = Box::pin(self.read_pages(staged, |_| true, budget, &clock)).await;
        let finishing = staged.into_iter().map(|item| {
            let (profiles, clock) = (&profiles, &clock);
            Box::pin(async move { self.finish(item, profiles, now, budget, clock).await })
        });
        let concurrency = self.sql.status().max_size.max(1);
        let results = (futures_util::stream::iter(finishing).buffered(concurrency))
            .collect()
            .await;
        (results, clock.timings(Some(&profiles)))
    }

    /// Reads the pages of the planned items `which` picks, in at most as
    /// many statements (run at once) as the pool has connections.
    async fn read_pages(
        &self,
        items: Vec<Staged>,
        which: impl Fn(&Planned) -> bool,
        budget: &Budget,
        clock: &StageClock,
    ) -> Vec<Staged> {
        let pages = {
            let requests: Vec<&PageRequest> = (items.iter())
                .filter_map(|item| match item {
                    Staged::Planned(plan) if which(plan) => Some(&plan.request),
                    _ => None,
                })
                .collect();
            if requests.is_empty() {
                return items;
            }
            let chunks = requests.len().div_ceil(self.sql.status().max_size.max(1));
            let reads = requests
                .chunks(chunks)
                .map(|chunk| Box::pin(self.sql.fetch_pages(chunk, budget)));
            clock.sql(futures_util::future::join_all(reads)).await
        };
        let mut pages = pages.into_iter().flatten();
        (items.into_iter())
            .map(|item| match item {
                Staged::Planned(plan) if which(&plan) => match pages.next() {
                    Some(page) => Staged::Paged(plan, page),
                    None => Staged::Planned(plan),
                },
                other => other,
            })
            .collect()
    }

    /// Re-reads the `nextToken` keys when a token names a key this
    /// environment has not seen: the keys may have rotated since init.
    async fn refresh_keys(&self, items: &[Result<ItemRequest, ResolveError>], budget: &Budget) {
        let Some(source) = &self.key_source else {
            return;
        };
        let unknown = items.iter().flatten().any(|item| {
            (item.args.next_token.as_deref()).is_some_and(|t| self.tokens.is_unknown_key(t))
        });
        if unknown {
            source.refresh(&self.tokens, budget).await;
        }
    }

    /// Every student's profile, read once for the batch: GetItem for one
    /// student (a malformed profile is that student's error), BatchGetItem for more.
    async fn read_profiles(&self, students: Vec<String>, budget: &Budget) -> Arc<ProfilesRead> {
        let started = Instant::now();
        let result = match students.as_slice() {
            [] => Ok(HashMap::new()),
            [id] => match self.profiles.get(id, budget).await {
                Ok(profile) => Ok(profile.map(|p| (id.clone(), Ok(p))).into_iter().collect()),
                Err(e @ ProfileError::Malformed { .. }) => {
                    Ok(HashMap::from([(id.clone(), Err(e))]))
                }
                Err(e) => Err(e),
            },
            many => {
                let ids: Vec<&str> = many.iter().map(String::as_str).collect();
                self.profiles.get_many(&ids, budget).await
            }
        };
        Arc::new(ProfilesRead {
            result,
            elapsed: started.elapsed(),
            requested: students.len() as u32,
        })
    }

    /// One item, its page read: scored and assembled with its profile (a
    /// planned item whose page was not read has it read here, alone).
    async fn finish(
        &self,
        item: Staged,
        profiles: &ProfilesRead,
        now: DateTime<Utc>,
        budget: &Budget,
        clock: &StageClock,
    ) -> Result<AssessmentPage, ResolveError> {
        let (plan, page) = match item {
            Staged::Failed(e) => return Err(e),
            Staged::Paged(plan, page) => (plan, page),
            Staged::Planned(plan) => {
                let page = clock
                    .sql(Box::pin(self.sql.fetch_page(&plan.request, budget)))
                    .await;
                (plan, page)
            }
        };
        let profile = match profiles
            .result
            .as_ref()
            .map(|found| found.get(&plan.args.student_id))
        {
            Err(e) => return Err(ResolveError::Profile(e.clone())),
            Ok(None) => {
                return Err(ResolveError::NotFound {
                    student_id: plan.args.student_id,
                });
            }
            Ok(Some(read)) => read
                .as_ref()
                .map_err(|e| ResolveError::Profile(e.clone()))?,
        };
        let page = page?;
        let rows: Vec<AssessmentRow> = page.records.iter().map(legacy_row).collect();
        let scored = if rows.is_empty() {
            Vec::new()
        } else {
            let context = StudentContext {
                grade: profile.grade,
                reading_level: profile.reading_level,
            };
            clock
                .legacy(Box::pin(self.legacy.score(context, rows, budget)))
                .await?
        };
        let processed_at = UtcMillis(now.naive_utc());
        let items = (page.records.iter().zip(scored))
            .map(|(record, scored)| enrich(record, scored, profile, processed_at))
            .collect();
        let next_token =
            (page.next).map(|cursor| self.tokens.issue(&scope(&plan.args), cursor, now));
        Ok(AssessmentPage { items, next_token })
    }

    /// Verifies the token, decides what the caller may read, and turns the
    /// arguments into the page query.
    fn plan(&self, item: ItemRequest, now: DateTime<Utc>) -> Result<Planned, ResolveError> {
        let ItemRequest { args, caller } = item;
        let after = match &args.next_token {
            Some(token) => Some(self.tokens.verify(token, &scope(&args), now)?),
            None => None,
        };
        let access = self.policy.access(&caller);
        if let Access::Denied(reason) = access {
            tracing::info!(caller = caller.kind(), reason, "caller refused");
            return Err(ResolveError::Unauthorized {
                student_id: args.student_id,
            });
        }
        let request = PageRequest {
            student_id: args.student_id.clone(),
            assessment_type: args.assessment_type,
            from: args.from,
            to: args.to,
            after,
            page_size: args.limit,
        };
        Ok(Planned {
            args,
            request,
            access,
        })
    }
}

/// The batch's profiles, as read once, and what reading them took.
struct ProfilesRead {
    result: Result<HashMap<String, ProfileRead>, ProfileError>,
    elapsed: Duration,
    requested: u32,
}

/// A caller limited to a school reads the student only if the profile says
/// the student is in it. A missing profile, or one that does not decode, is
/// refused exactly like another school's student; a DynamoDB failure is that
/// error (it says nothing about the student), and no SQL is sent for the item.
fn entitle(
    plan: &Planned,
    profiles: &Result<HashMap<String, ProfileRead>, ProfileError>,
) -> Result<(), ResolveError> {
    let found = profiles
        .as_ref()
        .map_err(|e| ResolveError::Profile(e.clone()))?;
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
        Err(ResolveError::Unauthorized {
            student_id: plan.args.student_id.clone(),
        })
    }
}

/// The time a batch's items spent on SQL Server and on the legacy component,
/// summed over the items (a single invocation: its own).
#[derive(Default)]
struct StageClock {
    sql_ns: AtomicU64,
    legacy_ns: AtomicU64,
}

impl StageClock {
    async fn sql<T>(&self, work: impl Future<Output = T>) -> T {
        Self::timed(&self.sql_ns, work).await
    }

    async fn legacy<T>(&self, work: impl Future<Output = T>) -> T {
        Self::timed(&self.legacy_ns, work).await
    }

    async fn timed<T>(total: &AtomicU64, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        total.fetch_add(spent, Ordering::Relaxed);
        output
    }

    fn timings(&self, profiles: Option<&ProfilesRead>) -> Timings {
        Timings {
            profiles: profiles.map_or(Duration::ZERO, |p| p.elapsed),
            profiles_requested: profiles.map_or(0, |p| p.requested),
            sql: Duration::from_nanos(self.sql_ns.load(Ordering::Relaxed)),
            legacy: Duration::from_nanos(self.legacy_ns.load(Ordering::Relaxed)),
        }
    }
}

fn scope(args: &GetAssessmentsArgs) -> TokenScope<'_> {
    TokenScope {
        student_id: &args.student_id,
        assessment_type: args.assessment_type,
        from: args.from,
        to: args.to,
    }
}

fn legacy_row(record: &AssessmentRecord) -> AssessmentRow {
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

fn enrich(
    record: &AssessmentRecord,
    scored: ScoredAssessment,
    profile: &Profile,
    processed_at: UtcMillis,
) -> Assessment {
    Assessment {
        id: record.assessment_id,
        student_id: record.student_id.clone(),
        assessment_type: record.assessment_type.as_str(),
        administered_at: UtcMillis(record.administered_at),
        raw_score: record.raw_score,
        items_attempted: record.items_attempted,
        items_correct: record.items_correct,
        duration_seconds: record.duration_seconds,
        // Validated at the boundary: finite whole numbers within 100..900 and 1..99.
        scaled_score: scored.scaled_score.round() as i64,
        percentile: scored.percentile.round() as i64,
        benchmark_band: scored.band.as_str(),
        words_correct_per_minute: scored.wcpm.map(|w| (w * 10.0).round() / 10.0),
        accuracy: (scored.accuracy * 1000.0).round() / 1000.0,
        flags: scored.flags,
        student_grade: profile.grade,
        reading_level: profile.reading_level,
        processed_at,
    }
}
