//! An axum app served on 127.0.0.1 (an ephemeral port) until dropped: the
//! HTTP peers of the testkit (the DynamoDB proxy, the scoring API stand-in),
//! refusing browsers (`local_lambda::loopback`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::serve::ListenerExt;

use tokio::sync::watch;

/// A running server; stops (gracefully) when dropped.
pub struct LocalServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Client connections accepted so far.
    accepted: Arc<AtomicU64>,
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LocalServer {
    /// Binds 127.0.0.1:`port` (0: any free port) and serves `app` on the current runtime.
    pub async fn start(app: axum::Router, port: u16, name: &'static str) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("{name}: bind 127.0.0.1:{port}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let listener = listener.tap_io(move |tcp| {
            counter.fetch_add(1, Ordering::Relaxed);
            // As AWS's endpoints answer: without Nagle's algorithm, a response
            // written in two parts on a kept-alive connection would wait for the
            // client's delayed ACK (40 ms) before its second part left.
            let _ = tcp.set_nodelay(true);
        });
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            // Each request carries its connection's peer address (`ConnectInfo`),
            // which tells requests over a kept-alive connection apart from new ones.
            let app = app
                .layer(axum::middleware::from_fn(
                    local_lambda::loopback::refuse_browsers,
                ))
                .into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, server = name, "stopped");
            }
        });
        Ok(LocalServer {
            addr,
            stop,
            accepted,
        })
    }

    /// Client connections accepted since the start (kept-alive ones count once).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
