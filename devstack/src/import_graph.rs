//! The module import graph of every crate in the workspace, and its cycles.
//!
//! Cargo already refuses cycles between crates; this looks inside each crate.
//! `cargo-modules dependencies --acyclic` does the same with rust-analyzer's
//! full name resolution, but building it takes longer on our 2 cores than the
//! rest of the test command's compilation, so this is written by hand over
//! `syn` (parsing) and `petgraph` (strongly connected components).
//!
//! What counts: every path a module names, in `use` items, in code, and in
//! macro arguments (`crate::a::B`, `super::b::C`, a child module's name, or a
//! name brought in by a `use`), followed through the modules' `use` and
//! `pub use` items to the module that defines what it names. A module and
//! its own submodules are one unit: a module's dependencies are those of
//! every file below it, and an edge between two modules counts between the
//! children of their nearest common ancestor ("`legacy::engine` uses
//! `legacy::isolation`"). A parent re-exporting its children, or a child using
//! its parent's shared types, is containment, not a cycle.
//!
//! ```sh
//! cargo run -p devstack --bin import-graph          # edges and cycles of every crate
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A module: its path from the crate root (`[]` is the root).
type ModPath = Vec<String>;

#[derive(Debug, Default)]
struct Module {
    children: BTreeSet<String>,
    /// Names a `use` binds here, with the path they name (as written).
    bindings: HashMap<String, Vec<String>>,
    /// Glob imports (`use a::b::*`), as written.
    globs: Vec<Vec<String>>,
    /// Every path named in the module's own items (not its submodules').
    paths: Vec<Vec<String>>,
}

/// One crate's modules.
#[derive(Debug, Default)]
pub struct CrateGraph {
    /// The crate root's file, for reports.
    pub root: PathBuf,
    modules: BTreeMap<ModPath, Module>,
}

/// An import between two sibling modules of `parent`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub parent: String,
    pub from: String,
    pub to: String,
}

/// Modules that import each other, directly or around a loop (siblings of `parent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub parent: String,
    pub modules: Vec<String>,
}

impl CrateGraph {
    /// Reads the crate whose root file is `root` (`src/lib.rs`, a binary, a test).
    pub fn read(root: &Path) -> Result<CrateGraph, String> {
        let mut graph = CrateGraph {
            root: root.to_owned(),
            modules: BTreeMap::new(),
        };
        let file = parse(root)?;
        let dir = root.parent().unwrap_or(Path::new(".")).to_owned();
        graph.add_items(Vec::new(), &file.items, &dir)?;
        Ok(graph)
    }

