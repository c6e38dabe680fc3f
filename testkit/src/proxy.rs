//! A round-robin TCP proxy in front of several payment-api instances, as a load balancer
//! stands in front of a deployment's: each connection goes to the next instance that
//! accepts it, so a dead instance's share moves to the living at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long an instance may take to accept before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

pub struct RoundRobin {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RoundRobin {
    /// Listens on `listen` (port 0 for any) and forwards to `backends`.
    pub async fn start(
        listen: SocketAddr,
        backends: Vec<SocketAddr>,
    ) -> anyhow::Result<RoundRobin> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(backends);
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let backends = backends.clone();
                let first = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Some(backend) = connect(&backends, first).await {
                        let (mut client, mut backend) = (client, backend);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                    }
                });
            }
        });
        Ok(RoundRobin { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first backend, from `first` round, that accepts a connection.
async fn connect(backends: &[SocketAddr], first: usize) -> Option<TcpStream> {
    for i in 0..backends.len() {
        let backend = backends[(first + i) % backends.len()];
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await
        {
            return Some(stream);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: u8) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(&[tag]).await;
            }
        });
        (addr, task)
    }

    async fn answer(proxy: &RoundRobin) -> u8 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.unwrap();
        byte[0]
    }

    #[tokio::test]
    async fn connections_alternate_and_skip_a_dead_backend() {
        let (a, a_task) = echo_server(b'a').await;
        let (b, _b_task) = echo_server(b'b').await;
        let proxy = RoundRobin::start("127.0.0.1:0".parse().unwrap(), vec![a, b])
            .await
            .unwrap();
        let mut seen = vec![answer(&proxy).await, answer(&proxy).await];
        seen.sort();
        assert_eq!(seen, [b'a', b'b']);
        a_task.abort();
        let _ = a_task.await;
        for _ in 0..4 {
            assert_eq!(answer(&proxy).await, b'b', "only the living answers");
        }
    }
}
