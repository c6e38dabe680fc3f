//! `docs/architecture.md`'s rule that modules depend one way, checked on the sources of
//! every crate that holds the system's logic: no module names a module that names it back,
//! directly or through others.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Which top-level modules each top-level module of `krate` names as `crate::<module>`,
/// outside comments. The crate root (`lib.rs`, `main.rs`) declares them all and is left out.
fn module_imports(krate: &str) -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph = Graph::new();
    for path in files {
        let relative = path.strip_prefix(&root).unwrap();
        if relative == Path::new("lib.rs") || relative == Path::new("main.rs") {
            continue;
        }
        let first = relative.components().next().unwrap().as_os_str();
        let from = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        let text = fs::read_to_string(&path).unwrap();
        let named = graph.entry(from.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                // `$crate::` in a macro is the crate the macro lives in: a path, not an import.
                if line[..at].ends_with(['$', ':', '_'])
                    || line[..at].ends_with(char::is_alphanumeric)
                {
                    continue;
                }
                let module: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() && module != from {
                    named.insert(module);
                }
            }
        }
    }
    graph
}

/// The first cycle a depth-first walk meets, as the modules along it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn walk(
        module: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut found = path[at..].to_vec();
            found.push(module.to_owned());
            return Some(found);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = walk(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| walk(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for krate in ["payment-api", "shared", "recharge-worker"] {
        let graph = module_imports(krate);
        assert!(graph.len() > 5, "{krate}: modules not found");
        assert_eq!(cycle(&graph), None, "{krate}: modules import each other");
    }
    // The scan sees real imports: the routes name the payment decisions, which do not
    // name the routes.
    let api = module_imports("payment-api");
    assert!(api["http"].contains("payments") && api["startup"].contains("http"));
    assert!(!api["payments"].contains("http") && !api["payments"].contains("context"));
}

#[test]
fn a_loop_is_seen() {
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        cycle(&graph),
        Some(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    let mut without = graph.clone();
    without.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&without), None);
}
