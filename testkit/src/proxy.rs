//! TCP proxies for tests: a round-robin one in front of several payment-api instances, as
//! a load balancer stands in front of a deployment's (each connection goes to the next
//! instance that accepts it, so a dead instance's share moves to the living at once); and
//! a relay in front of one server (PostgreSQL) that can hold what its clients send, as a
//! stalled network or a server slow to take requests in would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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

/// A relay to one server. While held, what clients send waits in the relay (every
/// connection, opened before or after); answers always pass. Released, it goes on in order.
pub struct Relay {
    pub addr: SocketAddr,
    held: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(backend: SocketAddr) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (held, _) = watch::channel(false);
        let waiting = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let held = held.clone();
            let waiting = waiting.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(backend).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, held.subscribe(), waiting.clone()));
                }
            }
        });
        Ok(Relay {
            addr,
            held,
            waiting,
            task,
        })
    }

    /// A relay in front of the server of `url` (`scheme://[user@]host:port/...`).
    pub async fn in_front_of(url: &str) -> anyhow::Result<Relay> {
        let (_, rest) = url.split_once("://").context("a URL with a scheme")?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let server = authority.rsplit_once('@').map_or(authority, |(_, s)| s);
        let backend = tokio::net::lookup_host(server)
            .await?
            .next()
            .context("the server's address")?;
        Relay::start(backend).await
    }

    /// `url` (`scheme://[user@]host:port/...`) with this relay in place of its server.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        format!("{scheme}://{user}{}/{path}", self.addr)
    }

    /// From now on, what clients send waits in the relay.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Bytes clients sent that wait in the relay.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    mut held: watch::Receiver<bool>,
    waiting: Arc<AtomicUsize>,
) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match client_in.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        waiting.fetch_add(n, Ordering::SeqCst);
        let released = held.wait_for(|held| !*held).await.is_ok();
        let written = released && server_out.write_all(&buffer[..n]).await.is_ok();
        waiting.fetch_sub(n, Ordering::SeqCst);
        if !written {
            break;
        }
    }
    let _ = server_out.shutdown().await;
    answers.abort();
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

    #[tokio::test]
    async fn a_held_relay_passes_nothing_on_until_released() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let relay = Relay::start(server).await.unwrap();
        assert_eq!(
            relay.url_for("postgres://postgres@127.0.0.1:5432/db"),
            format!("postgres://postgres@{}/db", relay.addr)
        );
        let mut client = TcpStream::connect(relay.addr).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        relay.hold();
        client.write_all(b"ping").await.unwrap();
        while relay.waiting_bytes() < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        relay.release();
        let mut got = [0u8; 4];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        assert_eq!(relay.waiting_bytes(), 0);
    }
}
