//! The legacy component as a .NET assembly (`LEGACY_LIB_PATH=.../LegacyApi.dll`),
//! hosted through hostfxr (`netcorehost`): the same table of entry points a
//! shared library yields, so everything above (`handle.rs`'s owners, copy-out
//! and validation, process isolation, the counters) is the same code.
//!
//! The runtime starts once per process and is never shut down: CoreCLR can
//! neither be unloaded nor started twice in one process. Its memory comes back
//! only when the process ends, which is why process isolation is the
//! documented default for a .NET component.
//!
//! What the host needs: `DOTNET_ROOT` (the runtime's directory, holding
//! `host/fxr/<version>/libhostfxr.so` and `shared/Microsoft.NETCore.App/`),
//! and `<assembly>.runtimeconfig.json` beside the assembly. The assembly
//! exports the header's functions as static methods of `Amira.Legacy.Exports`,
//! each with a delegate type of the same shape (`legacy-shim/dotnet/LegacyApi.cs`).

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use netcorehost::hostfxr::{AssemblyDelegateLoader, FnPtr, Hostfxr, RawFnPtr};
use netcorehost::pdcstring::PdCString;

use crate::abi::{
    AbiVersionFn, EngineCloseFn, EngineOpenFn, LaAssessmentRow, LaEngine, LaResult,
    LaScoredAssessment, LaStudentContext, LastErrorFn, NativeStats, ResultCountFn, ResultFreeFn,
    ResultGetFn, ScoreFn, StatsFn,
};
use crate::error::LegacyError;

/// The entry points of the hosted assembly: function pointers the runtime
/// keeps valid for the life of the process.
#[derive(Clone, Copy)]
pub(super) struct ClrEntryPoints {
    pub abi_version: AbiVersionFn,
    pub engine_open: EngineOpenFn,
    pub engine_close: EngineCloseFn,
    pub score: ScoreFn,
    pub result_count: ResultCountFn,
    pub result_get: ResultGetFn,
    pub result_free: ResultFreeFn,
    pub last_error: LastErrorFn,
    pub stats: StatsFn,
}

/// The assembly this process hosts, once started.
static HOSTED: Mutex<Option<(PathBuf, ClrEntryPoints)>> = Mutex::new(None);

/// The managed type that exports the header's functions.
const EXPORTS: &str = "Amira.Legacy.Exports";

/// Starts the runtime (first call) and resolves every entry point of `assembly`;
/// later calls with the same assembly get the same table.
pub(super) fn load(assembly: &Path) -> Result<ClrEntryPoints, LegacyError> {
    let fail = |reason: String| LegacyError::Hosting {
        path: assembly.to_path_buf(),
        reason,
    };
    if !assembly.is_file() {
        return Err(fail("no such assembly".to_owned()));
    }
    let runtime_config = assembly.with_extension("runtimeconfig.json");
    if !runtime_config.is_file() {
        return Err(fail(format!("no {} beside it", runtime_config.display())));
    }
    let mut hosted = HOSTED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((path, entry)) = hosted.as_ref() {
        if path == assembly {
            return Ok(*entry);
        }
        return Err(fail(format!(
            "this process already hosts {}; a process hosts one .NET runtime and one component",
            path.display()
        )));
    }
    let dotnet_root = std::env::var_os("DOTNET_ROOT")
        .map(PathBuf::from)
        .ok_or_else(|| fail("DOTNET_ROOT is not set (the .NET runtime's directory)".to_owned()))?;
    let hostfxr_path = hostfxr_in(&dotnet_root).ok_or_else(|| {
        fail(format!(
            "no host/fxr/<version>/libhostfxr.so under DOTNET_ROOT ({})",
            dotnet_root.display()
        ))
    })?;
    let stem = assembly
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| fail("the assembly's file name is not UTF-8".to_owned()))?;

    let hostfxr = Hostfxr::load_from_path(&hostfxr_path)
        .map_err(|e| fail(format!("loading {}: {e}", hostfxr_path.display())))?;
    let pd = |p: &Path| {
        PdCString::from_os_str(p.as_os_str()).map_err(|e| fail(format!("{}: {e}", p.display())))
    };
    let context = hostfxr
        .initialize_for_runtime_config_with_dotnet_root(&pd(&runtime_config)?, &pd(&dotnet_root)?)
        .map_err(|e| fail(format!("starting the runtime: {e}")))?;
    let loader = context
        .get_delegate_loader_for_assembly(pd(assembly)?)
        .map_err(|e| fail(format!("loading the assembly: {e}")))?;
    let entry = resolve(&loader, stem).map_err(fail)?;
    // The runtime must outlive every pointer above: it lives as long as the
    // process (CoreCLR cannot be unloaded), so its context is never closed.
    std::mem::forget(context);
    *hosted = Some((assembly.to_path_buf(), entry));
    Ok(entry)
}

