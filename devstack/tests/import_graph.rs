//! No two modules of any crate in the workspace import each other (see
//! `devstack::import_graph`; `cargo run -p devstack --bin import-graph` prints the same).

use std::path::Path;

use devstack::import_graph::{CrateGraph, crate_roots, packages};

#[test]
fn no_module_of_the_workspace_imports_one_that_imports_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let packages = packages(&root);
    for expected in ["common", "processor", "testkit", "devstack"] {
        assert!(
            packages.iter().any(|p| p.ends_with(expected)),
            "{expected} is a package: {packages:?}"
        );
    }
    let mut modules = 0;
    let mut cycles = Vec::new();
    for package in &packages {
        for crate_root in crate_roots(package) {
            let graph = CrateGraph::read(&crate_root).expect("the crate parses");
            modules += graph.module_count();
            cycles.extend(
                graph
                    .cycles()
                    .into_iter()
                    .map(|c| (crate_root.display().to_string(), c)),
            );
        }
    }
    // Every file of the workspace was read (the resolver alone has more than 40 modules).
    assert!(modules > 100, "{modules} modules");
    assert!(cycles.is_empty(), "{cycles:#?}");
}
