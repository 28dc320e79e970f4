//! The page query: one constant statement, parameters only, keyset pagination.

use assessments_common::budget::Budget;
use assessments_common::xray;
use std::sync::{Arc, LazyLock};

use chrono::{NaiveDate, NaiveDateTime};
use tiberius::{FromSql, Row, ToSql};

use super::error::SqlError;
use super::pool::{Lease, SqlPool};
use assessments_common::rules::AssessmentType;

/// The statement, byte for byte as `infra/sql/queries/assessments_page.sql`
/// (documented there). Never built from input.
pub const ASSESSMENTS_PAGE_SQL: &str = include_str!("../../infra/sql/queries/assessments_page.sql");

/// A batch's pages in one statement, byte for byte as
/// `infra/sql/queries/assessments_pages.sql`: the items as one JSON
/// parameter (`OPENJSON`), each item's page the page query's own
/// (`CROSS APPLY`), rows tagged with their item. Never built from input.
pub const ASSESSMENTS_PAGES_SQL: &str =
    include_str!("../../infra/sql/queries/assessments_pages.sql");

/// The statements as sent: each run of whitespace outside quotes one space.
/// Their text travels as UTF-16 in every request and costs ~100 instructions
/// a character to encode (tiberius writes it unit by unit), so the files'
/// indentation alone was ~10 k instructions per page query. The files have no
/// comments (a test checks), so nothing else changes.
pub static PAGE_STATEMENT: LazyLock<String> = LazyLock::new(|| compact(ASSESSMENTS_PAGE_SQL));
pub static PAGES_STATEMENT: LazyLock<String> = LazyLock::new(|| compact(ASSESSMENTS_PAGES_SQL));

/// `sql` with each run of whitespace outside single quotes made one space, trimmed.
pub fn compact(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut space = false;
    for c in sql.trim().chars() {
        if !quoted && c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(c);
    }
    out
}

/// The range of SQL Server's `date` type: the days a page request may name.
pub const SQL_MIN_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(d) => d,
    None => panic!("0001-01-01 is a date"),
};
pub const SQL_MAX_DATE: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(d) => d,
    None => panic!("9999-12-31 is a date"),
};

/// Most rows one page may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Where the previous page ended: the last row's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub administered_at: NaiveDateTime,
    pub assessment_id: i64,
}

/// Which rows to read.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub student_id: String,
    pub assessment_type: Option<AssessmentType>,
    /// First day (UTC), inclusive.
    pub from: Option<NaiveDate>,
    /// Last day (UTC), inclusive.
    pub to: Option<NaiveDate>,
    /// Continue after this row; `None` for the first page.
    pub after: Option<Cursor>,
    /// Rows per page, 1..=MAX_PAGE_SIZE.
    pub page_size: u32,
}

/// A row of `dbo.assessments`, decoded and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentRecord {
    pub assessment_id: i64,
    /// Shared by the rows of a page with the same id (all of them, normally).
    pub student_id: Arc<str>,
    pub assessment_type: AssessmentType,
    /// UTC.
    pub administered_at: NaiveDateTime,
    pub raw_score: f64,
    pub items_attempted: i32,
    pub items_correct: i32,
    pub duration_seconds: i32,
}

impl AssessmentRecord {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            administered_at: self.administered_at,
            assessment_id: self.assessment_id,
        }
    }
}

/// One page: the rows, and where the next page starts if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<AssessmentRecord>,
    pub next: Option<Cursor>,
}

impl SqlPool {
    /// Reads one page within `budget`. A connection that dies under a
    /// reused lease is discarded, with the idle ones created before it, and
    /// the (read-only) query retried once on a new connection, if a whole
    /// attempt (`SQL_QUERY_TIMEOUT_MS`) still fits in the budget.
    pub async fn fetch_page(
        &self,
        request: &PageRequest,
        budget: &Budget,
    ) -> Result<Page, SqlError> {
        let span = tracing::trace_span!(
            target: "xray",
            "SQL Server",
            namespace = "remote",
            database = "Microsoft SQL Server",
            page_size = request.page_size,
            failure = tracing::field::Empty,
        );
        xray::traced(span, self.read_page(request, budget)).await
    }

