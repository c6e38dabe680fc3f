//! Restarts of the services the system depends on. The system's own processes are
//! `testkit::processes`.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// Restarts the RabbitMQ application (queues and messages survive, connections do not).
pub fn restart_rabbitmq() -> anyhow::Result<()> {
    run("rabbitmqctl", &["stop_app"])?;
    std::thread::sleep(Duration::from_secs(1));
    run("rabbitmqctl", &["start_app"])?;
    Ok(())
}

/// Restarts the PostgreSQL cluster (every connection is cut).
pub fn restart_postgres() -> anyhow::Result<()> {
    let version = std::fs::read_dir("/etc/postgresql")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("no PostgreSQL cluster under /etc/postgresql")?;
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &version,
            "main",
            "restart",
            "-m",
            "fast",
        ],
    )
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(status.success(), "{program} {args:?} failed: {status}");
    Ok(())
}
