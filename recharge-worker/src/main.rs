use anyhow::Context;
use recharge_worker::WorkerConfig;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::from_env().context("recharge-worker cannot start")?;
    shared::telemetry::init(config.app_env);
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stop requested; finishing in-flight orders");
        trigger.cancel();
    });
    recharge_worker::run(config, shutdown).await
}
