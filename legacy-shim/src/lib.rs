//! Where the mocked legacy component and its variants were built (by this
//! crate's build script, from the C++ and C# sources beside this file). A
//! test-only crate: the tests, the playground and the benchmarks depend on it;
//! the resolver does not, so nothing of it is in the binary that ships, and a
//! deploy must name its component in `LEGACY_LIB_PATH`.

/// The mock (`legacy_shim.cpp`): what the tests and the playground load.
pub const SHIM_PATH: &str = env!("LEGACY_SHIM_PATH");
/// The same code reporting ABI version 99.
pub const ABI_MISMATCH_PATH: &str = env!("LEGACY_SHIM_ABI_MISMATCH_PATH");
/// The same code without `la_score`.
pub const MISSING_SYMBOL_PATH: &str = env!("LEGACY_SHIM_MISSING_SYMBOL_PATH");
/// The same code, hostile at load (`sandbox_probe.hpp`): the sandbox's test.
pub const SANDBOX_PROBE_PATH: &str = env!("LEGACY_SHIM_SANDBOX_PROBE_PATH");
/// The same code, hostile at engine open and on every call, and scoring
/// correctly (`hostile.hpp`): the worker sandbox's test.
pub const HOSTILE_PATH: &str = env!("LEGACY_SHIM_HOSTILE_PATH");
/// The .NET component (`dotnet/`): `LegacyApi.dll` beside its runtimeconfig
/// and unmanaged core. Empty when `mcs` was not installed at build time.
pub const DOTNET_ASSEMBLY_PATH: &str = env!("LEGACY_DOTNET_ASSEMBLY");
