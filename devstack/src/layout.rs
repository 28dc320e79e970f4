//! The shape of the workspace in figures: each package's lines of code
//! (tests left out), its largest files and functions; and the limits that
//! keep what ships readable: in the shipped crates, no file over
//! [`MAX_FILE_LINES`] lines and no function over [`MAX_FN_LINES`].
//!
//! A file's lines are counted without its `#[cfg(test)]` items (unit tests
//! sit beside the code they test, and do not make it longer to read); a
//! function's from its signature to its closing brace. Parsed with `syn`,
//! whose spans give lines (proc-macro2's `span-locations`).

use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// The most lines a function of a shipped crate may take (a screen).
pub const MAX_FN_LINES: usize = 60;
/// The most non-test lines a file of a shipped crate may hold.
pub const MAX_FILE_LINES: usize = 500;

/// The crates that run in Lambda (their directories in the workspace).
pub const SHIPPED: [&str; 5] = [".", "common", "legacy-bridge", "processor", "deploy-hook"];

/// One source file's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFigures {
    pub path: PathBuf,
    /// Lines outside `#[cfg(test)]` items.
    pub lines: usize,
    /// Each function's name and length (lines), test functions left out.
    pub functions: Vec<(String, usize, usize)>,
}

/// The figures of one file (`path` as it is named in reports).
pub fn measure_file(path: &Path, shown: PathBuf) -> Result<FileFigures, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = syn::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut visitor = Measure::default();
    visitor.visit_file(&file);
    let total = text.lines().count();
    Ok(FileFigures {
        path: shown,
        lines: total.saturating_sub(visitor.test_lines),
        functions: visitor.functions,
    })
}

/// The `.rs` files of a package's `src/` (its own package directories left out).
pub fn source_files(package: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![package.join("src")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.join("Cargo.toml").is_file() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[derive(Default)]
struct Measure {
    test_lines: usize,
    /// (name, first line, length)
    functions: Vec<(String, usize, usize)>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn lines_of(span: proc_macro2::Span) -> usize {
    span.end().line.saturating_sub(span.start().line) + 1
}

impl Measure {
    fn function(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.span().start().line;
        let end = block.span().end().line;
        self.functions
            .push((name.to_string(), start, end.saturating_sub(start) + 1));
    }
}

impl<'ast> Visit<'ast> for Measure {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_cfg_test(attrs) {
            self.test_lines += lines_of(item.span());
        } else {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.function(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.function(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.function(&f.sig.ident, &f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_items_are_left_out_and_functions_measured() {
        let dir = std::env::temp_dir().join(format!("layout-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("a.rs");
        let text = "fn one() {\n    let a = 1;\n    let _ = a;\n}\n\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
        std::fs::write(&file, text).expect("write");
        let figures = measure_file(&file, PathBuf::from("a.rs")).expect("measured");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(figures.lines, 5, "the 4 test lines are left out");
        assert_eq!(figures.functions, vec![("one".to_owned(), 1, 4)]);
    }
}