    async fn read_page(&self, request: &PageRequest, budget: &Budget) -> Result<Page, SqlError> {
        check_page_size(request)?;
        // One row more than the page tells whether a next page exists.
        let top = request.page_size as i32 + 1;
        let student_id = request.student_id.as_str();
        let assessment_type = request.assessment_type.map(AssessmentType::as_str);
        let to = last_day(request);
        let after_at = request.after.map(|c| c.administered_at);
        let after_id = request.after.map(|c| c.assessment_id);
        let params: [&dyn ToSql; 7] = [
            &top,
            &student_id,
            &assessment_type,
            &request.from,
            &to,
            &after_at,
            &after_id,
        ];
        let rows = Box::pin(self.query(PAGE_STATEMENT.as_str(), &params, budget)).await?;
        if let Some(first) = rows.first() {
            check_columns(first, 0)?;
        }
        let student_id: Arc<str> = Arc::from(request.student_id.as_str());
        let records = (rows.iter())
            .map(|row| decode_record(row, 0, &student_id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(records, request))
    }

    /// Reads several pages within `budget`, in one statement
    /// ([`ASSESSMENTS_PAGES_SQL`]); one request is read with the page query
    /// itself. Answers one result per request, in order: each page exactly
    /// what [`SqlPool::fetch_page`] answers for it. A request that is not
    /// valid fails alone; a statement that fails fails every request in it.
    pub async fn fetch_pages(
        &self,
        requests: &[&PageRequest],
        budget: &Budget,
    ) -> Vec<Result<Page, SqlError>> {
        if let [request] = requests {
            // Boxed: the page read is a large future (tiberius's), moved otherwise.
            return vec![Box::pin(self.fetch_page(request, budget)).await];
        }
        let checked: Vec<Result<&PageRequest, SqlError>> = (requests.iter())
            .map(|r| check_page_size(r).map(|()| *r))
            .collect();
        let items: Vec<PageItem> = (checked.iter().enumerate())
            .filter_map(|(item, r)| Some(PageItem::new(item, r.as_ref().ok()?)))
            .collect();
        // Our own type: numbers and strings; cannot fail.
        let items = serde_json::to_string(&items).unwrap_or_default();
        let span = tracing::trace_span!(
            target: "xray",
            "SQL Server",
            namespace = "remote",
            database = "Microsoft SQL Server",
            pages = requests.len(),
            failure = tracing::field::Empty,
        );
        let items = items.as_str();
        let params: [&dyn ToSql; 1] = [&items];
        let query = Box::pin(self.query(PAGES_STATEMENT.as_str(), &params, budget));
        let read =
            (xray::traced(span, query).await).and_then(|rows| pages_by_item(rows, requests.len()));
        let mut read = match read {
            Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => (0..requests.len()).map(|_| Err(e.clone())).collect(),
        };
        (checked.into_iter().zip(read.iter_mut()))
            .map(|(request, records)| {
                let request = request?;
                let records = std::mem::replace(records, Ok(Vec::new()))?;
                let student_id: Arc<str> = Arc::from(request.student_id.as_str());
                let records = (records.iter())
                    .map(|row| decode_record(row, 1, &student_id))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(page(records, request))
            })
            .collect()
    }

    /// Runs one read-only statement. A connection that dies under a reused
    /// lease is discarded, with the idle ones created before it, and the
    /// statement retried once on a new connection, if a whole attempt
    /// (`SQL_QUERY_TIMEOUT_MS`) still fits in the budget.
    async fn query(
        &self,
        sql: &'static str,
        params: &[&dyn ToSql],
        budget: &Budget,
    ) -> Result<Vec<Row>, SqlError> {
        let mut lease = self.checkout(budget).await?;
        match self.run(&mut lease, sql, params, budget).await {
            Err(error)
                if error.is_connection_lost()
                    && lease.is_reused()
                    && budget.fits(self.query_timeout) =>
            {
                tracing::warn!(%error, "pooled SQL Server connection failed; retrying once on a new connection");
                drop(lease);
                self.discard_idle_created_before(std::time::Instant::now());
                lease = self.checkout(budget).await?;
                self.run(&mut lease, sql, params, budget).await
            }
            other => other,
        }
    }

    async fn run(
        &self,
        lease: &mut Lease,
        sql: &'static str,
        params: &[&dyn ToSql],
        budget: &Budget,
    ) -> Result<Vec<Row>, SqlError> {
        let connection = lease.connection();
        // Stays set if this future is dropped or fails mid-stream: the lease
        // then discards the connection instead of returning it.
        connection.broken = true;
        // Boxed: tiberius's query future is large, and it sits inside every request's future.
        let query = Box::pin(async {
            let stream = connection.client.query(sql, params).await?;
            stream.into_first_result().await
        });
        let bound = budget.bound(self.query_timeout, "SQL_QUERY_TIMEOUT_MS");
        match bound.run(query).await {
            Err(limit) => Err(SqlError::QueryTimeout { limit }),
            Ok(Err(e)) => {
                let error = SqlError::from_query(e, self.query_timeout);
                connection.broken = error.breaks_connection();
                Err(error)
            }
            Ok(Ok(rows)) => {
                connection.broken = false;
                Ok(rows)
            }
        }
    }
}

fn check_page_size(request: &PageRequest) -> Result<(), SqlError> {
    if request.page_size == 0 || request.page_size > MAX_PAGE_SIZE {
        return Err(SqlError::InvalidRequest(format!(
            "page size {} is outside 1..={MAX_PAGE_SIZE}",
            request.page_size
        )));
    }
    Ok(())
}

/// The statement ends the range at `DATEADD(day, 1, to)`, which overflows on
/// SQL Server's last day; every datetime2 is on or before it anyway.
fn last_day(request: &PageRequest) -> Option<NaiveDate> {
    request.to.filter(|day| *day < SQL_MAX_DATE)
}

/// The records read for a page (one more than it holds, if there is a next).
fn page(mut records: Vec<AssessmentRecord>, request: &PageRequest) -> Page {
    let page_size = request.page_size as usize;
    let next = if records.len() > page_size {
        records.truncate(page_size);
        records.last().map(AssessmentRecord::cursor)
    } else {
        None
    };
    Page { records, next }
}

/// One item of the batch statement's JSON: what the page query takes as
/// parameters, under the keys `assessments_pages.sql`'s WITH clause reads
/// (one letter each, and an absent value left out, which `OPENJSON` reads as
/// NULL: the parameter is sent as UTF-16 and encoded character by character,
/// so its length is a batch item's cost).
#[derive(serde::Serialize)]
struct PageItem<'a> {
    /// The item's position in the chunk.
    i: usize,
    /// TOP: the page size and the one row more that says whether a next page exists.
    n: u32,
    s: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'static str>,
    /// From day, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    f: Option<NaiveDate>,
    /// Last day, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<NaiveDate>,
    /// The cursor: after this time, then this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<i64>,
}

