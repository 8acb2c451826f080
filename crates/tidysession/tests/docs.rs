//! `docs/invariants.md` stays true: every invariant the source cites has a section there, and
//! every file and test function it cites exists. Std only, no I/O beyond reading the tree.
//!
//! A citation is a backticked span starting with `crates/`: `` `crates/x/src/y.rs` `` names a
//! file, `` `crates/x/tests/y.rs: name` `` names the function `fn name` defined in that file.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const DOC: &str = "docs/invariants.md";

/// The repository root: two levels above this crate.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives at crates/<name>")
        .to_path_buf()
}

fn doc() -> String {
    let path = root().join(DOC);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The invariant numbers `text` cites as `I<n>`, standing alone (not inside a longer word).
fn invariant_ids(text: &str) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    let mut prev = None;
    for (i, c) in text.char_indices() {
        if c == 'I' && !prev.is_some_and(is_word) {
            let rest = &text[i + 1..];
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let after = rest[digits..].chars().next();
            if digits > 0 && !after.is_some_and(is_word) {
                ids.insert(rest[..digits].parse().unwrap());
            }
        }
        prev = Some(c);
    }
    ids
}

/// The citations in the document: `(path, Some(test name))` or `(path, None)`.
fn citations(doc: &str) -> Vec<(String, Option<String>)> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("crates/"))
        .map(|span| match span.split_once(": ") {
            Some((path, name)) => (path.to_owned(), Some(name.trim().to_owned())),
            None => (span.to_owned(), None),
        })
        .collect()
}

/// Whether `source` defines a function called `name`.
fn defines(source: &str, name: &str) -> bool {
    let needle = format!("fn {name}");
    source.match_indices(&needle).any(|(i, _)| {
        let before = source[..i].chars().next_back();
        let after = source[i + needle.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[test]
fn every_invariant_cited_in_the_source_has_a_section() {
    let root = root();
    let mut files = Vec::new();
    for krate in fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(!files.is_empty(), "no source found under crates/*/src");
    let mut cited = BTreeSet::new();
    for file in &files {
        cited.extend(invariant_ids(&fs::read_to_string(file).unwrap()));
    }
    assert!(!cited.is_empty(), "the source cites no invariant at all");
    let sections: BTreeSet<u32> = doc()
        .lines()
        .filter_map(|l| l.strip_prefix("## I"))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    let missing: Vec<String> = cited
        .difference(&sections)
        .map(|n| format!("I{n}"))
        .collect();
    assert!(
        missing.is_empty(),
        "the source cites {missing:?}, which have no `## I<n>` section in {DOC}"
    );
}

#[test]
fn every_file_the_invariants_doc_cites_exists() {
    let root = root();
    let cited = citations(&doc());
    assert!(cited.len() > 20, "{DOC} cites almost nothing: {cited:?}");
    let missing: BTreeSet<&str> = cited
        .iter()
        .map(|(path, _)| path.as_str())
        .filter(|path| !root.join(path).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} cites files that do not exist: {missing:?}"
    );
}

#[test]
fn every_test_the_invariants_doc_cites_exists() {
    let root = root();
    let mut all = Vec::new();
    rust_files(&root.join("crates"), &mut all);
    let sources: Vec<(PathBuf, String)> = all
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, name) in citations(&doc()) {
        let Some(name) = name else { continue };
        checked += 1;
        if name.is_empty() || !name.chars().all(is_word) {
            problems.push(format!("`{path}: {name}`: not a function name"));
            continue;
        }
        let cited_file = root.join(&path);
        let here = sources
            .iter()
            .any(|(p, text)| *p == cited_file && defines(text, &name));
        if here {
            continue;
        }
        let elsewhere: Vec<String> = sources
            .iter()
            .filter(|(_, text)| defines(text, &name))
            .map(|(p, _)| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        problems.push(match elsewhere.as_slice() {
            [] => format!("`{path}: {name}`: no `fn {name}` anywhere under crates/"),
            found => format!("`{path}: {name}`: `fn {name}` is in {found:?}, not in {path}"),
        });
    }
    assert!(checked > 20, "{DOC} names almost no tests");
    assert!(
        problems.is_empty(),
        "{DOC} cites tests that do not exist as written:\n{}",
        problems.join("\n")
    );
}
