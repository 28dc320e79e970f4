//! A stand-in for the X-Ray daemon: receives the segment documents a
//! function sends over UDP (`{"format":"json","version":1}` then a newline
//! and the document, one per datagram), keeps them, and shows one trace as
//! a tree of timed spans.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Documents kept at most (the oldest go first): a long playground session stays bounded.
const KEEP: usize = 10_000;

/// The daemon; stops receiving on drop.
pub struct XrayDaemon {
    address: String,
    documents: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    /// Datagrams that were not a header line and a JSON document.
    malformed: Arc<Mutex<Vec<String>>>,
}

impl XrayDaemon {
    pub fn start() -> std::io::Result<XrayDaemon> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let address = socket.local_addr()?.to_string();
        let documents = Arc::new(Mutex::new(Vec::new()));
        let malformed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, bad, stopped) = (
            Arc::clone(&documents),
            Arc::clone(&malformed),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name("xray-daemon".to_owned())
            .spawn(move || {
                // Datagrams up to 64 KiB, as the daemon accepts.
                let mut buffer = vec![0u8; 65_536];
                while !stopped.load(Ordering::Relaxed) {
                    let Ok(length) = socket.recv(&mut buffer) else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    match parse_datagram(&text) {
                        Some(document) => {
                            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                            if kept.len() == KEEP {
                                kept.remove(0);
                            }
                            kept.push(document);
                        }
                        None => bad.lock().unwrap_or_else(|p| p.into_inner()).push(text),
                    }
                }
            })?;
        Ok(XrayDaemon {
            address,
            documents,
            stop,
            malformed,
        })
    }

    /// The value of `AWS_XRAY_DAEMON_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The setting that points a function at this daemon (Lambda sets it with active tracing).
    pub fn env_var(&self) -> (String, String) {
        ("AWS_XRAY_DAEMON_ADDRESS".to_owned(), self.address.clone())
    }

    /// Every document received, in arrival order.
    pub fn documents(&self) -> Vec<Value> {
        self.documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Datagrams that did not follow the daemon protocol.
    pub fn malformed(&self) -> Vec<String> {
        self.malformed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The documents of trace `trace_id`, once `complete` says they are all
    /// there or `timeout` passed (UDP: they arrive after the invocation
    /// answered, in any order).
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        complete: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let found = self.trace(trace_id);
            if complete(&found) || started.elapsed() > timeout {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The documents of trace `trace_id`.
    pub fn trace(&self, trace_id: &str) -> Vec<Value> {
        self.documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| d["trace_id"] == trace_id)
            .cloned()
            .collect()
    }

    /// Trace `trace_id` as a list of spans in start order, each with its
    /// depth in the tree, its start offset from the trace's first span and
    /// its duration in milliseconds, and what X-Ray would show of it.
    pub fn timeline(&self, trace_id: &str) -> Vec<Value> {
        timeline(&self.trace(trace_id))
    }
}

impl Drop for XrayDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn parse_datagram(text: &str) -> Option<Value> {
    let (header, body) = text.split_once('\n')?;
    let header: Value = serde_json::from_str(header).ok()?;
    if header != json!({"format": "json", "version": 1}) {
        return None;
    }
    let document: Value = serde_json::from_str(body).ok()?;
    document["trace_id"].is_string().then_some(document)
}

/// Documents of one trace as spans in start order, depth first.
pub fn timeline(documents: &[Value]) -> Vec<Value> {
    let start = documents
        .iter()
        .filter_map(|d| d["start_time"].as_f64())
        .fold(f64::INFINITY, f64::min);
    let mut sorted: Vec<&Value> = documents.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |d: &Value| d["start_time"].as_f64().unwrap_or(0.0);
        key(a).total_cmp(&key(b))
    });
    let mut out = Vec::new();
    // Roots: documents whose parent is not in this set (Lambda's segment is not ours).
    let ids: Vec<&str> = sorted.iter().filter_map(|d| d["id"].as_str()).collect();
    let mut stack: Vec<(&Value, usize)> = sorted
        .iter()
        .rev()
        .filter(|d| !d["parent_id"].as_str().is_some_and(|p| ids.contains(&p)))
        .map(|d| (*d, 0))
        .collect();
    while let Some((document, depth)) = stack.pop() {
        // Milliseconds, to the microsecond.
        let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
        let begin = document["start_time"].as_f64().unwrap_or(start);
        let end = document["end_time"].as_f64().unwrap_or(begin);
        let detail = document["aws"]["operation"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                document["http"]["response"]["status"]
                    .as_u64()
                    .map(|s| format!("HTTP {s}"))
            });
        out.push(json!({
            "name": document["name"],
            "depth": depth,
            "startMs": ms(begin - start),
            "durationMs": ms(end - begin),
            "detail": detail,
            "fault": document["fault"].as_bool().unwrap_or(false),
            "error": document["error"].as_bool().unwrap_or(false),
            "cause": document["cause"]["exceptions"][0]["message"],
        }));
        let id = document["id"].as_str();
        for child in sorted
            .iter()
            .rev()
            .filter(|d| id.is_some() && d["parent_id"].as_str() == id)
        {
            stack.push((child, depth + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_nests_children_under_their_parents_in_start_order() {
        let doc = |id: &str, parent: &str, name: &str, start: f64, end: f64| {
            json!({"id": id, "parent_id": parent, "trace_id": "t", "name": name,
                   "start_time": start, "end_time": end})
        };
        let spans = timeline(&[
            doc("c", "a", "SQL Server connection", 10.002, 10.003),
            doc("a", "lambda", "SQL Server", 10.001, 10.004),
            doc("b", "lambda", "DynamoDB", 10.0, 10.001),
            doc("d", "lambda", "legacy component", 10.004, 10.005),
        ]);
        let names: Vec<(&str, u64)> = spans
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or(""),
                    s["depth"].as_u64().unwrap_or(9),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("DynamoDB", 0),
                ("SQL Server", 0),
                ("SQL Server connection", 1),
                ("legacy component", 0)
            ]
        );
        assert_eq!(spans[1]["startMs"], 1.0);
        assert_eq!(spans[1]["durationMs"], 3.0);
    }

    #[test]
    fn only_datagrams_in_the_daemon_protocol_are_documents() {
        assert!(
            parse_datagram("{\"format\":\"json\",\"version\":1}\n{\"trace_id\":\"t\"}").is_some()
        );
        assert!(parse_datagram("{\"trace_id\":\"t\"}").is_none());
        assert!(
            parse_datagram("{\"format\":\"json\",\"version\":2}\n{\"trace_id\":\"t\"}").is_none()
        );
    }
}