impl<'a> PageItem<'a> {
    fn new(item: usize, request: &'a PageRequest) -> Self {
        PageItem {
            i: item,
            n: request.page_size + 1,
            s: &request.student_id,
            t: request.assessment_type.map(AssessmentType::as_str),
            f: request.from,
            l: last_day(request),
            a: (request.after).map(|c| {
                c.administered_at
                    .format("%Y-%m-%dT%H:%M:%S%.3f")
                    .to_string()
            }),
            b: request.after.map(|c| c.assessment_id),
        }
    }
}

/// The batch statement's rows, split by their item (column 0), in order.
fn pages_by_item(rows: Vec<Row>, items: usize) -> Result<Vec<Vec<Row>>, SqlError> {
    if let Some(first) = rows.first() {
        check_columns(first, 1)?;
    }
    let mut by_item: Vec<Vec<Row>> = (0..items).map(|_| Vec::new()).collect();
    for row in rows {
        let item: i32 = column(&row, 0, "item")?;
        let slot = usize::try_from(item)
            .ok()
            .and_then(|i| by_item.get_mut(i))
            .ok_or_else(|| SqlError::Decode {
                column: "item",
                reason: "not an item of the batch".to_owned(),
            })?;
        slot.push(row);
    }
    Ok(by_item)
}

