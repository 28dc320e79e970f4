//! The query console's files: GraphiQL and React from npm (`devstack/console/`,
//! pinned by its `package-lock.json`, installed with `npm ci` on first use),
//! served as they are published (UMD builds: no bundler, nothing built), and
//! the page and script of our own around them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `devstack/console/` in the source tree.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console")
}

/// The files `/assets/{name}` serves: name, path under `devstack/console/`, content type.
pub const ASSETS: [(&str, &str, &str); 5] = [
    (
        "graphiql.min.js",
        "node_modules/graphiql/graphiql.min.js",
        "text/javascript",
    ),
    (
        "graphiql.min.css",
        "node_modules/graphiql/graphiql.min.css",
        "text/css",
    ),
    (
        "react.production.min.js",
        "node_modules/react/umd/react.production.min.js",
        "text/javascript",
    ),
    (
        "react-dom.production.min.js",
        "node_modules/react-dom/umd/react-dom.production.min.js",
        "text/javascript",
    ),
    ("console.js", "console.js", "text/javascript"),
];

/// The asset called `name`: its content type and bytes.
pub fn asset(name: &str) -> Option<(&'static str, Vec<u8>)> {
    let (_, path, content_type) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    std::fs::read(dir().join(path))
        .ok()
        .map(|bytes| (*content_type, bytes))
}

/// The npm packages are installed and match `package-lock.json`.
pub fn installed() -> bool {
    let installed = dir().join("node_modules/.package-lock.json");
    let wanted = dir().join("package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&installed), modified(&wanted)) {
        (Some(installed), Some(wanted)) => installed >= wanted,
        _ => false,
    }
}

/// Installs the console's npm packages when missing or outdated (`npm ci`:
/// exactly the lock file's versions, checked against its integrity hashes).
pub fn ensure_installed() -> Result<(), String> {
    if installed() {
        return Ok(());
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir())
        .output()
        .map_err(|e| format!("running npm (Node.js's npm is needed for the console): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "npm ci in {} failed: {}",
            dir().display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// The console page, with the personas a person can be.
pub fn page() -> String {
    let personas: Vec<serde_json::Value> = testkit::appsync::identity::personas()
        .into_iter()
        .map(|(name, description, _)| serde_json::json!({"name": name, "description": description}))
        .collect();
    // `</` cannot end the script element the JSON sits in.
    let personas = serde_json::Value::Array(personas)
        .to_string()
        .replace("</", "<\\/");
    include_str!("../console/index.html").replace("{{PERSONAS}}", &personas)
}
