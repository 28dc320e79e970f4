//! One owner per native handle, modelled on rusqlite's `InnerConnection`:
//!
//! * the raw pointer lives in exactly one owner and never escapes it;
//! * owners are neither `Clone` nor `Copy`;
//! * `Drop` releases the handle exactly once, on every path, panics included;
//! * an explicit `close()`/`free()` returns the native status and nulls the
//!   pointer, so the `Drop` that follows is a no-op.
//!
//! A `ResultHandle<'e>` borrows the `EngineHandle` that produced it, so the
//! compiler refuses to close an engine while one of its results is alive.

use std::ffi::CString;
use std::ptr;
use std::sync::Arc;

use crate::error::LegacyError;
use crate::ffi::{
    LaAssessmentRow, LaEngine, LaResult, LaScoredAssessment, LaStudentContext, NativeLibrary,
};
use crate::types::{AssessmentRow, MAX_ID_LEN, ScoredAssessment, StudentContext, validate_scored};

/// An open `la_engine`.
#[derive(Debug)]
pub struct EngineHandle {
    library: Arc<NativeLibrary>,
    /// Non-null from `open` until `close` (or `Drop`).
    raw: *mut LaEngine,
}

// SAFETY: `la_engine` is not tied to the thread that opened it (the header
// allows any thread to call la_score or la_engine_close), and the pointer is
// owned by this struct alone, so moving the owner to another thread is sound.
unsafe impl Send for EngineHandle {}
// SAFETY: the header declares la_score safe to call concurrently on one engine,
// and `&self` methods call nothing else on it. la_engine_close needs exclusive
// access, which `close(self)` and `Drop` have by construction.
unsafe impl Sync for EngineHandle {}

impl EngineHandle {
    pub fn open(library: Arc<NativeLibrary>, config: &str) -> Result<Self, LegacyError> {
        let config = CString::new(config).map_err(|_| {
            LegacyError::InvalidInput("the engine config string contains a NUL byte".to_owned())
        })?;
        let mut raw: *mut LaEngine = ptr::null_mut();
        // SAFETY: `config` is a valid NUL-terminated string borrowed for the call;
        // `raw` is a valid out-pointer. On LA_OK we own the engine it receives.
        let status = unsafe { (library.engine_open)(config.as_ptr(), &mut raw) };
        library.check("engine open", status)?;
        if raw.is_null() {
            return Err(LegacyError::MalformedOutput(
                "la_engine_open returned LA_OK and no engine".to_owned(),
            ));
        }
        Ok(EngineHandle { library, raw })
    }

    pub fn library(&self) -> &Arc<NativeLibrary> {
        &self.library
    }

    /// Closes the engine and returns the native status. `Drop` then does nothing.
    pub fn close(mut self) -> Result<(), LegacyError> {
        self.close_raw()
    }

    fn close_raw(&mut self) -> Result<(), LegacyError> {
        let raw = std::mem::replace(&mut self.raw, ptr::null_mut());
        if raw.is_null() {
            return Ok(());
        }
        // SAFETY: `raw` came from la_engine_open and was not released (we just
        // took it out of the only owner). We hold `&mut self`, so no call is using
        // it and no `ResultHandle` borrows it. It is dead after this call.
        let status = unsafe { (self.library.engine_close)(raw) };
        tracing::debug!(library = %self.library.path().display(), "legacy engine closed");
        self.library.check("engine close", status)
    }

