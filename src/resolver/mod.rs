//! The business rules of `getAssessments`, independent of the event format:
//! validate, authorize, read the profile and the rows, score the rows
//! through the legacy component, enrich, page.
//!
//! Authorization ([`crate::authz`]) is decided once per item, here, before
//! any SQL or native call, and the decision comes back with the item's
//! outcome ([`ItemOutcome`]) for its audit line: a caller entitled to every
//! student has its rows read at the same time as the profiles; a caller
//! limited to a school has them read only once the profile shows the
//! student is in that school.
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
mod stages;
mod token;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assessments_common::budget::Budget;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use legacy_bridge::{AssessmentRow, LegacyEngine, LegacyStats, StudentContext};

use crate::authz::{Access, AuthzPolicy, Caller, Decision};
use crate::profiles::{ProfileError, ProfileStore};
use crate::sqlserver::{PageRequest, PoolStatus, SqlPool};
use stages::{Planned, ProfilesRead, StageClock, Staged, legacy_row, scope};

pub use args::{DEFAULT_LIMIT, GetAssessmentsArgs, MAX_LIMIT, MAX_RANGE_DAYS, parse_args};
pub use error::{ErrorType, ResolveError};
pub use keys::{KeySource, NextTokens, TokenKeySettings};
pub use output::{Assessment, AssessmentPage, UtcMillis};
pub use token::{MIN_KEY_LEN, SigningKey, TokenKeys, TokenScope, TokenSigner};

/// One item of an invocation: the validated arguments and who asks.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRequest {
    pub args: GetAssessmentsArgs,
    pub caller: Caller,
}

/// What became of one item: its page or its error, and the access decision
/// made for it (what its audit line records).
#[derive(Debug)]
pub struct ItemOutcome {
    pub result: Result<AssessmentPage, ResolveError>,
    pub decision: Decision,
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

/// The state of the resolver's resources: the one view the invocation's
/// report (and a test) reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    pub pool: PoolStatus,
    /// The most SQL connections in use at once since the previous view was
    /// taken: each report takes one, so this is its invocation's peak.
    pub pool_peak: usize,
    pub legacy: LegacyStats,
}

/// The resolver and the dependencies it owns, built once per execution environment.
#[derive(Debug)]
pub struct Resolver {
    profiles: ProfileStore,
    sql: SqlPool,
    legacy: LegacyEngine,
    tokens: NextTokens,
    policy: AuthzPolicy,
}

