//! Owned Rust values that cross the legacy boundary: what we send (student
//! context, raw rows) and what we keep (scored assessments, validated).

use crate::error::LegacyError;
use crate::ffi::LaScoredAssessment;

pub use assessments_common::rules::AssessmentType;

/// Longest assessment id the ABI accepts, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Most rows one scoring call accepts.
pub const MAX_ROWS_PER_CALL: usize = 10_000;
/// Highest grade (0 is kindergarten).
pub const MAX_GRADE: u8 = 12;

/// The ABI value of an assessment type (`la_assessment_type`).
pub(crate) fn native_type(assessment_type: AssessmentType) -> i32 {
    match assessment_type {
        AssessmentType::OralReadingFluency => 1,
        AssessmentType::ReadingComprehension => 2,
        AssessmentType::PhonologicalAwareness => 3,
    }
}

/// The student's context for scoring, from the profile.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudentContext {
    /// 0 (kindergarten) ..= 12.
    pub grade: u8,
    /// Grade-equivalent reading level, 0.0 ..= 13.0.
    pub reading_level: f64,
}

/// One raw assessment record as the legacy database stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AssessmentRow {
    pub id: String,
    pub assessment_type: AssessmentType,
    pub administered_at_unix_ms: i64,
    pub raw_score: f64,
    pub items_attempted: i32,
    pub items_correct: i32,
    pub duration_seconds: i32,
}

/// Benchmark band from the percentile (`la_band`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Band {
    WellBelow,
    Below,
    At,
    Above,
}

impl Band {
    fn from_native(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Band::WellBelow),
            1 => Some(Band::Below),
            2 => Some(Band::At),
            3 => Some(Band::Above),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::WellBelow => "WELL_BELOW",
            Band::Below => "BELOW",
            Band::At => "AT",
            Band::Above => "ABOVE",
        }
    }
}

/// Flags the legacy component raises on a scored assessment (`LA_FLAG_*`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Flags(u32);

impl Flags {
    pub const LOW_ACCURACY: Flags = Flags(0x1);
    pub const RAPID_GUESSING: Flags = Flags(0x2);
    pub const BELOW_READING_LEVEL: Flags = Flags(0x4);
    const NAMED: [(Flags, &'static str); 3] = [
        (Flags::LOW_ACCURACY, "LOW_ACCURACY"),
        (Flags::RAPID_GUESSING, "RAPID_GUESSING"),
        (Flags::BELOW_READING_LEVEL, "BELOW_READING_LEVEL"),
    ];
    const ALL_BITS: u32 = 0x7;

    pub fn empty() -> Self {
        Flags(0)
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// The names of the raised flags, in a stable order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// What the legacy component computed for one row, copied out of the native
/// result and validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredAssessment {
    pub id: String,
    /// 100 ..= 900.
    pub scaled_score: f64,
    /// 1 ..= 99.
    pub percentile: f64,
    pub band: Band,
    /// Words correct per minute, for fluency assessments only.
    pub wcpm: Option<f64>,
    /// 0 ..= 1.
    pub accuracy: f64,
    pub flags: Flags,
}

/// Checks the request side before anything crosses the boundary: what the
/// native side could not even receive (interior NUL, overlong id, too many
/// rows) is our error, not the component's.
pub(super) fn validate_input(
    context: &StudentContext,
    rows: &[AssessmentRow],
) -> Result<(), LegacyError> {
    if context.grade > MAX_GRADE {
        return Err(LegacyError::InvalidInput(format!(
            "grade {} is above {MAX_GRADE}",
            context.grade
        )));
    }
    if !(0.0..=13.0).contains(&context.reading_level) {
        return Err(LegacyError::InvalidInput(
            "reading level must be a number within 0..13".to_owned(),
        ));
    }
    if rows.len() > MAX_ROWS_PER_CALL {
        return Err(LegacyError::InvalidInput(format!(
            "{} rows exceed the {MAX_ROWS_PER_CALL} a call accepts",
            rows.len()
        )));
    }
    for (i, row) in rows.iter().enumerate() {
        if row.id.is_empty() || row.id.len() > MAX_ID_LEN || row.id.contains('\0') {
            return Err(LegacyError::InvalidInput(format!(
                "rows[{i}].id must be 1..={MAX_ID_LEN} bytes without NUL"
            )));
        }
    }
    Ok(())
}

fn in_range(value: f64, lo: f64, hi: f64) -> bool {
    value.is_finite() && (lo..=hi).contains(&value)
}

/// Validates the scalars of one native entry whose id has already been read.
/// Malformed values are errors, never passed on.
pub(super) fn validate_scored(
    index: usize,
    id: String,
    raw: &LaScoredAssessment,
) -> Result<ScoredAssessment, LegacyError> {
    let bad = |what: &str| LegacyError::MalformedOutput(format!("entry {index}: {what}"));
    let band = Band::from_native(raw.band).ok_or_else(|| bad("band is not a la_band value"))?;
    let wcpm = match raw.has_wcpm {
        0 => None,
        1 => Some(raw.wcpm),
        _ => return Err(bad("has_wcpm is neither 0 nor 1")),
    };
    let scored = ScoredAssessment {
        id,
        scaled_score: raw.scaled_score,
        percentile: raw.percentile,
        band,
        wcpm,
        accuracy: raw.accuracy,
        flags: Flags(raw.flags),
    };
    check_scored(index, &scored)?;
    Ok(scored)
}

/// The ranges every scored assessment must respect, wherever it came from
/// (the native result, or a worker process's answer).
/// The most words correct per minute an entry may say: above any reader's
/// oral reading rate (fluent adults read aloud at 150–250). A bound, with the
/// answer's rounding to 0.1, on what a component can hide in the low bits of
/// the value (docs/security.md, N9).
pub const MAX_WCPM: f64 = 600.0;

pub(super) fn check_scored(index: usize, scored: &ScoredAssessment) -> Result<(), LegacyError> {
    let bad = |what: &str| LegacyError::MalformedOutput(format!("entry {index}: {what}"));
    if !in_range(scored.scaled_score, 100.0, 900.0) {
        return Err(bad("scaled_score is not a number within 100..900"));
    }
    if !in_range(scored.percentile, 1.0, 99.0) {
        return Err(bad("percentile is not a number within 1..99"));
    }
    if !in_range(scored.accuracy, 0.0, 1.0) {
        return Err(bad("accuracy is not a number within 0..1"));
    }
    if scored.wcpm.is_some_and(|w| !in_range(w, 0.0, MAX_WCPM)) {
        return Err(bad("wcpm is not a number within 0..600"));
    }
    if scored.flags.0 & !Flags::ALL_BITS != 0 {
        return Err(bad("flags has undefined bits"));
    }
    if scored.id.is_empty() || scored.id.len() > MAX_ID_LEN {
        return Err(bad("id length is outside 1..=64 bytes"));
    }
    Ok(())
}
