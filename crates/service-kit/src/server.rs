//! Accepting connections: HTTP/1.1 over hyper, with a bound on everything a
//! client controls before the application sees a request.
//!
//! - A header must arrive whole within `header_read_timeout` (this is also the
//!   idle timeout of a keep-alive connection) and fit in
//!   [`MAX_HEADER_BYTES`] and [`MAX_HEADERS`]; past that hyper answers 431 or
//!   closes the connection.
//! - At most `max_connections` connections are served at once. One past the
//!   cap is answered `503` problem+json with `Connection: close` (see
//!   [`refuse`]); past a second, small cap of refusals it is closed unanswered.
//! - The body is bounded by the router (`DefaultBodyLimit`) and the whole
//!   request by the request timeout.
//!
//! `axum::serve` sets no timer, so hyper's header timeout never fires there, and
//! it has no connection cap: hence this loop, used by `main` and by the tests.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use axum::Router;

use crate::shutdown::{self, Readiness};

/// The largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields one request may carry.
pub const MAX_HEADERS: usize = 64;
/// hyper's read (and write queue) buffer per connection: the header limit plus
/// room for a body chunk. hyper's default is about 400 KiB.
const MAX_BUFFER_BYTES: usize = 32 * 1024;
/// Refusals being written at once; beyond this a connection is just closed.
const MAX_REFUSALS: usize = 64;
/// How long a refused client gets to read its 503 before the socket closes.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// How the server treats connections (from [`crate::config::ServiceConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `MAX_CONNECTIONS`: connections served at once (default 256).
    pub max_connections: usize,
    /// `HEADER_READ_TIMEOUT_SECONDS`: longest wait for a whole request head,
    /// and for the next request on an idle keep-alive connection (default 10).
    pub header_read_timeout: Duration,
    /// `SHUTDOWN_DRAIN_SECONDS`: how long to keep serving after SIGTERM while
    /// `/readyz` says 503, so load balancers stop routing here first (default 5).
    pub shutdown_drain: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            shutdown_drain: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` until `signal` resolves, then drains as
/// described in [`shutdown`] (`readiness`, the flag `/readyz` reads, is set
/// first), and returns once in-flight requests are done.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    readiness: Readiness,
    limits: ServerLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let stop = shutdown::drain_after(signal, readiness, limits.shutdown_drain);
    let service = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_BUFFER_BYTES);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            // Errors here are the client's (a reset, a header timeout, a 431).
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// An `accept` that failed: a connection reset before it was accepted is the
/// client's business; anything else (out of file descriptors) is logged, and
/// accepting pauses a second instead of spinning, as `axum::serve` does.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The answer past the connection cap, whatever was asked.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 110\r\n\
\r\n\
{\"type\":\"about:blank\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"too many connections, retry later\"}";

/// Answers [`REFUSAL`] and closes. The client's request is read (and thrown
/// away) until it closes or [`REFUSAL_LINGER`] passes: closing a socket with
/// unread input sends a reset, which can destroy the answer before the client
/// reads it.
async fn refuse(mut stream: TcpStream) {
    let linger = async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_problem_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 503);
    }
}
