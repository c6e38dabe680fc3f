use anyhow::Context;
use payment_api::{ApiConfig, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("serve") => {}
        Some("import-legacy") => {
            let status = payment_api::import::command(args).await?;
            std::process::exit(status);
        }
        Some(other) => {
            anyhow::bail!("unknown command {other:?}: payment-api [serve | import-legacy]")
        }
    }
    let config = ApiConfig::from_env().context("payment-api cannot start")?;
    shared::telemetry::init(config.app_env);
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), "payment-api listening");
    app.run_until(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
