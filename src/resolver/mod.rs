//! The business rules of `getAssessments`, independent of the event format:
//! validate, authorize, read the profile and the rows, score the rows
//! through the legacy component, enrich, page.
//!
//! Authorization ([`crate::authz`]) comes before any SQL or native call: a
//! caller entitled to every student has its rows read at the same time as the
//! profiles; a caller limited to a school has them read only once the
//! profile shows the student is in that school.
//!
//! A batch reads each distinct student's profile once and processes its items
//! concurrently, at most as many at a time as the SQL pool has connections.
//! Nothing here outlives the call: every per-request value is owned by the
//! request's future.

mod args;
mod error;
pub mod keys;
mod output;
mod token;

use std::collections::HashMap;
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
    pub profiles: Duration,
    pub sql: Duration,
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
    index: usize,
    args: GetAssessmentsArgs,
    request: PageRequest,
    access: Access,
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
    pub async fn get_assessments(
        &self,
        items: Vec<Result<ItemRequest, ResolveError>>,
        now: DateTime<Utc>,
        budget: &Budget,
    ) -> (Vec<Result<AssessmentPage, ResolveError>>, Timings) {
        // A token signed with a key this environment has not seen: the keys
        // may have rotated since init.
        if let Some(source) = &self.key_source {
            let unknown = items.iter().flatten().any(|item| {
                (item.args.next_token.as_deref()).is_some_and(|t| self.tokens.is_unknown_key(t))
            });
            if unknown {
                source.refresh(&self.tokens, budget).await;
            }
        }
        let mut results: Vec<Option<Result<AssessmentPage, ResolveError>>> =
            Vec::with_capacity(items.len());
        let mut planned = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item.and_then(|item| self.plan(index, item, now)) {
                Ok(plan) => {
                    planned.push(plan);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut timings = Timings::default();

        // Profiles, and at the same time the rows of the items whose caller may
        // read any student; rows at most `max_size` queries at once.
        let student_ids: Vec<&str> = planned.iter().map(|p| p.args.student_id.as_str()).collect();
        let concurrency = self.sql.status().max_size.max(1);
        let profiles = async {
            let started = Instant::now();
            let distinct: std::collections::HashSet<&str> = student_ids.iter().copied().collect();
            let result = match distinct.len() {
                0 => Ok(HashMap::new()),
                1 => {
                    // One student: GetItem; a malformed profile is that student's error.
                    let id = student_ids[0];
                    match self.profiles.get(id, budget).await {
                        Ok(profile) => Ok(profile
                            .map(|p| (id.to_owned(), Ok(p)))
                            .into_iter()
                            .collect()),
                        Err(e @ ProfileError::Malformed { .. }) => {
                            Ok(HashMap::from([(id.to_owned(), Err(e))]))
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => self.profiles.get_many(&student_ids, budget).await,
            };
            (result, started.elapsed(), distinct.len() as u32)
        };
        let open: Vec<&Planned> = planned.iter().filter(|p| p.access == Access::All).collect();
        // Boxed here and below: the dependencies' futures are large (kilobytes),
        // and unboxed they are copied whole each time a combinator moves or
        // completes one (memcpy was a fifth of an invocation's instructions).
        let ((profiles, profile_time, reads), (open_pages, open_time)) = tokio::join!(
            Box::pin(profiles),
            Box::pin(self.fetch_pages(&open, concurrency, budget))
        );
        timings.profiles = profile_time;
        timings.profiles_requested = reads;

        // Items limited to a school: entitled only if the profile says so. A
        // missing profile is refused exactly like another school's student.
        let mut scoped = Vec::new();
        for plan in planned.iter().filter(|p| p.access != Access::All) {
            let entitled = match &profiles {
                // DynamoDB failed: that error (it says nothing about the
                // student), and no SQL for a caller not known to be entitled.
                Err(e) => {
                    results[plan.index] = Some(Err(ResolveError::Profile(e.clone())));
                    continue;
                }
                Ok(found) => match found.get(&plan.args.student_id) {
                    Some(Ok(profile)) => plan.access.permits(profile.school_id.as_deref()),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "school-scoped caller refused: the profile does not decode");
                        false
                    }
                    None => false,
                },
            };
            if entitled {
                scoped.push(plan);
            } else {
                results[plan.index] = Some(Err(ResolveError::Unauthorized {
                    student_id: plan.args.student_id.clone(),
                }));
            }
        }
        let (scoped_pages, scoped_time) =
            Box::pin(self.fetch_pages(&scoped, concurrency, budget)).await;
        timings.sql = open_time + scoped_time;

        let started = Instant::now();
        let profiles = &profiles;
        let ready: Vec<_> = open
            .into_iter()
            .zip(open_pages)
            .chain(scoped.into_iter().zip(scoped_pages))
            .collect();
        let finishing: Vec<_> = ready
            .into_iter()
            .map(|(plan, page)| {
                Box::pin(async move {
                    let result = self.finish(plan, page, profiles, now, budget).await;
                    (plan.index, result)
                })
            })
            .collect();
        let scored: Vec<(usize, Result<AssessmentPage, ResolveError>)> =
            futures_util::stream::iter(finishing)
                .buffered(concurrency)
                .collect()
                .await;
        timings.legacy = started.elapsed();
        for (index, result) in scored {
            results[index] = Some(result);
        }
        let results = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| unreachable!("every item has a result")))
            .collect();
        (results, timings)
    }

    /// The pages of `plans`, in order, at most `concurrency` queries at once.
    async fn fetch_pages(
        &self,
        plans: &[&Planned],
        concurrency: usize,
        budget: &Budget,
    ) -> (Vec<Result<Page, SqlError>>, Duration) {
        let started = Instant::now();
        // The futures are built first and then driven `concurrency` at a
        // time (a closure inside the stream would trip a rustc
        // higher-ranked-lifetime limitation once the future must be Send).
        let queries: Vec<_> = plans
            .iter()
            .map(|p| Box::pin(self.sql.fetch_page(&p.request, budget)))
            .collect();
        let pages = futures_util::stream::iter(queries)
            .buffered(concurrency)
            .collect()
            .await;
        (pages, started.elapsed())
    }

    /// Verifies the token, decides what the caller may read, and turns the
    /// arguments into the page query.
    fn plan(
        &self,
        index: usize,
        item: ItemRequest,
        now: DateTime<Utc>,
    ) -> Result<Planned, ResolveError> {
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
            index,
            args,
            request,
            access,
        })
    }

    async fn finish(
        &self,
        plan: &Planned,
        page: Result<Page, SqlError>,
        profiles: &Result<HashMap<String, ProfileRead>, ProfileError>,
        now: DateTime<Utc>,
        budget: &Budget,
    ) -> Result<AssessmentPage, ResolveError> {
        let processed_at = UtcMillis(now.naive_utc());
        let profiles = profiles
            .as_ref()
            .map_err(|e| ResolveError::Profile(e.clone()))?;
        let profile = profiles
            .get(&plan.args.student_id)
            .ok_or_else(|| ResolveError::NotFound {
                student_id: plan.args.student_id.clone(),
            })?
            .as_ref()
            .map_err(|e| ResolveError::Profile(e.clone()))?;
        let page = page?;
        let context = StudentContext {
            grade: profile.grade,
            reading_level: profile.reading_level,
        };
        let rows: Vec<AssessmentRow> = page.records.iter().map(legacy_row).collect();
        let scored = if rows.is_empty() {
            Vec::new()
        } else {
            self.legacy.score(context, rows, budget).await?
        };
        let items = page
            .records
            .iter()
            .zip(scored)
            .map(|(record, scored)| enrich(record, scored, profile, processed_at))
            .collect();
        let next_token = page
            .next
            .map(|cursor| self.tokens.issue(&scope(&plan.args), cursor, now));
        Ok(AssessmentPage { items, next_token })
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
