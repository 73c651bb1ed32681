//! Graceful shutdown for zero-downtime rollouts.
//!
//! On SIGTERM Kubernetes removes the pod from Service endpoints *while* the
//! process is told to stop; the two race. So the service first reports
//! not-ready and keeps serving for the drain period, letting every load
//! balancer notice, and only then stops accepting connections and waits for
//! the requests in flight to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Shared flag read by `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, never resolve this branch rather
        // than shutting down at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}

/// Waits for `signal`, flips readiness, then waits `drain` more: the future
/// given to axum's graceful shutdown, which stops accepting when it resolves.
pub async fn drain_after(signal: impl Future<Output = ()>, readiness: Readiness, drain: Duration) {
    signal.await;
    readiness.start_draining();
    tracing::info!(
        drain_seconds = drain.as_secs_f64(),
        "readiness is now 503; draining"
    );
    tokio::time::sleep(drain).await;
    tracing::info!("drain over; closing listener and waiting for in-flight requests");
}
