//! The system under test as separate processes: the sandbox, payment-api and workers,
//! started from the binaries beside this one, against the local PostgreSQL and RabbitMQ.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?
        .parent()
        .context("no directory for the running binary")?
        .to_path_buf();
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --bins)",
        path.display()
    );
    Ok(path)
}

pub struct Ports {
    pub api: u16,
    pub wechat: u16,
    pub unitel: u16,
}

pub struct Processes {
    pub env: HashMap<String, String>,
    sandbox: Child,
    api: Child,
    workers: Vec<Child>,
    started_workers: usize,
}

impl Processes {
    pub fn start(
        env: HashMap<String, String>,
        ports: &Ports,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let sandbox = Command::new(binary("sandbox")?)
            .arg("serve")
            .envs(&env)
            .env("SANDBOX_WECHAT_PORT", ports.wechat.to_string())
            .env("SANDBOX_UNITEL_PORT", ports.unitel.to_string())
            .env(
                "SANDBOX_CALLBACK_BASE",
                format!("http://127.0.0.1:{}", ports.api),
            )
            .env("SANDBOX_CLOSE_MIN_AGE_SECS", "0")
            .env(
                "SANDBOX_CALLBACK_RETRY_MS",
                "100,200,500,1000,1000,2000,2000,3000,5000,5000,5000,5000,5000,5000,5000,5000",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the sandbox")?;
        let api = Command::new(binary("payment-api")?)
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting payment-api")?;
        let mut processes = Processes {
            env,
            sandbox,
            api,
            workers: Vec::new(),
            started_workers: 0,
        };
        for _ in 0..workers {
            processes.spawn_worker()?;
        }
        Ok(processes)
    }

    fn spawn_worker(&mut self) -> anyhow::Result<()> {
        self.started_workers += 1;
        let worker = Command::new(binary("recharge-worker")?)
            .envs(&self.env)
            .env(
                "WORKER_ID",
                format!("chaos-worker-{}", self.started_workers),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a recharge-worker")?;
        self.workers.push(worker);
        Ok(())
    }

    /// SIGKILL one worker (no chance to clean up) and start a replacement.
    pub fn kill_a_worker(&mut self, index: usize) -> anyhow::Result<()> {
        if self.workers.is_empty() {
            return Ok(());
        }
        let mut victim = self.workers.remove(index % self.workers.len());
        let killed = victim.kill();
        victim.wait()?;
        killed?;
        self.spawn_worker()
    }

    pub fn stop(mut self) {
        for child in self
            .workers
            .iter_mut()
            .chain([&mut self.api, &mut self.sandbox])
        {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(500));
        for child in self
            .workers
            .iter_mut()
            .chain([&mut self.api, &mut self.sandbox])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
