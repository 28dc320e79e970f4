//! The C ABI of `legacy-shim/include/legacy_assessment.h`, transcribed: its
//! structs and the types of its functions. Both ways of loading an
//! implementation (`ffi.rs`: a shared library; `clr.rs`: a .NET assembly)
//! yield pointers of these types.

use std::ffi::{c_char, c_int};
use std::marker::{PhantomData, PhantomPinned};

/// The ABI version this crate is written against (`LA_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

/// Opaque `la_engine` (the Nomicon's pattern: not constructible, not `Send`/`Sync`, `!Unpin`).
#[repr(C)]
pub struct LaEngine {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque `la_result`.
#[repr(C)]
pub struct LaResult {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

#[repr(C)]
pub struct LaStudentContext {
    pub grade: i32,
    pub reading_level: f64,
}

#[repr(C)]
pub struct LaAssessmentRow {
    /// Borrowed for the call: points into a `CString` the caller keeps alive.
    pub id: *const c_char,
    pub assessment_type: i32,
    pub administered_at_unix_ms: i64,
    pub raw_score: f64,
    pub items_attempted: i32,
    pub items_correct: i32,
    pub duration_seconds: i32,
}

#[repr(C)]
pub struct LaScoredAssessment {
    /// Borrowed from the result: valid until `la_result_free`.
    pub id: *const c_char,
    pub id_len: usize,
    pub scaled_score: f64,
    pub percentile: f64,
    pub band: i32,
    pub has_wcpm: i32,
    pub wcpm: f64,
    pub accuracy: f64,
    pub flags: u32,
}

impl LaScoredAssessment {
    pub fn zeroed() -> Self {
        LaScoredAssessment {
            id: std::ptr::null(),
            id_len: 0,
            scaled_score: 0.0,
            percentile: 0.0,
            band: 0,
            has_wcpm: 0,
            wcpm: 0.0,
            accuracy: 0.0,
            flags: 0,
        }
    }
}

/// The component's process-wide handle counters, as `la_stats` fills them
/// in (and as a worker reports them to its supervisor).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NativeStats {
    pub engines_opened: u64,
    pub engines_closed: u64,
    pub results_opened: u64,
    pub results_closed: u64,
    pub score_calls: u64,
    /// Releases of unknown or already-released handles. Zero unless a bug.
    pub violations: u64,
}

pub(super) type AbiVersionFn = unsafe extern "C" fn() -> u32;
pub(super) type EngineOpenFn = unsafe extern "C" fn(*const c_char, *mut *mut LaEngine) -> c_int;
pub(super) type EngineCloseFn = unsafe extern "C" fn(*mut LaEngine) -> c_int;
pub(super) type ScoreFn = unsafe extern "C" fn(
    *mut LaEngine,
    *const LaStudentContext,
    *const LaAssessmentRow,
    usize,
    *mut *mut LaResult,
) -> c_int;
pub(super) type ResultCountFn = unsafe extern "C" fn(*const LaResult) -> usize;
pub(super) type ResultGetFn =
    unsafe extern "C" fn(*const LaResult, usize, *mut LaScoredAssessment) -> c_int;
pub(super) type ResultFreeFn = unsafe extern "C" fn(*mut LaResult) -> c_int;
pub(super) type LastErrorFn = unsafe extern "C" fn(*mut c_char, usize) -> usize;
pub(super) type StatsFn = unsafe extern "C" fn(*mut NativeStats) -> c_int;
