//! The loaded legacy component: a shared library (every symbol resolved once,
//! at load, into plain function pointers) or a .NET assembly hosted by
//! `clr.rs`; either way the same table of the header's entry points (`abi.rs`).
//!
//! Nothing outside `legacy` sees these types; `handle.rs` wraps them in owners.

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};

pub use crate::abi::{
    ABI_VERSION, LaAssessmentRow, LaEngine, LaResult, LaScoredAssessment, LaStudentContext,
    NativeStats,
};
use crate::abi::{
    AbiVersionFn, EngineCloseFn, EngineOpenFn, LastErrorFn, ResultCountFn, ResultFreeFn,
    ResultGetFn, ScoreFn, StatsFn,
};
use crate::error::{LegacyError, NativeStatus};

/// The loaded legacy library and its resolved entry points.
///
/// The function pointers are only valid while `_code` keeps them loaded; they
/// are visible only inside `legacy`, and every native handle owner keeps an `Arc` of this
/// struct, so a shared library is unloaded only after the last handle is released
/// (a .NET assembly stays for the life of the process).
pub struct NativeLibrary {
    path: PathBuf,
    // The raw entry points, for `handle.rs` only. Each is `unsafe` to call with
    // the preconditions the header states beside its declaration.
    pub(super) engine_open: EngineOpenFn,
    pub(super) engine_close: EngineCloseFn,
    pub(super) score: ScoreFn,
    pub(super) result_count: ResultCountFn,
    pub(super) result_get: ResultGetFn,
    pub(super) result_free: ResultFreeFn,
    last_error: LastErrorFn,
    /// Optional: the production component may not export its counters.
    stats: Option<StatsFn>,
    // Declared last so it is dropped last.
    _code: LoadedCode,
}

