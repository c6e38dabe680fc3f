//! Prometheus metrics, one recorder per process, rendered by payment-api at `/metrics` and
//! served by each worker on its own port (`METRICS_PORT`).

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets for latencies in seconds, from 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the recorder once (later calls return the same handle: tests start several
/// services in one process).
pub fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Serves `/metrics` on `addr` for a process without an HTTP server of its own.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let handle = recorder();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics at /metrics");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let body = handle.render();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
