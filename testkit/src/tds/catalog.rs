//! The statements this server answers, executed over fixture data.
//!
//! Not a SQL engine: it recognizes the exact statements the resolver and the
//! pool send (the page query from `infra/sql/queries/`, the `SELECT 1`
//! health check) plus one echo statement for testing parameter types, and
//! applies the received parameters with SQL Server's semantics for them.
//! Besides, what other clients send on their own: session `SET` statements
//! (checked, and kept as the session's settings, [`SessionSettings`]) and
//! trivial validation queries (`SELECT 1`, `SELECT 1 AS name`), in a batch of
//! several statements or through `sp_executesql`. Any other statement gets
//! the error a server returns for an unknown procedure.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDateTime};

use super::request::Param;
use super::wire::{Column, ColumnType, Value, WireType};
use crate::fixtures::{AssessmentFixture, Fixtures};

/// The resolver's page query, byte for byte (the resolver includes the same file).
pub const ASSESSMENTS_PAGE_SQL: &str =
    include_str!("../../../infra/sql/queries/assessments_page.sql");

/// Echoes its one parameter back as a one-row result with the parameter's type.
pub const ECHO_SQL: &str = "SELECT @P1 AS value";

/// What a statement produced.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementOutcome {
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
    },
    /// A statement without a result set (a `SET`).
    Done,
    Error {
        number: i32,
        class: u8,
        message: String,
    },
}

fn error(number: i32, class: u8, message: impl Into<String>) -> StatementOutcome {
    StatementOutcome::Error {
        number,
        class,
        message: message.into(),
    }
}

/// A session's `SET` options as its client left them: lower-case option
/// names (`transaction isolation level` for the isolation level) and values.
/// Empty after login and after a reset (the server's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings(BTreeMap<String, String>);

impl SessionSettings {
    pub fn get(&self, option: &str) -> Option<&str> {
        self.0.get(option).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Back to the login's state (`sp_reset_connection`, or a request with
    /// the RESETCONNECTION status bit).
    pub fn reset(&mut self) {
        self.0.clear();
    }
}

/// Options set to `ON` or `OFF` (several at once: `SET ANSI_NULLS, ANSI_PADDING ON`).
const ON_OFF_OPTIONS: [&str; 19] = [
    "ansi_defaults",
    "ansi_null_dflt_off",
    "ansi_null_dflt_on",
    "ansi_nulls",
    "ansi_padding",
    "ansi_warnings",
    "arithabort",
    "arithignore",
    "concat_null_yields_null",
    "cursor_close_on_commit",
    "fmtonly",
    "forceplan",
    "implicit_transactions",
    "nocount",
    "noexec",
    "numeric_roundabort",
    "parseonly",
    "quoted_identifier",
    "xact_abort",
];
const ISOLATION_LEVELS: [&str; 5] = [
    "read uncommitted",
    "read committed",
    "repeatable read",
    "snapshot",
    "serializable",
];
const DATE_FORMATS: [&str; 6] = ["mdy", "dmy", "ymd", "ydm", "myd", "dym"];

fn syntax_error(near: &str) -> StatementOutcome {
    error(102, 15, format!("Incorrect syntax near '{near}'."))
}

/// One `SET` statement, `words` after `SET` (lower case); the session's
/// settings change only if the whole statement is valid.
fn apply_set(words: &[&str], settings: &mut SessionSettings) -> StatementOutcome {
    let Some((first, rest)) = words.split_first() else {
        return syntax_error("SET");
    };
    let number_in = |value: Option<&&str>, range: std::ops::RangeInclusive<i64>| {
        value
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|n| range.contains(n))
            .map(|n| n.to_string())
    };
    let (option, value) = match *first {
        "transaction" => {
            let level = rest.get(2..).map(|w| w.join(" ")).unwrap_or_default();
            if rest.first() != Some(&"isolation")
                || rest.get(1) != Some(&"level")
                || !ISOLATION_LEVELS.contains(&level.as_str())
            {
                return syntax_error(rest.last().copied().unwrap_or("TRANSACTION"));
            }
            ("transaction isolation level".to_owned(), level)
        }
        "textsize" | "rowcount" => match number_in(rest.first(), 0..=i64::from(i32::MAX)) {
            Some(n) if rest.len() == 1 => ((*first).to_owned(), n),
            _ => return syntax_error(rest.first().copied().unwrap_or(first)),
        },
        "lock_timeout" => match number_in(rest.first(), -1..=i64::from(i32::MAX)) {
            Some(n) if rest.len() == 1 => ((*first).to_owned(), n),
            _ => return syntax_error(rest.first().copied().unwrap_or(first)),
        },
        "datefirst" => match number_in(rest.first(), 1..=7) {
            Some(n) if rest.len() == 1 => ((*first).to_owned(), n),
            _ => return syntax_error(rest.first().copied().unwrap_or(first)),
        },
        "dateformat" => match rest {
            [format] if DATE_FORMATS.contains(format) => {
                ((*first).to_owned(), (*format).to_owned())
            }
            _ => return syntax_error(rest.first().copied().unwrap_or(first)),
        },
        "language" => match rest {
            [name] if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                ((*first).to_owned(), (*name).to_owned())
            }
            _ => return syntax_error(rest.first().copied().unwrap_or(first)),
        },
        "deadlock_priority" => match rest {
            [p] if ["low", "normal", "high"].contains(p)
                || number_in(Some(p), -10..=10).is_some() =>
            {
                ((*first).to_owned(), (*p).to_owned())
            }
            _ => return syntax_error(rest.first().copied().unwrap_or(first)),
        },
        _ => {
            // ON/OFF options, possibly a comma-separated list of them.
            let Some((value, names)) = words.split_last() else {
                return syntax_error("SET");
            };
            if !["on", "off"].contains(value) || names.is_empty() {
                return syntax_error(value);
            }
            let names: Vec<&str> = names
                .iter()
                .flat_map(|w| w.split(','))
                .filter(|n| !n.is_empty())
                .collect();
            if let Some(unknown) = names.iter().find(|n| !ON_OFF_OPTIONS.contains(n)) {
                return error(
                    195,
                    15,
                    format!("'{unknown}' is not a recognized SET option."),
                );
            }
            for name in names {
                settings.0.insert(name.to_owned(), (*value).to_owned());
            }
            return StatementOutcome::Done;
        }
    };
    settings.0.insert(option, value);
    StatementOutcome::Done
}

