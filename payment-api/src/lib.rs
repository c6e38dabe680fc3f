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
pub mod sessions;
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
