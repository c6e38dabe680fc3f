//! Our own accept loop, because two Unitel faults need what `axum::serve` hides: closing
//! the listening socket for a while (clients see ECONNREFUSED), and closing one connection
//! from inside a handler without writing a response.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::sync::{lock, stopped};

/// Lets a handler close the connection its request came on. Present as a request
/// extension on every request the sandbox serves.
#[derive(Clone, Default)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    /// The connection is dropped as soon as its task notices: nothing more is written.
    pub(crate) fn kill(&self) {
        self.0.notify_one();
    }
}

/// A listening socket that can be really closed and later bound again on the same port.
pub(crate) struct ClosableListener {
    addr: SocketAddr,
    socket: Mutex<Option<TcpListener>>,
    acceptor: Mutex<Option<Waker>>,
    /// Bumped by every close or reopen, so a reopen timer from an older close does nothing.
    epoch: AtomicU64,
    /// Bumped to drop every open connection.
    connections: watch::Sender<u64>,
    runtime: tokio::runtime::Handle,
}

impl ClosableListener {
    pub(crate) async fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let socket = TcpListener::bind(addr).await?;
        let addr = socket.local_addr()?;
        Ok(Arc::new(ClosableListener {
            addr,
            socket: Mutex::new(Some(socket)),
            acceptor: Mutex::new(None),
            epoch: AtomicU64::new(0),
            connections: watch::Sender::new(0),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the socket and every open connection now; binds the port again after `span`.
    /// Synchronous, so a caller's very next connection attempt is already refused.
    pub(crate) fn refuse_for(self: &Arc<Self>, span: Duration) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        drop(lock(&self.socket).take());
        self.connections.send_modify(|generation| *generation += 1);
        self.wake_acceptor();
        tracing::info!(addr = %self.addr, ?span, "refusing connections");

        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(span).await;
            while this.epoch.load(Ordering::SeqCst) == epoch {
                match this.reopen() {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(addr = %this.addr, %error, "cannot bind again yet");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
    }

    /// Ends a refusal window early (a reset). Does nothing when the socket is open.
    pub(crate) fn reopen(&self) -> io::Result<()> {
        let mut socket = lock(&self.socket);
        if socket.is_none() {
            // std's bind sets SO_REUSEADDR, so lingering connections do not block the port.
            let std_listener = std::net::TcpListener::bind(self.addr)?;
            std_listener.set_nonblocking(true)?;
            let _runtime = self.runtime.enter();
            *socket = Some(TcpListener::from_std(std_listener)?);
            tracing::info!(addr = %self.addr, "accepting connections again");
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        drop(socket);
        self.wake_acceptor();
        Ok(())
    }

    /// For good: also cancels a pending reopen, so a stopped sandbox frees its port.
    fn close(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        drop(lock(&self.socket).take());
        self.connections.send_modify(|generation| *generation += 1);
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| {
            // Remember who waits, so a close or a reopen can wake it to look again.
            *lock(&self.acceptor) = Some(cx.waker().clone());
            match lock(&self.socket).as_ref() {
                Some(socket) => socket.poll_accept(cx),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn wake_acceptor(&self) {
        if let Some(waker) = lock(&self.acceptor).take() {
            waker.wake();
        }
    }
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: Arc<ClosableListener>,
    router: Router,
    shutdown: watch::Receiver<bool>,
) {
    let mut stopping = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let drop_all = listener.connections.subscribe();
                    tokio::spawn(serve_connection(stream, router.clone(), drop_all, shutdown.clone()));
                }
                Err(error) => {
                    // Typically out of file descriptors: wait instead of spinning.
                    tracing::warn!(addr = %listener.addr, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = stopped(&mut stopping) => break,
        }
    }
    listener.close();
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    mut drop_all: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let kill = ConnectionKill::default();
    let handler_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(handler_kill.clone());
        router.clone().oneshot(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);

    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = kill.0.notified() => tracing::debug!("connection killed by its handler"),
        _ = drop_all.changed() => tracing::debug!("connection dropped with the listener"),
        _ = stopped(&mut shutdown) => {}
    }
}
