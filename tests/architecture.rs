//! The shape of the code, checked on every run: the modules of `src/` import one another
//! without a cycle, and no file grows past 600 lines. (Functions over 80 lines are
//! refused by clippy's `too_many_lines`, set in clippy.toml and lib.rs.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MOST_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The code of a file without its tests and comments: what the product itself imports.
fn product_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of top-level modules that `code` refers to through `crate::`.
fn referenced(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let words: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            group[..end]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map(|w| w.split("::").next().unwrap_or_default())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            vec![&rest[..end]]
        };
        found.extend(
            words
                .into_iter()
                .filter(|w| modules.contains(*w))
                .map(String::from),
        );
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let mut to = referenced(&product_code(&text), &modules);
        to.remove(&from);
        edges.entry(from).or_default().extend(to);
    }
    edges
}

/// A path from `to` back to `from`, if there is one.
fn path_back(
    edges: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if to == from {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(to.to_string()) {
        return None;
    }
    for next in edges.get(to).into_iter().flatten() {
        if let Some(mut path) = path_back(edges, from, next, seen) {
            path.insert(0, to.to_string());
            return Some(path);
        }
    }
    None
}

#[test]
fn modules_import_one_another_without_a_cycle() {
    let edges = graph();
    assert!(edges.len() > 10, "the modules of src/ were found");
    for (from, tos) in &edges {
        for to in tos {
            if let Some(path) = path_back(&edges, from, to, &mut BTreeSet::new()) {
                panic!("import cycle: {from} -> {}", path.join(" -> "));
            }
        }
    }
}

#[test]
fn the_cycle_check_sees_grouped_and_plain_imports() {
    let modules: BTreeSet<String> = ["engine", "events", "ui"].map(String::from).into();
    let code = "use crate::{engine::Job, events};\nlet x = crate::ui::text::plural(1);";
    assert_eq!(referenced(code, &modules), modules);
}

#[test]
fn no_source_file_is_over_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > MOST_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MOST_LINES} lines: {long:?}");
}