/// The statement's columns, in its order: rows are read by position.
const COLUMNS: [&str; 8] = [
    "assessment_id",
    "student_id",
    "assessment_type",
    "administered_at",
    "raw_score",
    "items_attempted",
    "items_correct",
    "duration_seconds",
];

/// The result has the statement's columns in its order, after `skip`
/// leading ones (the batch's item), checked once per result so that each
/// row is read by position rather than by name.
fn check_columns(row: &Row, skip: usize) -> Result<(), SqlError> {
    let names = row.columns().iter().skip(skip).map(|c| c.name());
    if row.columns().len() != COLUMNS.len() + skip {
        return Err(SqlError::Decode {
            column: "*",
            reason: format!(
                "{} columns, expected {}",
                row.columns().len(),
                COLUMNS.len() + skip
            ),
        });
    }
    match names.zip(COLUMNS).find(|(got, want)| got != want) {
        Some((_, want)) => Err(SqlError::Decode {
            column: want,
            reason: "missing, or not in the statement's place".to_owned(),
        }),
        None => Ok(()),
    }
}

/// A non-NULL value of the column at `index`, or an error naming it.
fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    column: &'static str,
) -> Result<T, SqlError> {
    match row.try_get::<T, _>(index) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(SqlError::Decode {
            column,
            reason: "unexpected NULL".to_owned(),
        }),
        Err(e) => Err(SqlError::Decode {
            column,
            reason: format!("unexpected type ({e})"),
        }),
    }
}

/// One row of `student_id`'s page, its columns from `at` on: a row of
/// another student is refused, not returned (the id is shared by every
/// record of the page).
fn decode_record(
    row: &Row,
    at: usize,
    student_id: &Arc<str>,
) -> Result<AssessmentRecord, SqlError> {
    let type_name: &str = field(row, at, 2)?;
    let assessment_type = AssessmentType::parse(type_name).ok_or_else(|| SqlError::Decode {
        column: "assessment_type",
        reason: "not a known assessment type".to_owned(),
    })?;
    let id: &str = field(row, at, 1)?;
    if id != &**student_id {
        return Err(SqlError::Decode {
            column: "student_id",
            reason: "a row of another student than the one asked for".to_owned(),
        });
    }
    Ok(AssessmentRecord {
        assessment_id: field(row, at, 0)?,
        student_id: Arc::clone(student_id),
        assessment_type,
        administered_at: field(row, at, 3)?,
        raw_score: field(row, at, 4)?,
        items_attempted: field(row, at, 5)?,
        items_correct: field(row, at, 6)?,
        duration_seconds: field(row, at, 7)?,
    })
}

/// The statement's column `i` (of [`COLUMNS`]) of a row whose columns start at `at`.
fn field<'a, T: FromSql<'a>>(row: &'a Row, at: usize, i: usize) -> Result<T, SqlError> {
    column(row, at + i, COLUMNS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_sent_with_their_whitespace_collapsed_and_nothing_else_changed() {
        for file in [ASSESSMENTS_PAGE_SQL, ASSESSMENTS_PAGES_SQL] {
            // Collapsing lines would turn a `--` comment into the rest of the statement.
            assert!(!file.contains("--") && !file.contains("/*"));
        }
        assert_eq!(
            compact("SELECT  a,\n    'x  y'\n  FROM t\n"),
            "SELECT a, 'x  y' FROM t"
        );
        let sent = PAGES_STATEMENT.as_str();
        assert!(sent.len() < ASSESSMENTS_PAGES_SQL.len() && !sent.contains('\n'));
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(sent, words(ASSESSMENTS_PAGES_SQL));
        assert_eq!(PAGE_STATEMENT.as_str(), words(ASSESSMENTS_PAGE_SQL));
    }
}
