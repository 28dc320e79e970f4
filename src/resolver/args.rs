//! `getAssessments` arguments: validated from the event's JSON, every
//! violation a `ValidationError` naming the argument.

use assessments_common::rules::{AssessmentType, STUDENT_ID_RULE, is_valid_student_id, json_kind};
use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::error::ResolveError;
use crate::sqlserver::{SQL_MAX_DATE, SQL_MIN_DATE};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// The widest date range a query may span, in days (inclusive of both ends).
pub const MAX_RANGE_DAYS: i64 = 366 * 5;
pub const MAX_NEXT_TOKEN_LEN: usize = 1024;

/// Valid `getAssessments` arguments. `next_token` is still to be verified
/// against the other arguments (see `token.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct GetAssessmentsArgs {
    pub student_id: String,
    pub assessment_type: Option<AssessmentType>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub limit: u32,
    pub next_token: Option<String>,
}

fn invalid(argument: &'static str, message: impl Into<String>) -> ResolveError {
    ResolveError::validation(argument, message)
}

fn optional<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    args.get(name).filter(|v| !v.is_null())
}

/// The argument `name` as `read` takes it (absent or null: `None`); of
/// another JSON type, an error naming it: "must be `kind`, got ...".
fn argument<'a, T>(
    args: &'a Map<String, Value>,
    name: &'static str,
    kind: &str,
    read: fn(&'a Value) -> Option<T>,
) -> Result<Option<T>, ResolveError> {
    let Some(value) = optional(args, name) else {
        return Ok(None);
    };
    let wrong = || invalid(name, format!("must be {kind}, got {}", json_kind(value)));
    read(value).map(Some).ok_or_else(wrong)
}

/// The arguments' object (absent or null: `None`), with no argument the
/// API does not know.
fn arguments_object(
    arguments: Option<&Value>,
) -> Result<Option<&Map<String, Value>>, ResolveError> {
    let args = match arguments {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(other) => {
            let got = json_kind(other);
            return Err(invalid(
                "arguments",
                format!("must be an object, got {got}"),
            ));
        }
    };
    const KNOWN: [&str; 5] = [
        "studentId",
        "assessmentType",
        "dateRange",
        "limit",
        "nextToken",
    ];
    if let Some(unknown) = args.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(40).collect();
        return Err(invalid("arguments", format!("unknown argument {shown:?}")));
    }
    Ok(Some(args))
}

pub fn parse_args(arguments: Option<&Value>) -> Result<GetAssessmentsArgs, ResolveError> {
    let empty = Map::new();
    let args = arguments_object(arguments)?.unwrap_or(&empty);
    let student_id = argument(args, "studentId", "a string", Value::as_str)?
        .ok_or_else(|| invalid("studentId", "is required"))?;
    if !is_valid_student_id(student_id) {
        return Err(invalid("studentId", STUDENT_ID_RULE));
    }
    let assessment_type = argument(args, "assessmentType", "a string", Value::as_str)?
        .map(|name| {
            AssessmentType::parse(name).ok_or_else(|| {
                let names = AssessmentType::names().join(", ");
                invalid("assessmentType", format!("must be one of {names}"))
            })
        })
        .transpose()?;
    let (from, to) = match argument(args, "dateRange", "an object", Value::as_object)? {
        None => (None, None),
        Some(range) => parse_range(range)?,
    };
    let limit = match argument(args, "limit", "a number", Value::as_number)? {
        None => DEFAULT_LIMIT,
        Some(n) => match n.as_u64() {
            Some(l) if (1..=u64::from(MAX_LIMIT)).contains(&l) => l as u32,
            _ => {
                let rule = format!("must be a whole number from 1 to {MAX_LIMIT}");
                return Err(invalid("limit", rule));
            }
        },
    };
    let next_token = match argument(args, "nextToken", "a string", Value::as_str)? {
        Some(s) if s.is_empty() || s.len() > MAX_NEXT_TOKEN_LEN => {
            return Err(invalid("nextToken", "is not a token this API issued"));
        }
        token => token.map(str::to_owned),
    };

    Ok(GetAssessmentsArgs {
        student_id: student_id.to_owned(),
        assessment_type,
        from,
        to,
        limit,
        next_token,
    })
}

fn parse_range(
    range: &Map<String, Value>,
) -> Result<(Option<NaiveDate>, Option<NaiveDate>), ResolveError> {
    if let Some(unknown) = range.keys().find(|k| *k != "from" && *k != "to") {
        let shown: String = unknown.chars().take(40).collect();
        return Err(invalid(
            "dateRange",
            format!("has an unknown field {shown:?}"),
        ));
    }
    let from = optional(range, "from")
        .map(|v| parse_aws_date("dateRange.from", v))
        .transpose()?;
    let to = optional(range, "to")
        .map(|v| parse_aws_date("dateRange.to", v))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(invalid("dateRange", "from must not be after to"));
        }
        if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
            return Err(invalid(
                "dateRange",
                format!("must span at most {MAX_RANGE_DAYS} days"),
            ));
        }
    }
    Ok((from, to))
}

/// An AWSDate: `YYYY-MM-DD`, optionally followed by `Z`. Days are UTC days;
/// other offsets are refused rather than silently reinterpreted.
fn parse_aws_date(argument: &'static str, value: &Value) -> Result<NaiveDate, ResolveError> {
    let Value::String(text) = value else {
        return Err(invalid(
            argument,
            format!("must be an AWSDate string, got {}", json_kind(value)),
        ));
    };
    let day = text.strip_suffix('Z').unwrap_or(text);
    if day.len() != 10 {
        return Err(invalid(argument, "must be an AWSDate (YYYY-MM-DD, UTC)"));
    }
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| invalid(argument, "must be an AWSDate (YYYY-MM-DD, UTC)"))?;
    // The assessment records' store (SQL Server's `date`) has no other days.
    if !(SQL_MIN_DATE..=SQL_MAX_DATE).contains(&day) {
        return Err(invalid(
            argument,
            format!("must be a day from {SQL_MIN_DATE} to {SQL_MAX_DATE}"),
        ));
    }
    Ok(day)
}
