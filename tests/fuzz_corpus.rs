//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/`) and every
//! input that once broke something (`fuzz/regressions/<target>/`), replayed
//! through the same entry points on stable Rust in the normal test run.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` (re)writes the
//! seed inputs: real client streams captured from tiberius talking to the
//! TDS server, encoded worker replies, AppSync events.

mod support;

#[path = "../fuzz/entries.rs"]
mod entries;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `entry` on every corpus and regression input of `target`; returns how many.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry_path in entries.flatten().map(|e| e.path()) {
            let bytes = std::fs::read(&entry_path).expect("readable input");
            entry(&bytes);
            count += 1;
        }
    }
    count
}

#[test]
fn the_appsync_event_corpus_replays_cleanly() {
    let n = replay("appsync_event", entries::appsync_event);
    assert!(n >= 5, "{n} inputs");
}

#[test]
fn the_worker_reply_corpus_replays_cleanly() {
    let n = replay("worker_reply", entries::worker_reply);
    assert!(n >= 4, "{n} inputs");
}

#[test]
fn the_reply_stream_splits_into_frames_and_stops_at_a_bad_one() {
    use legacy_bridge::protocol::{Reply, WorkerProtocolError, encode};
    let replies = [
        Reply::Ready {
            pid: 42,
            confinement: confinement(),
            native: None,
        },
        Reply::Ready {
            pid: 43,
            confinement: confinement(),
            native: None,
        },
    ];
    let stream: Vec<u8> = replies
        .iter()
        .flat_map(|r| encode(r).expect("encode"))
        .collect();
    let decoded: Vec<Reply> = (entries::decode_reply_stream(&stream).into_iter())
        .map(|r| r.expect("valid"))
        .collect();
    assert_eq!(decoded, replies);
    // Cut inside the second frame: the first survives, the rest is "truncated".
    let cut = entries::decode_reply_stream(&stream[..stream.len() - 3]);
    assert!(cut[0].is_ok());
    assert!(matches!(cut[1], Err(WorkerProtocolError::Truncated { .. })));
    // A length over the limit is refused before anything is allocated for it.
    let oversized = entries::decode_reply_stream(&[255, 255, 255, 255, 0]);
    assert!(matches!(
        oversized[0],
        Err(WorkerProtocolError::TooLarge(_))
    ));
}

#[test]
fn the_tds_packet_corpus_replays_cleanly() {
    let n = replay("tds_packet", testkit::tds::fuzzing::packet_stream);
    assert!(n >= 2, "{n} inputs");
}

/// A worker's confinement as its `Ready` reports it.
fn confinement() -> legacy_bridge::Confinement {
    legacy_bridge::Confinement {
        writes: legacy_bridge::Writes::Enforced,
        syscalls_allowed: 130,
        data_limit_mib: 192,
        address_space_gib: 16,
        open_files: 256,
        oom_score_adj: 1000,
    }
}

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites fuzz/corpus/*/seed-* in the checkout; run by hand when a format changes (the replay tests above always run)"]
async fn write_seeds() {
    use legacy_bridge::protocol::{Reply, WireError, encode};
    use legacy_bridge::{Band, Flags, NativeStats, ScoredAssessment};
    use serde_json::json;

    // AppSync events: single, batch, with a nextToken, invalid.
    let event = testkit::appsync::get_assessments;
    let seeds = [
        (
            "single",
            event(json!({"studentId": "stu-0001", "limit": 5})),
        ),
        (
            "batch",
            json!([
                event(json!({"studentId": "stu-0001", "assessmentType": "READING_COMPREHENSION"})),
                event(
                    json!({"studentId": "stu-0002", "dateRange": {"from": "2025-01-01", "to": "2025-12-31"}})
                )
            ]),
        ),
        (
            "token",
            event(json!({"studentId": "stu-0001", "nextToken": "AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBB"})),
        ),
        ("invalid", event(json!({"studentId": "../x", "limit": 0}))),
        (
            "console",
            serde_json::from_str(include_str!("fixtures/appsync-console-event.json"))
                .expect("fixture"),
        ),
    ];
    for (name, value) in seeds {
        write_seed("appsync_event", name, value.to_string().as_bytes());
    }

    // Worker replies as a worker writes them.
    let scored = |id: &str| ScoredAssessment {
        id: id.to_owned(),
        scaled_score: 512.0,
        percentile: 61.0,
        band: Band::At,
        wcpm: Some(98.5),
        accuracy: 0.85,
        flags: Flags::LOW_ACCURACY,
    };
    let replies = [
        (
            "ready",
            Reply::Ready {
                pid: 4242,
                confinement: confinement(),
                native: Some(NativeStats {
                    engines_opened: 1,
                    ..NativeStats::default()
                }),
            },
        ),
        (
            "scored",
            Reply::Scored {
                id: 1,
                results: vec![scored("a-1"), scored("a-2")],
                native: Some(NativeStats {
                    engines_opened: 1,
                    results_opened: 2,
                    results_closed: 2,
                    score_calls: 2,
                    ..NativeStats::default()
                }),
            },
        ),
        (
            "failed",
            Reply::Failed {
                id: 1,
                error: WireError::Native {
                    operation: "score".into(),
                    status: 3,
                    message: "injected".into(),
                },
                native: None,
            },
        ),
        (
            "init-failed",
            Reply::InitFailed {
                message: "cannot load".into(),
            },
        ),
    ];
    let mut stream = Vec::new();
    for (name, reply) in &replies {
        let frame = encode(reply).expect("encode");
        write_seed("worker_reply", name, &frame);
        stream.extend(frame);
    }
    write_seed("worker_reply", "stream", &stream);

    // A real client stream: tiberius (through the pool) talking to the TDS
    // server, captured by a relay in between.
    let server = support::start_tds_server().await;
    let upstream = server.addr();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay_addr = listener.local_addr().expect("addr");
    let captured = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&captured);
    let relay = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, _) = listener.accept().await.expect("accept");
        let server = tokio::net::TcpStream::connect(upstream)
            .await
            .expect("connect");
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        });
        let mut buffer = [0u8; 8192];
        loop {
            let n = client_read.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            sink.lock().await.extend_from_slice(&buffer[..n]);
            if server_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    });
    let connection = server
        .connection_string()
        .replace(&upstream.port().to_string(), &relay_addr.port().to_string());
    let mut settings = support::pool_settings(&server, |s| s.max_size = 1);
    settings.connection_string = connection;
    let pool = assessments_resolver::sqlserver::SqlPool::new(&settings).expect("pool");
    let page = pool
        .fetch_page(
            &assessments_resolver::sqlserver::PageRequest {
                student_id: "stu-0001".into(),
                assessment_type: None,
                from: None,
                to: None,
                page_size: 3,
                after: None,
            },
            &support::budget(),
        )
        .await
        .expect("page");
    assert_eq!(page.records.len(), 3);
    // Closing the pool closes its connection: the relay sees the end of the
    // client's stream, and has captured all of it.
    pool.close();
    tokio::time::timeout(testkit::PATIENCE, relay)
        .await
        .expect("the relay ends with the client's connection")
        .expect("the relay");
    let bytes = captured.lock().await.clone();
    assert!(bytes.len() > 100, "captured {} bytes", bytes.len());
    write_seed("tds_packet", "tiberius-session", &bytes);
    // Each message of the session on its own, too.
    let mut rest: &[u8] = &bytes;
    let mut index = 0;
    while rest.len() >= 8 {
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).clamp(8, rest.len());
        write_seed("tds_packet", &format!("packet-{index}"), &rest[..len]);
        rest = &rest[len..];
        index += 1;
    }
}