/// The newest `host/fxr/<version>/libhostfxr.so` under `root`.
fn hostfxr_in(root: &Path) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root.join("host/fxr"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("libhostfxr.so"))
        .filter(|p| p.is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .map(|v| {
                v.split(['.', '-'])
                    .map(|n| n.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
    });
    versions.pop()
}

/// Resolves one export into the header's function-pointer type.
macro_rules! export {
    ($loader:expr, $stem:expr, $method:literal, $delegate:literal, $managed:ty => $native:ty) => {{
        let type_name = pd_str(&format!("{EXPORTS}, {}", $stem))?;
        let delegate = pd_str(&format!("{EXPORTS}+{}, {}", $delegate, $stem))?;
        let method = pd_str($method)?;
        let function = $loader
            .get_function::<$managed>(&type_name, &method, &delegate)
            .map_err(|e| format!("{EXPORTS}.{} ({}): {e}", $method, $delegate))?;
        // SAFETY: the delegate type `$delegate` in LegacyApi.cs is declared with
        // the header's signature of `$method` and `CallingConvention.Cdecl`;
        // `extern "system"` is the C calling convention on Linux, so the
        // pointer has the type `$native` names. The runtime keeps the delegate
        // alive, and the runtime lives as long as the process.
        unsafe { std::mem::transmute::<RawFnPtr, $native>(function.as_ptr()) }
    }};
}

fn pd_str(text: &str) -> Result<PdCString, String> {
    PdCString::from_os_str(text).map_err(|e| format!("{text}: {e}"))
}

fn resolve(loader: &AssemblyDelegateLoader, stem: &str) -> Result<ClrEntryPoints, String> {
    Ok(ClrEntryPoints {
        abi_version: export!(loader, stem, "la_abi_version", "AbiVersionFn",
            fn() -> u32 => AbiVersionFn),
        engine_open: export!(loader, stem, "la_engine_open", "EngineOpenFn",
            fn(*const c_char, *mut *mut LaEngine) -> c_int => EngineOpenFn),
        engine_close: export!(loader, stem, "la_engine_close", "EngineCloseFn",
            fn(*mut LaEngine) -> c_int => EngineCloseFn),
        score: export!(loader, stem, "la_score", "ScoreFn",
            fn(*mut LaEngine, *const LaStudentContext, *const LaAssessmentRow, usize, *mut *mut LaResult) -> c_int
            => ScoreFn),
        result_count: export!(loader, stem, "la_result_count", "ResultCountFn",
            fn(*const LaResult) -> usize => ResultCountFn),
        result_get: export!(loader, stem, "la_result_get", "ResultGetFn",
            fn(*const LaResult, usize, *mut LaScoredAssessment) -> c_int
            => ResultGetFn),
        result_free: export!(loader, stem, "la_result_free", "ResultFreeFn",
            fn(*mut LaResult) -> c_int => ResultFreeFn),
        last_error: export!(loader, stem, "la_last_error_message", "LastErrorMessageFn",
            fn(*mut c_char, usize) -> usize => LastErrorFn),
        stats: export!(loader, stem, "la_stats_get", "StatsGetFn",
            fn(*mut NativeStats) -> c_int => StatsFn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_hostfxr_under_the_root_is_chosen() {
        let root = std::env::temp_dir().join(format!("clr-root-{}", std::process::id()));
        for version in ["3.1.23", "6.0.5", "3.1.9"] {
            let dir = root.join("host/fxr").join(version);
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::write(dir.join("libhostfxr.so"), b"").expect("file");
        }
        std::fs::create_dir_all(root.join("host/fxr/7.0.0"))
            .expect("a version without the library");
        let found = hostfxr_in(&root);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(found, Some(root.join("host/fxr/6.0.5/libhostfxr.so")));
        assert_eq!(hostfxr_in(Path::new("/nonexistent")), None);
    }
}