    fn add_items(&mut self, at: ModPath, items: &[syn::Item], dir: &Path) -> Result<(), String> {
        let mut module = Module::default();
        let mut submodules = Vec::new();
        for item in items {
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    module.children.insert(name.clone());
                    submodules.push((name, m));
                }
                syn::Item::Use(u) => collect_use(&u.tree, Vec::new(), &mut module),
                other => {
                    let mut paths = PathCollector::default();
                    paths.visit_item(other);
                    module.paths.extend(paths.found);
                }
            }
        }
        // `use` items name paths too (a `use` of a sibling is an import of it).
        let named: Vec<Vec<String>> = module
            .bindings
            .values()
            .chain(module.globs.iter())
            .cloned()
            .collect();
        module.paths.extend(named);
        self.modules.insert(at.clone(), module);
        for (name, m) in submodules {
            let mut child = at.clone();
            child.push(name.clone());
            match &m.content {
                Some((_, items)) => self.add_items(child, items, &dir.join(&name))?,
                None => {
                    let file = module_file(dir, &name, m)?;
                    let parsed = parse(&file)?;
                    let child_dir = match file.file_name().and_then(|f| f.to_str()) {
                        Some("mod.rs") => file.parent().unwrap_or(dir).to_owned(),
                        _ => dir.join(&name),
                    };
                    self.add_items(child, &parsed.items, &child_dir)?;
                }
            }
        }
        Ok(())
    }

    /// The module `path`, named in module `at`, resolves to (`None`: not a
    /// module of this crate: another crate, or a std item).
    fn resolve(&self, at: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut base, rest): (ModPath, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (at.clone(), &path[1..]),
            "super" => {
                let mut base = at.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            first => {
                let module = self.modules.get(at)?;
                if module.children.contains(first) {
                    (at.clone(), path)
                } else if let Some(target) = module.bindings.get(first) {
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    return self.resolve(at, &full, depth + 1);
                } else {
                    return None;
                }
            }
        };
        for (i, segment) in rest.iter().enumerate() {
            let module = self.modules.get(&base)?;
            if module.children.contains(segment) {
                base.push(segment.clone());
                continue;
            }
            if let Some(target) = module.bindings.get(segment) {
                // A re-export: follow it from the module that has it.
                let mut full = target.clone();
                full.extend_from_slice(&rest[i + 1..]);
                return self.resolve(&base, &full, depth + 1).or(Some(base));
            }
            for glob in &module.globs {
                let mut full = glob.clone();
                full.extend_from_slice(&rest[i..]);
                if let Some(found) = self.resolve(&base, &full, depth + 1)
                    && !is_ancestor(&found, &base)
                {
                    return Some(found);
                }
            }
            // An item defined here.
            break;
        }
        Some(base)
    }

    /// Imports between siblings, each module standing for its whole subtree.
    pub fn edges(&self) -> BTreeSet<Edge> {
        let mut edges = BTreeSet::new();
        for (at, module) in &self.modules {
            for path in &module.paths {
                let Some(target) = self.resolve(at, path, 0) else {
                    continue;
                };
                let common = at.iter().zip(&target).take_while(|(a, b)| a == b).count();
                if common == at.len() || common == target.len() {
                    continue; // the same module, or one contains the other
                }
                edges.insert(Edge {
                    parent: display(&at[..common]),
                    from: at[common].clone(),
                    to: target[common].clone(),
                });
            }
        }
        edges
    }

    /// The cycles among siblings, if any.
    pub fn cycles(&self) -> Vec<Cycle> {
        let edges = self.edges();
        let mut by_parent: BTreeMap<&str, DiGraphMap<&str, ()>> = BTreeMap::new();
        for edge in &edges {
            by_parent.entry(edge.parent.as_str()).or_default().add_edge(
                edge.from.as_str(),
                edge.to.as_str(),
                (),
            );
        }
        let mut cycles = Vec::new();
        for (parent, graph) in by_parent {
            for component in tarjan_scc(&graph) {
                if component.len() > 1 {
                    let mut modules: Vec<String> =
                        component.iter().map(|m| (*m).to_owned()).collect();
                    modules.sort();
                    cycles.push(Cycle {
                        parent: parent.to_owned(),
                        modules,
                    });
                }
            }
        }
        cycles
    }

    /// How many modules (files and inline modules) the crate has.
    pub fn module_count(&self) -> usize {
        self.modules.len()
    }
}

fn is_ancestor(ancestor: &ModPath, of: &ModPath) -> bool {
    of.starts_with(ancestor)
}

fn display(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_owned()
    } else {
        format!("crate::{}", path.join("::"))
    }
}

fn parse(file: &Path) -> Result<syn::File, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    syn::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// The file of `mod name;` declared in a module whose files live in `dir`.
fn module_file(dir: &Path, name: &str, item: &syn::ItemMod) -> Result<PathBuf, String> {
    for attr in &item.attrs {
        if attr.path().is_ident("path")
            && let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            return Ok(dir.join(s.value()));
        }
    }
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| format!("no file for `mod {name};` in {}", dir.display()))
}

fn collect_use(tree: &syn::UseTree, prefix: Vec<String>, module: &mut Module) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut prefix = prefix;
            prefix.push(p.ident.to_string());
            collect_use(&p.tree, prefix, module);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix;
            if name == "self" {
                let bound = path.last().cloned().unwrap_or_default();
                module.bindings.insert(bound, path);
            } else {
                path.push(name.clone());
                module.bindings.insert(name, path);
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix;
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            module.bindings.insert(r.rename.to_string(), path);
        }
        syn::UseTree::Glob(_) => module.globs.push(prefix),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                collect_use(tree, prefix.clone(), module);
            }
        }
    }
}

