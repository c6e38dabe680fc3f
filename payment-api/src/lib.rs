//! payment-api: the mini-program's HTTP API, WeChat Pay, the payment callback and the
//! outbox relay that turns recorded payments into `OrderPaid` messages. Every change of an
//! order's or a refund's state goes through [`shared::lifecycle`].

pub mod alerts;
pub mod client_address;
pub mod config;
pub mod context;
pub mod http;
pub mod import;
pub mod lookups;
pub mod orders;
pub mod payment_watch;
pub mod payments;
pub mod rate_limit;
pub mod reconciliation;
pub mod retention;
pub mod startup;
pub mod stats;
pub mod store;
pub mod wechat;

pub use config::ApiConfig;
pub use startup::{Application, MIGRATOR};

/// The layout `docs/architecture.md` states, checked on the sources: nothing below `http`
/// imports it, and every route handler stays a door (extract, call, map).
#[cfg(test)]
mod layout {
    use std::fs;
    use std::path::{Path, PathBuf};

    /// Longest a route handler may be, signature and braces included.
    const MAX_HANDLER_LINES: usize = 40;

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

    fn all_sources() -> Vec<(PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        sources(&root, &mut found);
        found
            .into_iter()
            .map(|path| {
                let text = fs::read_to_string(&path).unwrap();
                (path.strip_prefix(&root).unwrap().to_path_buf(), text)
            })
            .collect()
    }

    #[test]
    fn nothing_below_http_imports_it() {
        let importers: Vec<PathBuf> = all_sources()
            .into_iter()
            // The crate root declares every module (and holds this check).
            .filter(|(path, _)| !path.starts_with("http") && path != Path::new("startup.rs"))
            .filter(|(path, _)| path != Path::new("lib.rs"))
            .filter(|(_, text)| {
                text.lines().any(|line| {
                    !line.trim_start().starts_with("//") && line.contains("crate::http")
                })
            })
            .map(|(path, _)| path)
            .collect();
        assert!(importers.is_empty(), "{importers:?} import http");
    }

    /// The top-level module a source file belongs to (`payments/start.rs` → `payments`).
    fn owner(path: &Path) -> String {
        let first = path
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_owned()
    }

    /// Which top-level modules each module names (`crate::<module>`), outside comments.
    fn module_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        let mut graph = std::collections::BTreeMap::<_, std::collections::BTreeSet<_>>::new();
        for (path, text) in all_sources() {
            if path == Path::new("lib.rs") {
                continue;
            }
            let from = owner(&path);
            let named = graph.entry(from.clone()).or_default();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let module: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    // `shared::...` paths spelled `$crate` or `::crate` are not ours.
                    let ours = at == 0 || !line[..at].ends_with(['$', ':']);
                    if ours && !module.is_empty() && module != from {
                        named.insert(module);
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn modules_import_one_way() {
        let graph = module_imports();
        // A depth-first walk that reports the first cycle it meets.
        fn walk(
            module: &str,
            graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut std::collections::BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|m| m == module) {
                let mut cycle = path[at..].to_vec();
                cycle.push(module.to_owned());
                return Some(cycle);
            }
            if !done.insert(module.to_owned()) {
                return None;
            }
            path.push(module.to_owned());
            for next in graph.get(module).into_iter().flatten() {
                if let Some(cycle) = walk(next, graph, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = std::collections::BTreeSet::new();
        for module in graph.keys() {
            let cycle = walk(module, &graph, &mut Vec::new(), &mut done);
            assert!(cycle.is_none(), "modules import each other: {cycle:?}");
        }
        // The check sees real imports: http names the domain, the domain does not name http.
        assert!(graph["http"].contains("payments") && graph["startup"].contains("http"));
    }

    #[test]
    fn route_handlers_are_short() {
        let mut long = Vec::new();
        for (path, text) in all_sources() {
            if !path.starts_with("http") {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            for (at, line) in lines.iter().enumerate() {
                if !line.starts_with("#[utoipa::path") {
                    continue;
                }
                let start = (at..lines.len())
                    .find(|&i| {
                        lines[i].starts_with("async fn ") || lines[i].starts_with("pub async fn ")
                    })
                    .unwrap();
                let end = (start..lines.len()).find(|&i| lines[i] == "}").unwrap();
                if end - start + 1 > MAX_HANDLER_LINES {
                    long.push(format!("{}: {}", path.display(), lines[start]));
                }
            }
        }
        assert!(
            long.is_empty(),
            "handlers over {MAX_HANDLER_LINES} lines: {long:#?}"
        );
    }
}