    /// Scores `rows` and returns the native result, owned.
    pub fn score(
        &self,
        context: &StudentContext,
        rows: &[AssessmentRow],
    ) -> Result<ResultHandle<'_>, LegacyError> {
        // The ids must outlive the call: `ids` owns them until this function returns.
        let ids: Vec<CString> = rows
            .iter()
            .map(|row| CString::new(row.id.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                LegacyError::InvalidInput("an assessment id contains a NUL byte".to_owned())
            })?;
        let native_rows: Vec<LaAssessmentRow> = rows
            .iter()
            .zip(&ids)
            .map(|(row, id)| LaAssessmentRow {
                id: id.as_ptr(),
                assessment_type: crate::types::native_type(row.assessment_type),
                administered_at_unix_ms: row.administered_at_unix_ms,
                raw_score: row.raw_score,
                items_attempted: row.items_attempted,
                items_correct: row.items_correct,
                duration_seconds: row.duration_seconds,
            })
            .collect();
        let native_context = LaStudentContext {
            grade: i32::from(context.grade),
            reading_level: context.reading_level,
        };
        let mut raw: *mut LaResult = ptr::null_mut();
        // SAFETY: `self.raw` is a live engine (non-null until close, which needs
        // `&mut self`); the context, the rows and every id they point to are
        // borrowed for the call only and outlive it; `raw` is a valid out-pointer.
        // On LA_OK we own the result it receives.
        let status = unsafe {
            (self.library.score)(
                self.raw,
                &native_context,
                native_rows.as_ptr(),
                native_rows.len(),
                &mut raw,
            )
        };
        self.library.check("score", status)?;
        if raw.is_null() {
            return Err(LegacyError::MalformedOutput(
                "la_score returned LA_OK and no result".to_owned(),
            ));
        }
        Ok(ResultHandle { engine: self, raw })
    }

    /// [`EngineHandle::score`], then the result copied out (one scored
    /// assessment per row, in order) and freed before this returns: on the
    /// copy's error path too (explicitly, to surface its status; in Drop if
    /// anything panicked). Both modes score through this.
    pub fn score_copied(
        &self,
        context: &StudentContext,
        rows: &[AssessmentRow],
    ) -> Result<Vec<ScoredAssessment>, LegacyError> {
        let result = self.score(context, rows)?;
        let copied = result.copy_out(rows);
        let freed = result.free();
        let scored = copied?;
        freed.map(|()| scored)
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if let Err(error) = self.close_raw() {
            tracing::error!(%error, "releasing the legacy engine failed");
        }
    }
}

/// A live `la_result`, borrowed from the engine that produced it.
/// Neither `Send` nor `Sync` (raw pointer): it lives and dies on one thread.
#[derive(Debug)]
pub struct ResultHandle<'e> {
    engine: &'e EngineHandle,
    raw: *mut LaResult,
}

impl ResultHandle<'_> {
    /// Copies every entry into owned, validated values. The rows are the ones
    /// that were scored: the result must hold one entry per row, same ids, same order.
    pub fn copy_out(&self, rows: &[AssessmentRow]) -> Result<Vec<ScoredAssessment>, LegacyError> {
        let library = &self.engine.library;
        // SAFETY: `self.raw` is a live result (freed only by `free`/`Drop`, which
        // consume or exclusively borrow `self`); the call only reads it.
        let count = unsafe { (library.result_count)(self.raw) };
        if count != rows.len() {
            return Err(LegacyError::MalformedOutput(format!(
                "result holds {count} entries for {} rows",
                rows.len()
            )));
        }
        let mut scored = Vec::with_capacity(count);
        for (index, row) in rows.iter().enumerate() {
            let mut entry = LaScoredAssessment::zeroed();
            // SAFETY: live result as above; `index < count`; `entry` is
            // caller-owned storage of the header's layout.
            let status = unsafe { (library.result_get)(self.raw, index, &mut entry) };
            library.check("result read", status)?;
            let id = self.copy_id(index, &entry)?;
            if id != row.id {
                return Err(LegacyError::MalformedOutput(format!(
                    "entry {index} is for another assessment than row {index}"
                )));
            }
            scored.push(validate_scored(index, id, &entry)?);
        }
        Ok(scored)
    }

    /// Copies an entry's id out of the result, checking the length before reading.
    fn copy_id(&self, index: usize, entry: &LaScoredAssessment) -> Result<String, LegacyError> {
        let bad = |what: &str| LegacyError::MalformedOutput(format!("entry {index}: {what}"));
        if entry.id.is_null() {
            return Err(bad("id is NULL"));
        }
        if entry.id_len == 0 || entry.id_len > MAX_ID_LEN {
            return Err(bad("id length is outside 1..=64 bytes"));
        }
        // SAFETY: the header states `id` points to `id_len` bytes inside the
        // result, valid until la_result_free; the result is live while `self`
        // is, and we checked non-null and a bounded length before reading. The
        // slice does not outlive this function: it is copied below.
        let bytes = unsafe { std::slice::from_raw_parts(entry.id.cast::<u8>(), entry.id_len) };
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("id is not valid UTF-8"))
    }

    /// Frees the result and returns the native status. `Drop` then does nothing.
    pub fn free(mut self) -> Result<(), LegacyError> {
        self.free_raw()
    }

    fn free_raw(&mut self) -> Result<(), LegacyError> {
        let raw = std::mem::replace(&mut self.raw, ptr::null_mut());
        if raw.is_null() {
            return Ok(());
        }
        // SAFETY: `raw` came from la_score and was not released (we just took it
        // out of the only owner); nothing borrows it (copied values are owned).
        let status = unsafe { (self.engine.library.result_free)(raw) };
        self.engine.library.check("result free", status)
    }
}

impl Drop for ResultHandle<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.free_raw() {
            tracing::error!(%error, "releasing a legacy result failed");
        }
    }
}
