//! A hostile component in the default isolation (workers), through the
//! function binary: the test build, or the release bootstrap with
//! `RESOLVER_BINARY=target/lambda/assessments-resolver/bootstrap` (the test
//! command's last step runs it so). The component (`legacy-shim`'s hostile
//! variant, `hostile.hpp`) scores correctly and, at engine open and on every
//! call, tries what a compromised one would: TCP and UDP to 127.0.0.1 with
//! its parent's environment, a double-forked daemon, forged audit, EMF and
//! `REPORT` lines on stdout and stderr, a write outside its directory,
//! ptrace of its parent, io_uring, and 1 GiB on a 256 MB function.
//!
//! Every call answers with data; no connection or datagram arrives; no
//! process outlives the function; no file is written; no forged line stands
//! as a line of the function's output: each arrives as the `output` field of
//! a "legacy worker output" line.

mod support;

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::appsync::get_assessments;
use testkit::function::{Function, lambda_env, worker_output};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

use support::Stack;

const CALLS: usize = 5;
const FORGED: &str = "forged-by-component";
/// What each attempt gets, in the component's own words.
const CONTAINED: &str = "tcp: denied (Operation not permitted); \
                         udp: denied (Operation not permitted); \
                         daemon: denied (Operation not permitted); \
                         write outside its directory: denied (Permission denied); \
                         ptrace parent: denied (Operation not permitted); \
                         io_uring: denied (Operation not permitted); \
                         allocate 1 GiB: refused (Cannot allocate memory)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_component_answers_and_nothing_it_tries_leaves_its_worker() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("TCP listener");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("UDP socket");
    tcp.set_nonblocking(true).expect("non-blocking");
    udp.set_nonblocking(true).expect("non-blocking");
    let config = format!(
        "hostile_tcp={};hostile_udp={}",
        tcp.local_addr().expect("addr").port(),
        udp.local_addr().expect("addr").port()
    );
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "LEGACY_ISOLATION" | "LEGACY_LIB_PATH" | "LEGACY_CONFIG"
        )
    });
    env.push(("LEGACY_LIB_PATH".into(), legacy_shim::HOSTILE_PATH.into()));
    env.push(("LEGACY_CONFIG".into(), config));
    // A 256 MB function (lambda_env): its workers get 192 MiB of data.
    env.extend(lambda_env(&api, "assessments-resolver"));
    let mut function = Function::spawn(&support::binary_under_test(), env);

    for _ in 0..CALLS {
        let event = get_assessments(json!({"studentId": "stu-0001", "limit": 2}));
        let answer = api
            .invoke(event, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("invoke: {e}; the function wrote {:#?}", function.output()));
        assert!(
            matches!(&answer, InvocationResult::Response(page)
                if page["items"].as_array().map(Vec::len) == Some(2)),
            "every call answers with data: {answer:?}"
        );
    }
    let (output, _) = function.terminate();

    // The init line states the confinement in force (Landlock's part depends on the kernel).
    let init: Value = output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "legacy component isolated in worker processes")
        .expect("the isolation's init line");
    // On a 256 MB function with no worker setting: two workers, each with half
    // of what the function leaves them (docs/deploy.md, "Memory and workers").
    assert_eq!(init["max_workers"], 2, "{init}");
    assert_eq!(init["max_rss_kib"], 96 * 1024, "{init}");
    let confinement = init["confinement"].as_str().unwrap_or_default();
    assert!(confinement.starts_with("writes "), "{confinement}");
    for part in [
        "seccomp allowlist of ",
        "RLIMIT_DATA 192 MiB",
        "oom_score_adj 1000",
    ] {
        assert!(confinement.contains(part), "{part}: {confinement}");
    }

    // What the component printed came through as data, its attempts all refused.
    let relayed = worker_output(&output);
    let summaries: Vec<&str> = relayed
        .iter()
        .map(|(_, text)| text.as_str())
        .filter(|text| text.starts_with("legacy hostile component"))
        .collect();
    assert_eq!(
        summaries.len(),
        1 + CALLS,
        "open and each call: {output:#?}"
    );
    for summary in &summaries {
        let attempts = summary.split_once("): ").map_or("", |(_, rest)| rest);
        assert_eq!(attempts, CONTAINED, "{summary}");
    }
    let forged_relayed = relayed.iter().filter(|(_, t)| t.contains(FORGED)).count();
    assert_eq!(
        forged_relayed,
        (1 + CALLS) * 6,
        "3 forged lines on stdout and 3 on stderr per attempt, each as data"
    );

    // None stands as a line of its own, on stdout or stderr.
    for line in output.iter().chain(function.stderr().iter()) {
        assert!(!line.starts_with("REPORT "), "a forged REPORT line: {line}");
        if let Ok(doc) = serde_json::from_str::<Value>(line) {
            assert_ne!(doc["request_id"], FORGED, "a forged audit line: {line}");
            assert_ne!(doc["FunctionName"], FORGED, "a forged EMF document: {line}");
        }
    }

    // Nothing reached the listeners.
    assert_eq!(
        tcp.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "no TCP connection"
    );
    let mut datagram = [0u8; 2048];
    assert_eq!(
        udp.recv_from(&mut datagram)
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "no UDP datagram"
    );

    // Nothing outlived the function: its workers and any daemon are gone,
    // and no file was left outside the workers' directories.
    let mut workers: Vec<u64> = relayed.iter().map(|(pid, _)| *pid).collect();
    workers.dedup();
    assert!(!workers.is_empty());
    for pid in workers {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !comm.contains("--legacy-worker"),
            "worker {pid} outlived the function"
        );
    }
    let daemons = testkit::procfs::processes_named("legacy-daemon");
    assert!(
        daemons.is_empty(),
        "daemons outlived the function: {daemons:?}"
    );
    let written: Vec<_> = std::fs::read_dir("/tmp")
        .expect("temp dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("legacy-hostile-")
        })
        .map(|e| e.path())
        .collect();
    assert!(written.is_empty(), "written outside: {written:?}");
}