/// What keeps the entry points valid.
enum LoadedCode {
    /// A shared library, unloaded when the last `NativeLibrary` of it drops.
    Shared(#[allow(dead_code)] libloading::Library),
    /// A .NET assembly in this process's runtime, which lives as long as the process.
    Clr,
}

impl std::fmt::Debug for NativeLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeLibrary")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Resolves one symbol into a copied function pointer.
///
/// # Safety
/// `T` must be the exact function-pointer type the header declares for `name`.
unsafe fn symbol<T: Copy>(
    library: &libloading::Library,
    path: &Path,
    name: &'static str,
) -> Result<T, LegacyError> {
    // SAFETY: the caller guarantees `T` matches the header's declaration of `name`;
    // the copied pointer is kept only inside `NativeLibrary`, beside the library.
    let found = unsafe { library.get::<T>(name.as_bytes()) };
    found
        .map(|sym| *sym)
        .map_err(|source| LegacyError::MissingSymbol {
            path: path.to_path_buf(),
            symbol: name,
            source,
        })
}

impl NativeLibrary {
    /// Loads the library at `path` with every symbol bound now (`RTLD_NOW`),
    /// checks its ABI version and resolves every entry point.
    pub fn load(path: &Path) -> Result<Self, LegacyError> {
        if path.extension().is_some_and(|e| e == "dll") {
            return Self::host_assembly(path);
        }
        use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading runs the library's initialisers. The legacy component's
        // contract (the header) is that loading has no side effects beyond static
        // initialisation, and its termination routines are safe to run on unload,
        // which happens only after every handle (each holding an Arc of this
        // struct) is released.
        let library: libloading::Library =
            unsafe { UnixLibrary::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
                .map_err(|source| LegacyError::Load {
                    path: path.to_path_buf(),
                    source,
                })?
                .into();

        // SAFETY: (this and every `symbol` call below) each type alias in abi.rs is transcribed
        // from the declaration of the same name in legacy_assessment.h.
        let abi_version: AbiVersionFn = unsafe { symbol(&library, path, "la_abi_version") }?;
        // SAFETY: `la_abi_version` takes nothing and returns a value; no preconditions.
        let found = unsafe { abi_version() };
        if found != ABI_VERSION {
            return Err(LegacyError::AbiMismatch {
                path: path.to_path_buf(),
                found,
                expected: ABI_VERSION,
            });
        }
        // SAFETY: see above: types transcribed from the header.
        let lib = unsafe {
            NativeLibrary {
                path: path.to_path_buf(),
                engine_open: symbol(&library, path, "la_engine_open")?,
                engine_close: symbol(&library, path, "la_engine_close")?,
                score: symbol(&library, path, "la_score")?,
                result_count: symbol(&library, path, "la_result_count")?,
                result_get: symbol(&library, path, "la_result_get")?,
                result_free: symbol(&library, path, "la_result_free")?,
                last_error: symbol(&library, path, "la_last_error_message")?,
                stats: symbol(&library, path, "la_stats_get").ok(),
                _code: LoadedCode::Shared(library),
            }
        };
        Ok(lib)
    }

    /// The component as a .NET assembly, hosted through hostfxr (see `clr.rs`).
    fn host_assembly(path: &Path) -> Result<Self, LegacyError> {
        let entry = crate::clr::load(path)?;
        // SAFETY: `la_abi_version` takes nothing and returns a value; the pointer is
        // valid for the life of the process (the runtime is never unloaded).
        let found = unsafe { (entry.abi_version)() };
        if found != ABI_VERSION {
            return Err(LegacyError::AbiMismatch {
                path: path.to_path_buf(),
                found,
                expected: ABI_VERSION,
            });
        }
        Ok(NativeLibrary {
            path: path.to_path_buf(),
            engine_open: entry.engine_open,
            engine_close: entry.engine_close,
            score: entry.score,
            result_count: entry.result_count,
            result_get: entry.result_get,
            result_free: entry.result_free,
            last_error: entry.last_error,
            stats: Some(entry.stats),
            _code: LoadedCode::Clr,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This thread's last native error message (the header's thread-local
    /// contract: call it on the thread whose call just failed).
    pub fn last_error_message(&self) -> String {
        let mut buf = [0 as c_char; 512];
        // SAFETY: `buf` is caller-owned and `buf.len()` bytes long; the function
        // writes at most that many bytes, NUL included, and keeps no pointer.
        let full_len = unsafe { (self.last_error)(buf.as_mut_ptr(), buf.len()) };
        let copied = full_len.min(buf.len() - 1);
        let bytes: Vec<u8> = buf[..copied].iter().map(|&c| c as u8).collect();
        let mut message = String::from_utf8_lossy(&bytes).into_owned();
        if full_len > copied {
            message.push_str("...");
        }
        message
    }

    /// Turns a native status into a `Result`, attaching this thread's message.
    pub fn check(&self, operation: &'static str, raw: c_int) -> Result<(), LegacyError> {
        match NativeStatus::from_raw(raw) {
            NativeStatus::Ok => Ok(()),
            status => Err(LegacyError::Native {
                operation,
                status,
                message: self.last_error_message(),
            }),
        }
    }

    /// Process-wide handle counters, when the library exports them.
    pub fn stats(&self) -> Option<NativeStats> {
        let stats_fn = self.stats?;
        let mut out = NativeStats::default();
        // SAFETY: `out` is caller-owned storage of the header's `la_stats` layout;
        // the function only writes into it.
        let raw = unsafe { stats_fn(&mut out) };
        (NativeStatus::from_raw(raw) == NativeStatus::Ok).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim's registry is the instrument every bridge test reads, so check
    /// it first: a second release is refused, counted, and frees nothing.
    #[test]
    fn the_shim_detects_a_double_release_without_touching_memory() {
        let lib = NativeLibrary::load(Path::new(legacy_shim::SHIM_PATH)).expect("load");
        let before = lib.stats().expect("stats");
        let mut engine: *mut LaEngine = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated config and out-pointer.
        let status = unsafe { (lib.engine_open)(c"".as_ptr(), &mut engine) };
        assert_eq!(NativeStatus::from_raw(status), NativeStatus::Ok);
        // SAFETY: `engine` is live and released once here.
        let first = unsafe { (lib.engine_close)(engine) };
        assert_eq!(NativeStatus::from_raw(first), NativeStatus::Ok);
        // SAFETY: deliberately a double release: the shim's contract is to look
        // the pointer up in its registry without dereferencing it.
        let second = unsafe { (lib.engine_close)(engine) };
        assert_eq!(NativeStatus::from_raw(second), NativeStatus::UnknownHandle);
        assert!(lib.last_error_message().contains("is not open"));
        let after = lib.stats().expect("stats");
        assert_eq!(after.violations, before.violations + 1);
        assert_eq!(after.engines_closed, before.engines_closed + 1);
    }
}
