//! Every local HTTP server of the stack listens on 127.0.0.1, where a browser
//! on this machine can reach it, sent by any web page: moto (its own server,
//! through testkit/moto_server.py), the servers built on `LocalServer` (here
//! the DynamoDB proxy) and the local Runtime API each refuse a request with
//! an `Origin` or a non-loopback `Host`, and answer the same request without.

use std::io::{Read, Write};
use std::net::TcpStream;

use testkit::dynamo::{DynamoProxy, Moto};
use testkit::lambda_api::RuntimeApi;

/// The status of one `method path` request to `endpoint` (`http://127.0.0.1:port`)
/// with a `Host` and more `headers`.
fn status(endpoint: &str, method: &str, path: &str, host: &str, headers: &str) -> u16 {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line from {endpoint}: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_servers_refuse_browsers_and_answer_local_clients() {
    let moto = Moto::start().await.expect("moto");
    let proxy = DynamoProxy::start(moto.endpoint()).await.expect("proxy");
    let api = RuntimeApi::start().await.expect("runtime API");
    let runtime_api = format!("http://{}", api.address());
    let servers = [
        (moto.endpoint().to_owned(), "GET", "/moto-api/data.json"),
        (proxy.endpoint(), "GET", "/moto-api/data.json"),
        (runtime_api, "POST", "/2018-06-01/runtime/init/error"),
    ];
    for (endpoint, method, path) in servers {
        let host = endpoint.trim_start_matches("http://").to_owned();
        let local = status(&endpoint, method, path, &host, "");
        assert_ne!(local, 403, "{endpoint}: a local client is answered");
        let page = status(
            &endpoint,
            method,
            path,
            &host,
            "Origin: https://elsewhere.example\r\n",
        );
        assert_eq!(page, 403, "{endpoint}: a web page's request");
        let rebound = status(&endpoint, method, path, "elsewhere.example:80", "");
        assert_eq!(rebound, 403, "{endpoint}: a name that resolved here");
    }
}
