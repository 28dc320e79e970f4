//! What `getAssessments` answers: the GraphQL `AssessmentPage` and
//! `Assessment` types, serialized straight into the response body.
//!
//! The items hold typed values (the id as a number, times as timestamps, the
//! flags as bits, the student id shared by the page) and turn them into their
//! GraphQL strings only while the response is written: no per-item strings
//! are built, copied and dropped on the way.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, SecondsFormat, Timelike};
use serde::{Serialize, Serializer};

use legacy_bridge::{Flags, ScoredAssessment};

use crate::profiles::Profile;
use crate::sqlserver::AssessmentRecord;

/// One scored, enriched assessment: the GraphQL `Assessment` type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    /// `ID`: the row's `assessment_id`, as a string.
    #[serde(serialize_with = "as_decimal_string")]
    pub id: i64,
    /// Shared by every item of a page read for one student.
    #[serde(serialize_with = "as_str")]
    pub student_id: Arc<str>,
    pub assessment_type: &'static str,
    pub administered_at: UtcMillis,
    pub raw_score: f64,
    pub items_attempted: i32,
    pub items_correct: i32,
    pub duration_seconds: i32,
    pub scaled_score: i64,
    pub percentile: i64,
    pub benchmark_band: &'static str,
    pub words_correct_per_minute: Option<f64>,
    pub accuracy: f64,
    /// `[AssessmentFlag!]!`: the names of the flags set.
    #[serde(serialize_with = "flag_names")]
    pub flags: Flags,
    pub student_grade: u8,
    pub reading_level: f64,
    pub processed_at: UtcMillis,
}

/// The GraphQL `AssessmentPage` type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssessmentPage {
    pub items: Vec<Assessment>,
    pub next_token: Option<String>,
}

impl Assessment {
    /// A record of the legacy database, as the legacy component scored it,
    /// enriched with the student's profile.
    pub fn enriched(
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
}

/// The most JSON bytes an [`Assessment`] takes besides its student id: its
/// keys and punctuation (~270), numbers at their longest (~210), both times
/// (~60), the enum strings and every flag (~100). Checked by a test against
/// the longest item.
const ASSESSMENT_FIXED_JSON_BOUND: usize = 1024;

impl Assessment {
    /// An upper bound of this item's JSON length, without serializing it:
    /// the fixed part, and the student id at six bytes a byte (`\u00XX`).
    pub fn json_len_bound(&self) -> usize {
        ASSESSMENT_FIXED_JSON_BOUND + 6 * self.student_id.len()
    }
}

impl AssessmentPage {
    /// An upper bound of this page's JSON length, without serializing it
    /// (the response-size checks need an exact count only when this passes the limit).
    pub fn json_len_bound(&self) -> usize {
        32 + self
            .items
            .iter()
            .map(|item| item.json_len_bound() + 1)
            .sum::<usize>()
            + self.next_token.as_ref().map_or(0, |t| 6 * t.len())
    }
}

/// A UTC time, written as GraphQL's `AWSDateTime` with milliseconds:
/// `2024-03-01T09:30:00.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcMillis(pub NaiveDateTime);

impl UtcMillis {
    /// The text, written into `buf`. By hand because chrono's formatter goes
    /// through `core::fmt` and allocates; the fixed layout is a few digits.
    /// `None` for what the fixed layout cannot hold (years outside
    /// 0..=9999, a leap second), which chrono writes instead.
    fn write<'b>(&self, buf: &'b mut [u8; 24]) -> Option<&'b str> {
        let t = self.0;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut v = value;
            for i in (0..digits).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year, 4);
        put(5, t.month(), 2);
        put(8, t.day(), 2);
        put(11, t.hour(), 2);
        put(14, t.minute(), 2);
        put(17, t.second(), 2);
        put(20, nanos / 1_000_000, 3);
        for (at, sep) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            buf[at] = sep;
        }
        buf[23] = b'Z';
        std::str::from_utf8(&buf[..]).ok()
    }
}

impl std::fmt::Display for UtcMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 24];
        match self.write(&mut buf) {
            Some(text) => f.write_str(text),
            None => f.write_str(&chrono_text(self.0)),
        }
    }
}

fn chrono_text(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Serialize for UtcMillis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 24];
        match self.write(&mut buf) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_str(&chrono_text(self.0)),
        }
    }
}

fn as_decimal_string<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(itoa::Buffer::new().format(*value))
}

fn as_str<S: Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

