//! Prints the module import graph of every crate in the workspace and fails
//! (exit 1) if two modules import each other, directly or around a loop.
//! See `devstack::import_graph` for what counts as an import.
//!
//! ```sh
//! cargo run -p devstack --bin import-graph            # this workspace
//! cargo run -p devstack --bin import-graph -- --edges # and every edge
//! ```

use std::path::PathBuf;

use clap::Parser;
use devstack::import_graph::{CrateGraph, crate_roots, packages};

#[derive(Debug, Parser)]
#[command(about = "Check that no two modules of any crate in the workspace import each other")]
struct Args {
    /// The workspace's root directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    workspace: PathBuf,
    /// Print every import between sibling modules, not only the cycles.
    #[arg(long)]
    edges: bool,
}

fn main() {
    let args = Args::parse();
    let root = args.workspace.canonicalize().unwrap_or(args.workspace);
    let mut crates = 0;
    let mut modules = 0;
    let mut cycles = 0;
    for package in packages(&root) {
        for crate_root in crate_roots(&package) {
            let shown = crate_root
                .strip_prefix(&root)
                .unwrap_or(&crate_root)
                .display()
                .to_string();
            let graph = match CrateGraph::read(&crate_root) {
                Ok(graph) => graph,
                Err(e) => {
                    eprintln!("import-graph: {e}");
                    std::process::exit(2);
                }
            };
            crates += 1;
            modules += graph.module_count();
            if args.edges {
                for edge in graph.edges() {
                    println!("{shown}: {}: {} -> {}", edge.parent, edge.from, edge.to);
                }
            }
            for cycle in graph.cycles() {
                cycles += 1;
                println!(
                    "{shown}: CYCLE in {}: {} import each other",
                    cycle.parent,
                    cycle.modules.join(", ")
                );
            }
        }
    }
    println!("import-graph: {crates} crates, {modules} modules, {cycles} cycles");
    if cycles > 0 {
        std::process::exit(1);
    }
}
