//! The reference: the least an axum service can do per webhook (read the body, answer 200),
//! served by `axum::serve` with TCP_NODELAY on the same kind of tokio runtime as the receiver.
//! The receiver's CPU time per request is compared against this process's.

use axum::http::StatusCode;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use std::io::Write;
use std::net::SocketAddr;

pub async fn serve(bind: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    // The suite reads this line to learn the port.
    let mut out = std::io::stdout();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    let app = Router::new().route(
        "/webhook",
        post(|body: Bytes| async move {
            drop(body);
            StatusCode::OK
        }),
    );
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