/// Every multi-segment path in an item, macro arguments included.
#[derive(Default)]
struct PathCollector {
    found: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if !segments.is_empty() {
            self.found.push(segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        tokens_paths(mac.tokens.clone(), &mut self.found);
        syn::visit::visit_macro(self, mac);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Submodules are read as modules of their own.
    }
}

/// Paths in a macro's tokens: `a::b::c` sequences (what `syn` cannot parse
/// without knowing the macro's grammar).
fn tokens_paths(tokens: TokenStream, found: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => {
                tokens_paths(g.stream(), found);
                i += 1;
            }
            TokenTree::Ident(first) => {
                let mut path = vec![first.to_string()];
                let mut j = i + 1;
                while j + 2 < tokens.len()
                    && matches!(&tokens[j], TokenTree::Punct(p) if p.as_char() == ':')
                    && matches!(&tokens[j + 1], TokenTree::Punct(p) if p.as_char() == ':')
                    && let TokenTree::Ident(next) = &tokens[j + 2]
                {
                    path.push(next.to_string());
                    j += 3;
                }
                if path.len() > 1 {
                    found.push(path);
                }
                i = j;
            }
            _ => i += 1,
        }
    }
}

/// The crate roots of the package in `dir`: its library, binaries, tests,
/// build script, fuzz targets.
pub fn crate_roots(dir: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs", "build.rs"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect();
    for sub in ["src/bin", "tests", "fuzz_targets", "benches", "examples"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter_map(|p| {
                if p.extension().is_some_and(|e| e == "rs") {
                    Some(p)
                } else if sub == "src/bin" && p.join("main.rs").is_file() {
                    Some(p.join("main.rs"))
                } else {
                    None
                }
            })
            .collect();
        found.sort();
        roots.extend(found);
    }
    roots
}

/// The packages of the workspace at `root` (every `Cargo.toml` outside build output).
pub fn packages(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if dir.join("Cargo.toml").is_file() {
            found.push(dir.clone());
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir()
                && !name.starts_with('.')
                && !matches!(
                    name.as_ref(),
                    "target" | "node_modules" | "corpus" | "artifacts"
                )
            {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(dir)).expect("dir");
            std::fs::write(path, text).expect("write");
        }
    }

    fn fixture(name: &str, files: &[(&str, &str)]) -> CrateGraph {
        let dir = std::env::temp_dir().join(format!("import-graph-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir, files);
        let graph = CrateGraph::read(&dir.join("lib.rs")).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        graph
    }

    #[test]
    fn a_cycle_through_a_reexport_in_a_macro_is_found() {
        // `engine` names `IsolatedEngine` through its parent's re-export, in a
        // macro; `isolation` calls into `engine` directly.
        let graph = fixture(
            "cycle",
            &[
                ("lib.rs", "pub mod legacy;\npub mod report;\n"),
                (
                    "legacy/mod.rs",
                    "mod engine;\nmod isolation;\npub use isolation::IsolatedEngine;\n",
                ),
                (
                    "legacy/engine.rs",
                    "pub fn f() { let _ = format!(\"{:?}\", super::IsolatedEngine::new()); }\n",
                ),
                (
                    "legacy/isolation/mod.rs",
                    "use crate::legacy::engine;\npub struct IsolatedEngine;\nfn g() { engine::f() }\n",
                ),
                ("report.rs", "use crate::legacy::IsolatedEngine;\n"),
            ],
        );
        assert_eq!(
            graph.cycles(),
            vec![Cycle {
                parent: "crate::legacy".to_owned(),
                modules: vec!["engine".to_owned(), "isolation".to_owned()],
            }]
        );
        // `report` imports `legacy` (through its re-export): one way only.
        assert!(graph.edges().contains(&Edge {
            parent: "crate".to_owned(),
            from: "report".to_owned(),
            to: "legacy".to_owned(),
        }));
    }

    #[test]
    fn parents_and_children_and_one_way_imports_are_no_cycle() {
        let graph = fixture(
            "acyclic",
            &[
                (
                    "lib.rs",
                    "pub mod a;\npub mod b;\npub struct Shared;\n#[cfg(test)]\nmod tests { use super::*; }\n",
                ),
                (
                    "a.rs",
                    "use crate::b::B;\npub use self::inner::A;\nmod inner { pub struct A(super::super::Shared); }\n",
                ),
                (
                    "b.rs",
                    "pub struct B(std::string::String, crate::Shared);\n",
                ),
            ],
        );
        assert!(graph.cycles().is_empty(), "{:?}", graph.edges());
        assert_eq!(graph.edges().len(), 1, "{:?}", graph.edges());
        assert_eq!(graph.module_count(), 5);
    }
}
