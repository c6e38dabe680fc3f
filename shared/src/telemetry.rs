//! Logging, set up once per binary: JSON lines in production for the log pipeline,
//! readable lines in development. `RUST_LOG` filters as usual (default `info`).

use tracing_subscriber::EnvFilter;

use crate::config::AppEnv;

pub fn init(app_env: AppEnv) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // try_init: a second call (tests start several services in one process) is harmless.
    let _ = match app_env {
        AppEnv::Production => builder.json().flatten_event(true).try_init(),
        AppEnv::Development => builder.try_init(),
    };
}
