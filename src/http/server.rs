//! The connection loop: HTTP/1.1 with keep-alive over plain TCP or TLS, a header read timeout
//! against slow clients, a cap on open connections, the peer address (and client certificate)
//! for every request, and a bounded graceful drain.
//!
//! `axum::serve` offers none of these knobs, so connections are driven by hyper directly.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::auth::ClientCertificate;
use crate::tls::TlsEndpoint;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// One listening socket, plain or TLS.
pub struct Endpoint {
    pub listener: TcpListener,
    pub tls: Option<TlsEndpoint>,
}

/// The client certificate of the connection a request came on (TLS endpoints only).
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<Arc<ClientCertificate>>);

/// What every connection task needs.
#[derive(Clone)]
struct Shared {
    app: Arc<super::AppState>,
    router: Router,
    limits: ServerLimits,
    slots: Arc<Semaphore>,
    http: hyper::server::conn::http1::Builder,
}

/// Serves `router` on every endpoint until `shutdown` completes, then stops accepting and gives
/// in-flight requests up to `shutdown_grace` to finish.
pub async fn serve(
    endpoints: Vec<Endpoint>,
    app: Arc<super::AppState>,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        // A request read whole is carried through even if the client closes its side before
        // the answer: the signal is published (or refused) and logged, never dropped half-way
        // between publish and PubAck. It also spares hyper a read per request to look for that
        // end of file, for which it allocated a fresh read buffer while the request's head and
        // body still held the old one.
        .half_close(true);
    let shared = Shared {
        app,
        router,
        limits,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        http,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut acceptors = Vec::new();
    for endpoint in endpoints {
        acceptors.push(tokio::spawn(accept_loop(
            endpoint,
            shared.clone(),
            graceful.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for acceptor in acceptors {
        let _ = acceptor.await;
    }
    // The accept loops are gone, so this is the last handle.
    let drained = async move {
        if let Ok(graceful) = Arc::try_unwrap(graceful) {
            graceful.shutdown().await;
        }
    };
    tokio::select! {
        () = drained => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace_s = limits.shutdown_grace.as_secs(), "shutdown grace elapsed; closing remaining connections");
        }
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    shared: Shared,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let Endpoint { listener, tls } = endpoint;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
        };
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = shared.limits.max_connections, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, peer, PeerCertificate(None), &shared, watcher).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        shared.limits.header_read_timeout,
                        tls.acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let cert = tls.client_certificate(stream.get_ref().1).map(Arc::new);
                            connection(stream, peer, PeerCertificate(cert), &shared, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    cert: PeerCertificate,
    shared: &Shared,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (app, router) = (shared.app.clone(), shared.router.clone());
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        super::correlation::observe(app.clone(), router.clone(), peer, cert.clone(), request)
    });
    let connection = watcher.watch(shared.http.serve_connection(TokioIo::new(stream), service));
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
