//! What the server knows besides SQL's grammar: the statements the product
//! sends (the page query from `infra/sql/queries/`, and an echo statement for
//! testing parameter types), the shape of the one table it serves, what a
//! statement produces ([`StatementOutcome`]), and the session `SET` options
//! SQL Server accepts, with their values checked ([`SessionSettings`]).
//! Statements themselves are parsed and run by [`super::sql`].

use std::collections::BTreeMap;

use super::wire::{Column, ColumnType, Value};

/// The resolver's page query, byte for byte (the resolver includes the same file).
pub const ASSESSMENTS_PAGE_SQL: &str =
    include_str!("../../../infra/sql/queries/assessments_page.sql");

/// The batch's page query: every item's page in one result set, the items
/// as one JSON parameter (the resolver includes the same file).
pub const ASSESSMENTS_PAGES_SQL: &str =
    include_str!("../../../infra/sql/queries/assessments_pages.sql");

/// Echoes its one parameter back as a one-row result with the parameter's type.
pub const ECHO_SQL: &str = "SELECT @P1 AS value";

/// A change of the session's environment, sent as an ENVCHANGE token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    Database { new: String, old: String },
    BeginTran(u64),
    Commit(u64),
    Rollback(u64),
}

/// What a statement produced.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementOutcome {
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
    },
    /// A statement without a result set (a `SET`).
    Done,
    /// A statement that changed the session's environment (`USE`, a
    /// transaction's start or end), without a result set.
    Env(Vec<EnvChange>),
    Error {
        number: i32,
        class: u8,
        message: String,
    },
}

pub(crate) fn error(number: i32, class: u8, message: impl Into<String>) -> StatementOutcome {
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
pub(crate) fn apply_set(words: &[&str], settings: &mut SessionSettings) -> StatementOutcome {
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
