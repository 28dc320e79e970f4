//! Compiles the mocked legacy component (this directory) into shared
//! libraries for the tests, the playground and the benchmarks (never for the
//! product: the resolver's own build compiles no native code), so `cargo test`
//! needs no manual step:
//!
//! * `LEGACY_SHIM_PATH`: the shim;
//! * `LEGACY_SHIM_ABI_MISMATCH_PATH`: the same code reporting ABI version 99;
//! * `LEGACY_SHIM_MISSING_SYMBOL_PATH`: the same code without `la_score`;
//! * `LEGACY_SHIM_SANDBOX_PROBE_PATH`: the same code, hostile at load
//!   (`sandbox_probe.hpp`);
//! * `LEGACY_SHIM_HOSTILE_PATH`: the same code, hostile at engine open and on
//!   every call (`hostile.hpp`).
//!
//! The last four exist only for the loader's and the sandbox's tests. And the legacy
//! component as .NET (`legacy-shim/dotnet/`, issue #15):
//!
//! * `LEGACY_DOTNET_ASSEMBLY`: `LegacyApi.dll` (compiled with `mcs`) beside its
//!   runtimeconfig and its unmanaged core `libassessment_core.so`; empty when
//!   `mcs` is not installed (`scripts/test` installs it, and sets
//!   `LEGACY_DOTNET_REQUIRED=1` so that the .NET tests fail instead of skipping).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = Path::new("src/legacy_shim.cpp");
    let include = Path::new("include");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed=src/scoring.hpp");
    println!("cargo:rerun-if-changed=src/sandbox_probe.hpp");
    println!("cargo:rerun-if-changed=src/hostile.hpp");
    println!(
        "cargo:rerun-if-changed={}",
        include.join("legacy_assessment.h").display()
    );

    let variants: [(&str, &str, &[&str]); 5] = [
        ("LEGACY_SHIM_PATH", "liblegacy_assessment.so", &[]),
        (
            "LEGACY_SHIM_ABI_MISMATCH_PATH",
            "liblegacy_assessment_abi99.so",
            &["-DLA_SHIM_ABI_VERSION=99"],
        ),
        (
            "LEGACY_SHIM_MISSING_SYMBOL_PATH",
            "liblegacy_assessment_noscore.so",
            &[
                "-DLA_SHIM_OMIT_SCORE",
                "-Wno-unused-function",
                "-Wno-unused-const-variable",
            ],
        ),
        (
            "LEGACY_SHIM_SANDBOX_PROBE_PATH",
            "liblegacy_assessment_probe.so",
            &["-DLA_SHIM_SANDBOX_PROBE"],
        ),
        (
            "LEGACY_SHIM_HOSTILE_PATH",
            "liblegacy_assessment_hostile.so",
            &["-DLA_SHIM_HOSTILE"],
        ),
    ];
    // cc finds the C++ compiler the way the rest of the build does (CXX, target, cross tools).
    let compiler = cc::Build::new().cpp(true).get_compiler();
    for (var, file, defines) in variants {
        let output = out_dir.join(file);
        compile_shared(&compiler, source, &output, &[include], defines);
        println!("cargo:rustc-env={var}={}", output.display());
    }
    build_dotnet(&compiler, &out_dir.join("dotnet"), include);
}

/// The .NET component: its unmanaged core (g++) and the managed facade (mcs).
fn build_dotnet(compiler: &cc::Tool, dir: &Path, include: &Path) {
    let root = Path::new("dotnet");
    let core = root.join("core/assessment_core.cpp");
    let facade = root.join("LegacyApi.cs");
    let config = root.join("LegacyApi.runtimeconfig.json");
    println!("cargo:rerun-if-env-changed=LEGACY_DOTNET_REQUIRED");
    for input in [&core, &facade, &config] {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    std::fs::create_dir_all(dir).expect("OUT_DIR/dotnet");
    compile_shared(
        compiler,
        &core,
        &dir.join("libassessment_core.so"),
        &[include, Path::new("src")],
        &[],
    );

    let assembly = dir.join("LegacyApi.dll");
    let compiled = Command::new("mcs")
        .args(["-target:library", "-unsafe", "-warnaserror+", "-nologo"])
        .arg(format!("-out:{}", assembly.display()))
        .arg(&facade)
        .status();
    match compiled {
        Ok(status) if status.success() => {
            std::fs::copy(&config, dir.join("LegacyApi.runtimeconfig.json"))
                .expect("copy the runtimeconfig");
            println!(
                "cargo:rustc-env=LEGACY_DOTNET_ASSEMBLY={}",
                assembly.display()
            );
        }
        Ok(status) => panic!("mcs failed on {} ({status})", facade.display()),
        Err(e) if std::env::var_os("LEGACY_DOTNET_REQUIRED").is_some() => {
            panic!("LEGACY_DOTNET_REQUIRED is set but mcs cannot run ({e}): install mono-mcs")
        }
        Err(e) => {
            println!("cargo:warning=mcs not found ({e}): the .NET legacy component is not built");
            println!("cargo:rustc-env=LEGACY_DOTNET_ASSEMBLY=");
        }
    }
}

/// Compiles one C++ source into a shared library, warnings as errors.
fn compile_shared(
    compiler: &cc::Tool,
    source: &Path,
    output: &Path,
    includes: &[&Path],
    extra: &[&str],
) {
    let mut cmd: Command = compiler.to_command();
    cmd.args([
        "-std=c++17",
        "-O1",
        "-g",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
    ])
    .args(["-Wall", "-Wextra", "-Werror"]);
    for include in includes {
        cmd.arg("-I").arg(include);
    }
    cmd.args(extra)
        .arg("-o")
        .arg(output)
        .arg(source)
        .arg("-lpthread");
    // Name the command without its environment, which Debug would print whole.
    let shown = format!(
        "{:?} {:?}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>()
    );
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run the C++ compiler ({shown}): {e}"));
    assert!(
        status.success(),
        "building {} failed: {shown}",
        source.display()
    );
}
