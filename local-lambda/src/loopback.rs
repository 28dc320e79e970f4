//! The guard of every local HTTP server of the workspace: they listen on
//! 127.0.0.1, and a browser on this machine can still reach them, sent there
//! by any web page. [`refuse_browsers`] guards the servers no page of their
//! own calls (the Runtime API, the test stand-ins); the playground, which
//! serves pages, allows its own origin and builds on [`is_loopback_host`].

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether a `Host` header names this machine by a loopback name (any
/// port): anything else is a name that resolved here (DNS rebinding).
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Refuses (403) a request with an `Origin` (only browsers send one; no AWS
/// SDK or Lambda runtime client does) or whose `Host` is not loopback.
/// `axum::middleware::from_fn(refuse_browsers)`.
pub async fn refuse_browsers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = (headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if headers.contains_key(header::ORIGIN) || !is_loopback_host(host) {
        return (
            StatusCode::FORBIDDEN,
            "refused: this local server answers only clients on this machine, not browsers",
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_or_without_a_port() {
        for host in [
            "127.0.0.1:9001",
            "localhost",
            "localhost:3000",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example:9001",
            "127.0.0.1.evil.example",
            "[::2]:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