fn flag_names<S: Serializer>(flags: &Flags, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(flags.names())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate};

    use super::*;

    fn at(ms: i64) -> UtcMillis {
        match DateTime::from_timestamp_millis(ms) {
            Some(t) => UtcMillis(t.naive_utc()),
            None => panic!("{ms} ms is a time"),
        }
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        // Across SQL Server's whole datetime2 range and the edges of each field.
        let first = NaiveDate::from_ymd_opt(1, 1, 1).and_then(|d| d.and_hms_milli_opt(0, 0, 0, 0));
        let last = NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 999));
        let (Some(first), Some(last)) = (first, last) else {
            panic!("the range's ends are times");
        };
        let (lo, hi) = (
            first.and_utc().timestamp_millis(),
            last.and_utc().timestamp_millis(),
        );
        let mut samples = vec![lo, hi, 0, -1, 1, 951_782_400_000, 1_709_285_400_007];
        // A fixed-seed walk over the range (xorshift): no two runs differ.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(lo + (x % (hi - lo) as u64) as i64);
        }
        for ms in samples {
            let t = at(ms);
            assert_eq!(t.to_string(), chrono_text(t.0), "{ms} ms");
            let json = serde_json::to_string(&t).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", chrono_text(t.0)), "{ms} ms");
        }
    }

    #[test]
    fn times_the_fixed_layout_cannot_hold_are_written_by_chrono() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .map(UtcMillis);
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(UtcMillis);
        for t in [leap, far].into_iter().flatten() {
            assert_eq!(t.to_string(), chrono_text(t.0));
        }
    }

    #[test]
    fn the_json_length_bound_holds_for_the_longest_item() {
        // Every number at its longest, every flag, the longest enum strings,
        // and a student id that escapes to six bytes a byte.
        let escaped: Arc<str> = Arc::from("\u{1}".repeat(64));
        let item = Assessment {
            id: i64::MIN,
            student_id: escaped.clone(),
            assessment_type: "PHONOLOGICAL_AWARENESS",
            administered_at: at(-62_135_596_800_000),
            raw_score: -f64::MAX,
            items_attempted: i32::MIN,
            items_correct: i32::MIN,
            duration_seconds: i32::MIN,
            scaled_score: i64::MIN,
            percentile: i64::MIN,
            benchmark_band: "WELL_BELOW",
            words_correct_per_minute: Some(-f64::MIN_POSITIVE),
            accuracy: -1.234_567_890_123_456_7e-300,
            flags: Flags::LOW_ACCURACY | Flags::RAPID_GUESSING | Flags::BELOW_READING_LEVEL,
            student_grade: u8::MAX,
            reading_level: -f64::MAX,
            processed_at: at(253_402_300_799_999),
        };
        let item_len = serde_json::to_string(&item)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        assert!(
            item_len <= item.json_len_bound(),
            "{item_len} > {}",
            item.json_len_bound()
        );
        let page = AssessmentPage {
            items: vec![item.clone(), item],
            next_token: Some(escaped.to_string()),
        };
        let page_len = serde_json::to_string(&page)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        assert!(
            page_len <= page.json_len_bound(),
            "{page_len} > {}",
            page.json_len_bound()
        );
        // Not vacuous: within twice the real length.
        assert!(page.json_len_bound() < 2 * page_len + 2048);
    }

    #[test]
    fn an_item_is_written_with_graphql_names_and_strings() {
        let item = Assessment {
            id: 1042,
            student_id: Arc::from("stu-0001"),
            assessment_type: "ORAL_READING_FLUENCY",
            administered_at: at(1_709_285_400_007),
            raw_score: 88.5,
            items_attempted: 40,
            items_correct: 37,
            duration_seconds: 60,
            scaled_score: 512,
            percentile: 61,
            benchmark_band: "AT",
            words_correct_per_minute: Some(92.3),
            accuracy: 0.925,
            flags: Flags::RAPID_GUESSING | Flags::BELOW_READING_LEVEL,
            student_grade: 3,
            reading_level: 3.2,
            processed_at: at(1_764_633_600_000),
        };
        let json = serde_json::to_value(&item).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "1042", "studentId": "stu-0001",
                "assessmentType": "ORAL_READING_FLUENCY",
                "administeredAt": "2024-03-01T09:30:00.007Z",
                "rawScore": 88.5, "itemsAttempted": 40, "itemsCorrect": 37,
                "durationSeconds": 60, "scaledScore": 512, "percentile": 61,
                "benchmarkBand": "AT", "wordsCorrectPerMinute": 92.3, "accuracy": 0.925,
                "flags": ["RAPID_GUESSING", "BELOW_READING_LEVEL"],
                "studentGrade": 3, "readingLevel": 3.2,
                "processedAt": "2025-12-02T00:00:00.000Z",
            })
        );
    }
}
