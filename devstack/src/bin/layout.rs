//! The workspace's shape in figures: lines of code per package (tests left
//! out), the largest files and functions of the crates that ship; fails
//! (exit 1) if a shipped crate has a file over 500 lines or a function over
//! 60 (see `devstack::layout`).
//!
//! ```sh
//! cargo run -p devstack --bin layout            # figures, and the limits checked
//! cargo run -p devstack --bin layout -- --top 20
//! ```

use std::path::{Path, PathBuf};

use clap::Parser;
use devstack::import_graph::packages;
use devstack::layout::{
    FileFigures, MAX_FILE_LINES, MAX_FN_LINES, SHIPPED, measure_file, source_files,
};

#[derive(Debug, Parser)]
#[command(about = "Lines per package, the largest files and functions; the shipped crates' limits")]
struct Args {
    /// The workspace's root directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    workspace: PathBuf,
    /// How many of the largest files and functions to list.
    #[arg(long, default_value_t = 8)]
    top: usize,
}

fn package_name(root: &Path, package: &Path) -> String {
    let relative = package.strip_prefix(root).unwrap_or(package);
    match relative.to_string_lossy().as_ref() {
        "" => ".".to_owned(),
        other => other.to_owned(),
    }
}

fn main() {
    let args = Args::parse();
    let root = args.workspace.canonicalize().unwrap_or(args.workspace);
    let mut shipped: Vec<FileFigures> = Vec::new();
    println!("lines of code (tests left out), per package:");
    for package in packages(&root) {
        let name = package_name(&root, &package);
        let mut lines = 0;
        for file in source_files(&package) {
            let shown = file.strip_prefix(&root).unwrap_or(&file).to_owned();
            match measure_file(&file, shown) {
                Ok(figures) => {
                    lines += figures.lines;
                    if SHIPPED.contains(&name.as_str()) {
                        shipped.push(figures);
                    }
                }
                Err(e) => {
                    eprintln!("layout: {e}");
                    std::process::exit(2);
                }
            }
        }
        let mark = if SHIPPED.contains(&name.as_str()) {
            "  (ships)"
        } else {
            ""
        };
        println!("  {lines:>6}  {name}{mark}");
    }
    std::process::exit(report(&shipped, args.top));
}

/// Prints the shipped crates' largest files and functions and what breaks
/// a limit; the exit status.
fn report(files: &[FileFigures], top: usize) -> i32 {
    let mut by_size: Vec<&FileFigures> = files.iter().collect();
    by_size.sort_by_key(|f| std::cmp::Reverse(f.lines));
    println!("largest files that ship (limit {MAX_FILE_LINES}):");
    for f in by_size.iter().take(top) {
        println!("  {:>6}  {}", f.lines, f.path.display());
    }
    let mut functions: Vec<(usize, String)> = (files.iter())
        .flat_map(|f| {
            (f.functions.iter())
                .map(move |(name, line, len)| (*len, format!("{}:{line} {name}", f.path.display())))
        })
        .collect();
    functions.sort_by_key(|f| std::cmp::Reverse(f.0));
    println!("longest functions that ship (limit {MAX_FN_LINES}):");
    for (len, at) in functions.iter().take(top) {
        println!("  {len:>6}  {at}");
    }
    let long_files = by_size.iter().filter(|f| f.lines > MAX_FILE_LINES).count();
    let long_fns = functions
        .iter()
        .filter(|(len, _)| *len > MAX_FN_LINES)
        .count();
    println!(
        "layout: {} files and {} functions ship; {long_files} files over {MAX_FILE_LINES} lines, \
         {long_fns} functions over {MAX_FN_LINES}",
        files.len(),
        functions.len()
    );
    i32::from(long_files + long_fns > 0)
}
