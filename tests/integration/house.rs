//! The house rules of ARCHITECTURE.md, checked on the source: no import cycle between the
//! library's modules, and no function outside the planner, the score loader, the GrandOrgue
//! matcher and the engine longer than 150 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo_dir;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ is readable") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `.rs` file under src/ with the top-level module it belongs to (`src/plan/hymn.rs` →
/// `plan`); the crate root and the binary are left out.
fn modules() -> Vec<(String, PathBuf)> {
    let src = repo_dir().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).expect("under src").to_path_buf();
            let first = rel.components().next()?.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            (!matches!(first.as_str(), "lib" | "main" | "cli")).then_some((first, p))
        })
        .collect()
}

/// `crate::X` references outside comments.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mods = modules();
    let names: BTreeSet<String> = mods.iter().map(|(m, _)| m.clone()).collect();
    for (m, p) in &mods {
        let text = std::fs::read_to_string(p).expect("source readable");
        let deps = graph.entry(m.clone()).or_default();
        deps.extend(references(&text).into_iter().filter(|d| d != m && names.contains(d)));
    }
    assert!(graph.len() > 10, "the modules were found: {graph:?}");
    assert!(graph["plan"].contains("registration") && graph["session"].contains("engine"), "{graph:?}");
    assert_eq!(find_cycle(&graph), None, "an import cycle between modules");
    // The checker itself finds one.
    let mut cyclic = graph.clone();
    cyclic.get_mut("organ").unwrap().insert("plan".into());
    assert!(find_cycle(&cyclic).is_some());
}

#[test]
fn no_function_outside_the_core_algorithms_is_longer_than_150_lines() {
    const EXEMPT: [&str; 4] = ["plan", "score", "grandorgue", "engine"];
    let mut long = Vec::new();
    let mut seen = 0;
    for (m, p) in modules().iter().filter(|(m, _)| !EXEMPT.contains(&m.as_str())) {
        let text = std::fs::read_to_string(p).expect("source readable");
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let head = [
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "fn ",
                "async fn ",
                "pub async fn ",
                "pub(crate) async fn ",
            ];
            if !head.iter().any(|h| t.starts_with(h)) || t.trim_end().ends_with(';') {
                continue;
            }
            // rustfmt closes a function at the indentation it opened at.
            let close = format!("{}}}", &l[..l.len() - t.len()]);
            if let Some(n) = lines[i + 1..].iter().position(|x| *x == close) {
                seen += 1;
                if n + 2 > 150 {
                    long.push(format!(
                        "{m}: {} ({} lines) in {}",
                        t.split('(').next().unwrap_or(t),
                        n + 2,
                        p.display()
                    ));
                }
            }
        }
    }
    assert!(seen > 300, "functions were found ({seen})");
    assert!(long.is_empty(), "too long: {long:#?}");
}