/// A boxed future of the pipeline's: the dependencies' futures are large
/// (kilobytes), and unboxed they are copied whole each time a combinator
/// moves or completes one (memcpy was a fifth of an invocation's instructions).
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Resolver {
    pub fn new(
        profiles: ProfileStore,
        sql: SqlPool,
        legacy: LegacyEngine,
        tokens: NextTokens,
        policy: AuthzPolicy,
    ) -> Self {
        Resolver {
            profiles,
            sql,
            legacy,
            tokens,
            policy,
        }
    }

    /// The resources' state now (see [`Resources`]).
    pub fn resources(&self) -> Resources {
        Resources {
            pool: self.sql.status(),
            pool_peak: self.sql.take_recent_peak(),
            legacy: self.legacy.stats(),
        }
    }

    /// Graceful shutdown: the legacy engine closed exactly once (running
    /// calls given `grace`), then the pool.
    pub async fn shutdown(&self, grace: Duration) {
        match self.legacy.shutdown(grace).await {
            Ok(()) => tracing::info!("legacy engine closed"),
            Err(error) => tracing::warn!(%error, "legacy engine shutdown incomplete"),
        }
        self.sql.close();
        tracing::info!(pool = ?self.sql.status(), "SQL Server pool closed");
    }

    /// Resolves a batch of `getAssessments` calls (one element for a single
    /// invoke). The outcomes are in the same order; each item fails on its
    /// own. `now` is the invocation's one clock read, every item's
    /// `processedAt`. Every item's waits end within `budget`: an item still
    /// waiting then fails alone with a timeout naming the dependency.
    ///
    /// Stages: plan each item (validate, verify its token, decide what the
    /// caller may read); read every distinct student's profile once for the
    /// batch and, at the same time, the pages of the items whose caller may
    /// read every student ([`Self::read_pages`]: a few statements for the
    /// batch); entitle the school-scoped items by their profiles and read
    /// their pages; then finish each item ([`Self::finish`]: scored and
    /// assembled), at most as many at once as the pool has connections.
    pub async fn get_assessments(
        &self,
        items: Vec<Result<ItemRequest, ResolveError>>,
        now: DateTime<Utc>,
        budget: &Budget,
    ) -> (Vec<ItemOutcome>, Timings) {
        self.refresh_keys(&items, budget).await;
        let staged: Vec<Staged> = (items.into_iter())
            .map(|item| match item {
                Ok(item) => self.plan(item, now),
                Err(e) => Staged::Failed(e, Decision::Rejected),
            })
            .collect();
        let clock = StageClock::default();
        let read: Boxed<'_, Arc<ProfilesRead>> =
            Box::pin(self.read_profiles(students(&staged), budget));
        // A caller entitled to every student: its pages read with the profiles.
        let open = |p: &Planned| p.access == Access::All;
        let pages = Box::pin(self.read_pages(staged, open, budget, &clock));
        let (profiles, staged) = tokio::join!(read, pages);
        // A caller limited to a school: once the profile shows the student is in it.
        let staged = (staged.into_iter())
            .map(|item| item.entitled(&profiles.result))
            .collect();
        let staged = Box::pin(self.read_pages(staged, |_| true, budget, &clock)).await;
        let finishing = staged.into_iter().map(|item| {
            let (profiles, clock) = (&profiles, &clock);
            Box::pin(async move { self.finish(item, profiles, now, budget, clock).await })
        });
        let concurrency = self.sql.status().max_size.max(1);
        let outcomes = (futures_util::stream::iter(finishing).buffered(concurrency))
            .collect()
            .await;
        (outcomes, clock.timings(Some(&profiles)))
    }

    /// Verifies the token, decides what the caller may read (the item's one
    /// access decision, but for a school-scoped caller's entitlement to the
    /// student: [`stages::entitle`]), and turns the arguments into the page query.
    fn plan(&self, item: ItemRequest, now: DateTime<Utc>) -> Staged {
        let ItemRequest { args, caller } = item;
        let after = match &args.next_token {
            Some(token) => match self.tokens.signer.verify(token, &scope(&args), now) {
                Ok(cursor) => Some(cursor),
                Err(e) => return Staged::Failed(e, Decision::Rejected),
            },
            None => None,
        };
        let access = self.policy.access(&caller);
        if let Access::Denied(reason) = access {
            tracing::info!(caller = caller.kind(), reason, "caller refused");
            let e = ResolveError::Unauthorized;
            return Staged::Failed(e, Decision::Denied);
        }
        let request = PageRequest {
            student_id: args.student_id.clone(),
            assessment_type: args.assessment_type,
            from: args.from,
            to: args.to,
            after,
            page_size: args.limit,
        };
        Staged::Planned(Planned {
            args,
            request,
            access,
        })
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
            let requests: Vec<&PageRequest> = items
                .iter()
                .filter_map(|item| item.to_read(&which))
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
        let Some(source) = &self.tokens.source else {
            return;
        };
        let signer = &self.tokens.signer;
        let unknown = items.iter().flatten().any(|item| {
            (item.args.next_token.as_deref()).is_some_and(|t| signer.is_unknown_key(t))
        });
        if unknown {
            source.refresh(signer, budget).await;
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
    ) -> ItemOutcome {
        let (plan, page) = match item {
            Staged::Failed(e, decision) => {
                return ItemOutcome {
                    result: Err(e),
                    decision,
                };
            }
            Staged::Paged(plan, page) => (plan, page),
            Staged::Planned(plan) => {
                let page = clock
                    .sql(Box::pin(self.sql.fetch_page(&plan.request, budget)))
                    .await;
                (plan, page)
            }
        };
        let result = self
            .assemble(plan, page, profiles, now, budget, clock)
            .await;
        ItemOutcome {
            result,
            decision: Decision::Allowed,
        }
    }

    /// An allowed item's page: its rows scored and enriched with the
    /// profile, and the token of the next page.
    async fn assemble(
        &self,
        plan: Planned,
        page: Result<crate::sqlserver::Page, crate::sqlserver::SqlError>,
        profiles: &ProfilesRead,
        now: DateTime<Utc>,
        budget: &Budget,
        clock: &StageClock,
    ) -> Result<AssessmentPage, ResolveError> {
        let found = (profiles.result.as_ref()).map_err(|e| ResolveError::Profile(e.clone()))?;
        let profile = match found.get(&plan.args.student_id) {
            None => {
                return Err(ResolveError::NotFound);
            }
            Some(read) => read
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
            let call = Box::pin(self.legacy.score(context, rows, budget));
            clock.legacy(call).await?
        };
        let processed_at = UtcMillis(now.naive_utc());
        let items = (page.records.iter().zip(scored))
            .map(|(record, scored)| Assessment::enriched(record, scored, profile, processed_at))
            .collect();
        let next_token =
            (page.next).map(|cursor| self.tokens.signer.issue(&scope(&plan.args), cursor, now));
        Ok(AssessmentPage { items, next_token })
    }
}

/// The distinct students of the planned items, sorted.
fn students(staged: &[Staged]) -> Vec<String> {
    let mut students: Vec<String> = (staged.iter())
        .filter_map(|item| match item {
            Staged::Planned(plan) => Some(plan.args.student_id.clone()),
            _ => None,
        })
        .collect();
    students.sort_unstable();
    students.dedup();
    students
}