/// One statement of a batch: `SELECT 1` (with or without a column name),
/// a `SET`, or an error.
fn run_simple(statement: &str, settings: &mut SessionSettings) -> StatementOutcome {
    let lower = statement.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.as_slice() {
        ["select", "1"] => select_one(""),
        ["select", "1", "as", name] => select_one(
            // The name as the client wrote it (case kept), without brackets or quotes.
            statement
                .split_whitespace()
                .nth(3)
                .unwrap_or(name)
                .trim_matches(['[', ']', '"']),
        ),
        ["set", rest @ ..] => apply_set(rest, settings),
        _ => error(
            2812,
            16,
            "The test TDS server does not implement this statement.",
        ),
    }
}

fn select_one(name: &str) -> StatementOutcome {
    StatementOutcome::Rows {
        columns: vec![Column::new(name, ColumnType::Int)],
        rows: vec![vec![Value::Int(1)]],
    }
}

/// A SQL batch (no parameters): its statements, separated by `;` or line
/// breaks (`--` comment lines skipped), run in order until one fails.
pub fn run_batch(text: &str, settings: &mut SessionSettings) -> Vec<StatementOutcome> {
    let mut outcomes = Vec::new();
    for statement in text
        .split(['\n', '\r', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with("--"))
    {
        let outcome = run_simple(statement, settings);
        let failed = matches!(outcome, StatementOutcome::Error { .. });
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    if outcomes.is_empty() {
        outcomes.push(StatementOutcome::Done);
    }
    outcomes
}

/// `sp_executesql` with `statement` and its parameters: the page query, the
/// echo, or (without parameters) a batch's statements.
pub fn run_statement(
    statement: &str,
    params: &[Param],
    fixtures: &Fixtures,
    settings: &mut SessionSettings,
) -> Vec<StatementOutcome> {
    if statement == ASSESSMENTS_PAGE_SQL {
        return vec![match PageQuery::from_params(params) {
            Ok(query) => query.run(fixtures),
            Err(outcome) => outcome,
        }];
    }
    if statement == ECHO_SQL {
        return vec![echo(params)];
    }
    run_batch(statement, settings)
}

fn echo(params: &[Param]) -> StatementOutcome {
    let Some(param) = params.iter().find(|p| p.name == "@P1") else {
        return error(137, 15, "Must declare the scalar variable \"@P1\".");
    };
    let ty = match param.wire_type {
        WireType::Bit | WireType::TinyInt | WireType::SmallInt | WireType::Int => ColumnType::Int,
        WireType::BigInt => ColumnType::BigInt,
        WireType::Float => ColumnType::Float,
        WireType::NVarChar | WireType::NVarCharMax | WireType::Null => ColumnType::NVarChar(4000),
        WireType::Date => ColumnType::Date,
        WireType::DateTime2 => ColumnType::DateTime2(7),
    };
    let value = match &param.value {
        Value::Bool(b) => Value::Int(i64::from(*b)),
        Value::String(s) if s.encode_utf16().count() > 4000 => {
            return error(
                8152,
                16,
                "String or binary data would be truncated (echo returns at most 4000 characters).",
            );
        }
        other => other.clone(),
    };
    StatementOutcome::Rows {
        columns: vec![Column::new("value", ty)],
        rows: vec![vec![value]],
    }
}

/// The page query's parameters, type-checked like SQL Server converts them.
#[derive(Debug)]
struct PageQuery {
    top: i64,
    student_id: String,
    assessment_type: Option<String>,
    from: Option<NaiveDateTime>,
    until_exclusive: Option<NaiveDateTime>,
    after: Option<(NaiveDateTime, i64)>,
}

/// SQL Server's default collation is case-insensitive and ignores trailing spaces.
fn collation_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches(' '), b.trim_end_matches(' '));
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

impl PageQuery {
    fn from_params(params: &[Param]) -> Result<Self, StatementOutcome> {
        let get = |name: &str, accepted: &[WireType]| -> Result<Value, StatementOutcome> {
            let Some(param) = params.iter().find(|p| p.name == name) else {
                return Err(error(
                    137,
                    15,
                    format!("Must declare the scalar variable \"{name}\"."),
                ));
            };
            if param.value != Value::Null && !accepted.contains(&param.wire_type) {
                return Err(error(
                    8114,
                    16,
                    format!(
                        "Error converting data type {} to {}.",
                        param.wire_type.name(),
                        accepted[0].name()
                    ),
                ));
            }
            Ok(param.value.clone())
        };
        let strings = [WireType::NVarChar, WireType::NVarCharMax];
        let ints = [
            WireType::Int,
            WireType::SmallInt,
            WireType::TinyInt,
            WireType::BigInt,
        ];
        let top = match get("@P1", &ints)? {
            Value::Int(n) if n >= 0 => n,
            _ => {
                return Err(error(
                    1014,
                    15,
                    "A TOP N or FETCH rows count value may not be negative.",
                ));
            }
        };
        let student_id = match get("@P2", &strings)? {
            Value::String(s) => s,
            _ => String::new(), // `student_id = NULL` matches nothing
        };
        let assessment_type = match get("@P3", &strings)? {
            Value::String(s) => Some(s),
            _ => None,
        };
        let day = |v: Value| match v {
            Value::Date(d) => d.and_hms_opt(0, 0, 0),
            _ => None,
        };
        let from = day(get("@P4", &[WireType::Date])?);
        let until_exclusive =
            day(get("@P5", &[WireType::Date])?).and_then(|d| d.checked_add_days(Days::new(1)));
        let after_at = match get("@P6", &[WireType::DateTime2])? {
            Value::DateTime(dt) => Some(dt),
            _ => None,
        };
        let after_id = match get("@P7", &ints)? {
            Value::Int(n) => Some(n),
            _ => None,
        };
        // `administered_at = @P6 AND assessment_id < NULL` is unknown, so a cursor
        // with a NULL id only keeps strictly older rows.
        let after = after_at.map(|at| (at, after_id.unwrap_or(i64::MIN)));
        Ok(PageQuery {
            top,
            student_id,
            assessment_type,
            from,
            until_exclusive,
            after,
        })
    }

    fn matches(&self, a: &AssessmentFixture) -> bool {
        collation_eq(&a.student_id, &self.student_id)
            && self
                .assessment_type
                .as_deref()
                .is_none_or(|t| collation_eq(&a.assessment_type, t))
            && self.from.is_none_or(|from| a.administered_at >= from)
            && self
                .until_exclusive
                .is_none_or(|until| a.administered_at < until)
            && self.after.is_none_or(|(at, id)| {
                a.administered_at < at || (a.administered_at == at && a.assessment_id < id)
            })
    }

    fn run(&self, fixtures: &Fixtures) -> StatementOutcome {
        let mut rows: Vec<&AssessmentFixture> = fixtures
            .assessments
            .iter()
            .filter(|a| self.matches(a))
            .collect();
        rows.sort_by(|x, y| {
            (y.administered_at, y.assessment_id).cmp(&(x.administered_at, x.assessment_id))
        });
        rows.truncate(usize::try_from(self.top).unwrap_or(usize::MAX));
        StatementOutcome::Rows {
            columns: page_columns(),
            rows: rows
                .into_iter()
                .map(|a| {
                    vec![
                        Value::Int(a.assessment_id),
                        Value::String(a.student_id.clone()),
                        Value::String(a.assessment_type.clone()),
                        Value::DateTime(a.administered_at),
                        Value::Float(a.raw_score),
                        Value::Int(i64::from(a.items_attempted)),
                        Value::Int(i64::from(a.items_correct)),
                        Value::Int(i64::from(a.duration_seconds)),
                    ]
                })
                .collect(),
        }
    }
}

/// The page query's result columns, typed as `infra/sql/001_schema.sql` declares them.
pub fn page_columns() -> Vec<Column> {
    vec![
        Column::new("assessment_id", ColumnType::BigInt),
        Column::new("student_id", ColumnType::NVarChar(64)),
        Column::new("assessment_type", ColumnType::NVarChar(32)),
        Column::new("administered_at", ColumnType::DateTime2(3)),
        Column::new("raw_score", ColumnType::Float),
        Column::new("items_attempted", ColumnType::Int),
        Column::new("items_correct", ColumnType::Int),
        Column::new("duration_seconds", ColumnType::Int),
    ]
}
