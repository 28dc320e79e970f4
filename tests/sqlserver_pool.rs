//! The SQL Server pool and page query over real TDS: tiberius talking to the
//! testkit TDS server, which counts connections, records statements and
//! injects faults. One server per test, so the counters are the test's own.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use assessments_common::budget::Limit;
use assessments_common::config::{Env, InsecureSettings};
use assessments_common::rules::AssessmentType;
use assessments_resolver::sqlserver::{
    AssessmentRecord, PAGE_STATEMENT, PAGES_STATEMENT, PageRequest, SqlError, SqlPool, SqlSettings,
};
use chrono::NaiveDate;
use testkit::fixtures::{AssessmentFixture, Fixtures};
use testkit::tds::TdsServer;
use testkit::tds::wire::Value;

use support::{budget, first_page, pool_settings, start_tds_server};

/// Every page of `request`, walked with the cursor.
async fn walk(pool: &SqlPool, mut request: PageRequest) -> Vec<AssessmentRecord> {
    let mut all = Vec::new();
    loop {
        let page = pool.fetch_page(&request, &budget()).await.expect("page");
        assert!(page.records.len() <= request.page_size as usize);
        all.extend(page.records);
        match page.next {
            Some(cursor) => request.after = Some(cursor),
            None => return all,
        }
    }
}

/// The fixture rows a query should return, in the query's order.
fn expected(filter: impl Fn(&AssessmentFixture) -> bool) -> Vec<i64> {
    let demo = Fixtures::demo();
    let mut rows: Vec<_> = demo.assessments.iter().filter(|a| filter(a)).collect();
    rows.sort_by(|x, y| {
        (y.administered_at, y.assessment_id).cmp(&(x.administered_at, x.assessment_id))
    });
    rows.iter().map(|a| a.assessment_id).collect()
}

fn check_bounded(server: &TdsServer, pool: &SqlPool) {
    let status = pool.status();
    assert!(status.peak_in_use <= status.max_size, "{status:?}");
    assert!(
        server.stats().peak_connections <= status.max_size,
        "{:?}",
        server.stats()
    );
    assert_eq!(status.in_use, 0, "every lease returned: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_max_concurrent_queries_never_open_more_than_max_connections() {
    const M: usize = 4;
    let server = start_tds_server().await;
    // Slow answers make the queries overlap, so the bound is really exercised.
    server.faults().set_stall_queries(Duration::from_millis(20));
    let pool = SqlPool::new(&pool_settings(&server, |s| {
        s.max_size = M;
        s.wait_timeout = Duration::from_secs(10);
    }))
    .expect("pool");
    let tasks: Vec<_> = (0..10 * M)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.fetch_page(&first_page(&format!("stu-{:04}", 1 + i % 30), 5), &budget())
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("every query succeeds");
    }
    let stats = server.stats();
    println!(
        "10 x {M} concurrent queries: server peak open connections {}, accepted {}, pool {:?}",
        stats.peak_connections,
        stats.accepted,
        pool.status()
    );
    assert_eq!(
        stats.peak_connections, M,
        "the queries overlapped up to the bound, never past it"
    );
    assert_eq!(
        stats.accepted, M as u64,
        "connections were reused, not re-created"
    );
    assert_eq!(pool.status().peak_in_use, M);
    check_bounded(&server, &pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_past_the_wait_timeout_get_a_clear_pool_timeout() {
    let server = start_tds_server().await;
    server
        .faults()
        .set_stall_queries(Duration::from_millis(600));
    let pool = SqlPool::new(&pool_settings(&server, |s| {
        s.max_size = 2;
        s.wait_timeout = Duration::from_millis(100);
    }))
    .expect("pool");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(
                async move { pool.fetch_page(&first_page("stu-0001", 5), &budget()).await },
            )
        })
        .collect();
    let mut ok = 0;
    let mut timed_out = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => ok += 1,
            Err(SqlError::PoolTimeout { limit, max_size: 2 }) => {
                assert_eq!(limit.after(), Duration::from_millis(100));
                timed_out += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // Nobody waited forever: every task answered, the four without a
    // connection by their 100 ms wait (its limit checked above).
    assert_eq!((ok, timed_out), (2, 4));
    let message = SqlError::PoolTimeout {
        limit: Limit::Own {
            after: Duration::from_millis(100),
            setting: "SQL_POOL_WAIT_TIMEOUT_MS",
        },
        max_size: 2,
    }
    .to_string();
    assert_eq!(
        message,
        "no SQL Server connection became free within 100ms (SQL_POOL_WAIT_TIMEOUT_MS) (pool of 2)"
    );
    check_bounded(&server, &pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_drops_is_discarded_and_the_query_retried_on_a_new_one() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |s| s.max_size = 2)).expect("pool");
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("warm-up");
    assert_eq!(server.stats().accepted, 1);

    // The pooled connection dies mid-query: discarded, and the read retried once.
    server.faults().drop_next_queries(1);
    let page = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("retried on a new connection");
    assert_eq!(page.records.len(), 5);
    let stats = server.stats();
    assert_eq!((stats.dropped_by_fault, stats.accepted), (1, 2));
    assert_eq!(pool.status().retired, 1);
    assert_eq!(pool.status().size, 1, "the dead connection left the pool");

    // The next query reuses the healthy connection.
    pool.fetch_page(&first_page("stu-0002", 5), &budget())
        .await
        .expect("next query");
    assert_eq!(server.stats().accepted, 2);
    check_bounded(&server, &pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_connection_dropped_mid_query_is_an_error_and_the_next_query_succeeds() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |s| s.max_size = 2)).expect("pool");
    server.faults().drop_next_queries(1);
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("dropped");
    assert!(error.is_connection_lost(), "{error:?}");
    assert_eq!(pool.status().size, 0, "discarded");
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("a new connection serves the next query");
    assert_eq!(server.stats().accepted, 2);
    check_bounded(&server, &pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_login_is_a_clear_error_that_carries_no_credentials() {
    let server = start_tds_server().await;
    let mut settings = pool_settings(&server, |_| {});
    settings.connection_string = settings
        .connection_string
        .replace("local-only-Passw0rd", "wrong-Secret-42");
    let pool = SqlPool::new(&settings).expect("pool");
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("rejected");
    assert!(
        matches!(error, SqlError::LoginRejected { code: 18456 }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "SQL Server rejected the login (error 18456)"
    );
    assert_eq!(server.stats().logins_rejected, 1);
    assert!(!format!("{error} {error:?} {settings:?} {pool:?}").contains("wrong-Secret-42"));

    // With the right password but a server that rejects every login.
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    server.faults().set_reject_logins(true);
    assert!(matches!(
        pool.fetch_page(&first_page("stu-0001", 5), &budget()).await,
        Err(SqlError::LoginRejected { .. })
    ));
    server.faults().set_reject_logins(false);
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("login accepted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_closed_connections_are_clear_errors_within_the_timeouts() {
    // A server that accepts and hangs up at once.
    let server = start_tds_server().await;
    server.faults().set_refuse_connections(true);
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("refused");
    // Refused at once: a connect error, not a timeout.
    assert!(matches!(error, SqlError::Connect(_)), "{error:?}");

    // Nothing listening at all.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let settings = SqlSettings::new(
        format!("Server=tcp:127.0.0.1,{port};User Id=u;Password=p;Encrypt=DANGER_PLAINTEXT"),
        InsecureSettings::ALLOWED,
    );
    let pool = SqlPool::new(&settings).expect("pool");
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("nothing listens");
    assert_eq!(
        error.to_string(),
        "cannot connect to SQL Server: i/o error (ConnectionRefused)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_fails_the_connect_or_the_query_within_its_timeout() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |s| {
        s.connect_timeout = Duration::from_millis(200);
        s.query_timeout = Duration::from_millis(200);
    }))
    .expect("pool");

    // Each stall is 25 times the timeout: the typed error, naming the 200 ms
    // that fired, shows which bound ended the wait.
    server.faults().set_stall_logins(Duration::from_secs(5));
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("login stalls");
    assert!(
        matches!(error, SqlError::ConnectTimeout { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("within 200ms (SQL_CONNECT_TIMEOUT_MS)"),
        "{error}"
    );
    server.faults().set_stall_logins(Duration::ZERO);

    server.faults().set_stall_queries(Duration::from_secs(5));
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("query stalls");
    assert!(matches!(error, SqlError::QueryTimeout { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the SQL Server query did not finish within 200ms (SQL_QUERY_TIMEOUT_MS)"
    );
    assert_eq!(
        pool.status().size,
        0,
        "the connection with an unread answer was discarded"
    );

    server.faults().set_stall_queries(Duration::ZERO);
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("healthy again");
    check_bounded(&server, &pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_keeps_the_connection_and_surfaces_its_code() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    server.faults().error_next_queries(1);
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("error token");
    assert!(
        matches!(
            error,
            SqlError::Server {
                code: 50000,
                class: 16
            }
        ),
        "{error:?}"
    );
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("same connection, next query");
    assert_eq!(
        server.stats().accepted,
        1,
        "a server error does not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_reach_the_server_only_as_parameters() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    let hostile = [
        "'".to_owned(),
        "stu-0001' OR '1'='1".to_owned(),
        "'; DROP TABLE x;--".to_owned(),
        "stu-0001\u{0}'; DROP TABLE assessments;--".to_owned(),
        "学生-٠١-🙂-\u{202E}".to_owned(),
        "x".repeat(10_000),
    ];
    for value in &hostile {
        let page = pool
            .fetch_page(&first_page(value, 5), &budget())
            .await
            .expect("a query, not an injection");
        assert!(
            page.records.is_empty(),
            "no student has id {:?}",
            &value[..value.len().min(40)]
        );
    }
    let recorded = server.recorded();
    assert_eq!(recorded.len(), hostile.len());
    for (statement, value) in recorded.iter().zip(&hostile) {
        assert_eq!(
            statement.text, *PAGE_STATEMENT,
            "the statement text is the same constant every time"
        );
        assert_eq!(
            statement.param("@P2"),
            Some(&Value::String(value.clone())),
            "the value arrived intact"
        );
    }
    // Read together, the same values travel inside the batch's one JSON
    // parameter, and the statement is again the same constant.
    server.clear_recorded();
    let requests: Vec<PageRequest> = hostile.iter().map(|v| first_page(v, 5)).collect();
    let refs: Vec<&PageRequest> = requests.iter().collect();
    for page in pool.fetch_pages(&refs, &budget()).await {
        assert!(page.expect("a query, not an injection").records.is_empty());
    }
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].text, *PAGES_STATEMENT);
    // assessmentType cannot carry hostile text at all: it is an enum by the
    // time it reaches this module, sent as its fixed name.
    let request = PageRequest {
        assessment_type: Some(AssessmentType::ReadingComprehension),
        ..first_page("stu-0001", 5)
    };
    pool.fetch_page(&request, &budget()).await.expect("page");
    let last = server.recorded().pop().expect("recorded");
    assert_eq!(
        last.param("@P3"),
        Some(&Value::String("READING_COMPREHENSION".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_every_page_returns_every_row_once_in_order() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");

    let all = walk(&pool, first_page("stu-0001", 7)).await;
    let ids: Vec<i64> = all.iter().map(|r| r.assessment_id).collect();
    assert_eq!(ids, expected(|a| a.student_id == "stu-0001"));
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no row twice"
    );
    assert!(ids.len() >= 60);
    // The fixture has two rows at the same instant: the id breaks the tie.
    let same: Vec<_> = all
        .windows(2)
        .filter(|w| w[0].administered_at == w[1].administered_at)
        .collect();
    assert!(!same.is_empty() && same.iter().all(|w| w[0].assessment_id > w[1].assessment_id));

    // Filters: one type, and a date range (inclusive days).
    let from = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    let to = NaiveDate::from_ymd_opt(2025, 6, 30).expect("date");
    let request = PageRequest {
        assessment_type: Some(AssessmentType::OralReadingFluency),
        from: Some(from),
        to: Some(to),
        ..first_page("stu-0001", 3)
    };
    let filtered: Vec<i64> = walk(&pool, request)
        .await
        .iter()
        .map(|r| r.assessment_id)
        .collect();
    assert_eq!(
        filtered,
        expected(|a| a.student_id == "stu-0001"
            && a.assessment_type == "ORAL_READING_FLUENCY"
            && a.administered_at.date() >= from
            && a.administered_at.date() <= to)
    );
    assert!(!filtered.is_empty());

    // A page holding exactly the last rows says there is no next page.
    let total = ids.len() as u32;
    let whole = pool
        .fetch_page(&first_page("stu-0001", total), &budget())
        .await
        .expect("page");
    assert_eq!((whole.records.len(), whole.next), (ids.len(), None));
    let short = pool
        .fetch_page(&first_page("stu-0001", total - 1), &budget())
        .await
        .expect("page");
    let rest = pool
        .fetch_page(
            &PageRequest {
                after: short.next,
                ..first_page("stu-0001", total - 1)
            },
            &budget(),
        )
        .await
        .expect("page");
    assert_eq!((rest.records.len(), rest.next), (1, None));
    assert_eq!(
        pool.fetch_page(&first_page("stu-0002", 10), &budget())
            .await
            .expect("page")
            .records,
        Vec::new()
    );
    check_bounded(&server, &pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_null_is_an_error_naming_the_column() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    server.faults().set_null_column(Some("raw_score"));
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("NULL raw_score");
    assert_eq!(error.to_string(), "column raw_score: unexpected NULL");
    server.faults().set_null_column(None);
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("the connection is still good");
    assert_eq!(server.stats().accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_another_student_fails_the_page() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    // Another student, and the same id in other case (equal under SQL
    // Server's case-insensitive collation, a different DynamoDB key).
    for other in ["stu-0002", "STU-0001"] {
        server
            .faults()
            .set_column_value(Some(("student_id", Value::String(other.to_owned()))));
        let error = pool
            .fetch_page(&first_page("stu-0001", 5), &budget())
            .await
            .expect_err(other);
        assert_eq!(
            error.to_string(),
            "column student_id: a row of another student than the one asked for"
        );
    }
    server.faults().clear();
    let page = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("page");
    assert!(page.records.iter().all(|r| &*r.student_id == "stu-0001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_together_are_each_what_the_page_query_reads_in_one_statement() {
    let server = start_tds_server().await;
    let pool = SqlPool::new(&pool_settings(&server, |_| {})).expect("pool");
    let mut second = first_page("stu-0001", 2);
    second.after = pool
        .fetch_page(&first_page("stu-0001", 2), &budget())
        .await
        .expect("page")
        .next;
    let mut invalid = first_page("stu-0002", 5);
    invalid.page_size = 0;
    let requests = [
        first_page("stu-0001", 5),
        second,
        invalid,
        first_page("stu-0002", 1),
        first_page("stu-9999", 3),
    ];
    let refs: Vec<&PageRequest> = requests.iter().collect();
    let before = server.stats().requests;
    let pages = pool.fetch_pages(&refs, &budget()).await;
    assert_eq!(server.stats().requests - before, 1, "one statement");
    assert_eq!(pages.len(), requests.len());
    for (request, page) in requests.iter().zip(&pages) {
        let alone = pool.fetch_page(request, &budget()).await;
        match (page, alone) {
            (Ok(page), Ok(alone)) => assert_eq!(page, &alone, "{request:?}"),
            (Err(e), Err(alone)) => assert_eq!(e.to_string(), alone.to_string()),
            (page, alone) => panic!("{request:?}: {page:?} / {alone:?}"),
        }
    }
    assert!(pages[2].is_err(), "the invalid request fails alone");
    // A row of another student fails the pages it came in, not quietly.
    server
        .faults()
        .set_column_value(Some(("student_id", Value::String("stu-0003".to_owned()))));
    let pages = pool.fetch_pages(&refs[..2], &budget()).await;
    assert!(pages.iter().all(|p| {
        p.as_ref().is_err_and(|e| {
            e.to_string() == "column student_id: a row of another student than the one asked for"
        })
    }));
}

/// Each limit set to zero: a connection is idle or old "past it" the
/// moment it is back in the pool, so no test waits for one to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_old_connections_are_retired_and_idle_ones_checked_before_use() {
    let server = start_tds_server().await;
    let query = |pool: SqlPool| async move {
        pool.fetch_page(&first_page("stu-0001", 5), &budget())
            .await
            .expect("page");
    };
    let checked = SqlPool::new(&pool_settings(&server, |s| {
        s.validate_after_idle = Duration::ZERO;
        s.idle_timeout = Duration::from_secs(3600);
    }))
    .expect("pool");
    query(checked.clone()).await;
    query(checked.clone()).await;
    let kinds: Vec<_> = server
        .recorded()
        .iter()
        .map(|s| (s.kind, s.text.clone()))
        .collect();
    assert_eq!(
        kinds[1],
        ("batch", "SELECT 1".to_owned()),
        "an idle connection is checked first: {kinds:?}"
    );
    assert_eq!(server.stats().accepted, 1, "and reused");

    let idle =
        SqlPool::new(&pool_settings(&server, |s| s.idle_timeout = Duration::ZERO)).expect("pool");
    query(idle.clone()).await;
    query(idle.clone()).await;
    assert_eq!(
        server.stats().accepted,
        3,
        "idle past the timeout: a new connection"
    );
    assert_eq!(idle.status().retired, 1);

    let old =
        SqlPool::new(&pool_settings(&server, |s| s.max_lifetime = Duration::ZERO)).expect("pool");
    query(old.clone()).await;
    query(old.clone()).await;
    assert_eq!(
        server.stats().accepted,
        5,
        "past its lifetime: a new connection"
    );
    assert_eq!(old.status().retired, 1);
}

#[test]
fn settings_come_from_the_environment_and_errors_name_the_variable() {
    let env = Env::from_pairs([("SQL_POOL_MAX_SIZE", "8"), ("SQL_QUERY_TIMEOUT_MS", "1500")]);
    let good = "Server=tcp:db.example,1433;User Id=app;Password=hunter2;Database=Assessments";
    let settings =
        SqlSettings::from_env(&env, good.to_owned(), InsecureSettings::ALLOWED).expect("settings");
    assert_eq!(
        (settings.max_size, settings.query_timeout),
        (8, Duration::from_millis(1500))
    );
    assert!(!format!("{settings:?}").contains("hunter2"));

    let error = SqlSettings::from_env(
        &Env::from_pairs([("SQL_POOL_MAX_SIZE", "0")]),
        good.to_owned(),
        InsecureSettings::ALLOWED,
    )
    .expect_err("0 connections");
    assert!(
        error
            .to_string()
            .starts_with("SQL_POOL_MAX_SIZE is invalid"),
        "{error}"
    );

    let bad = "Server=tcp:db.example,notaport;Password=hunter2";
    let error = SqlSettings::from_env(&Env::default(), bad.to_owned(), InsecureSettings::ALLOWED)
        .expect_err("bad port");
    assert!(
        error
            .to_string()
            .starts_with("SQLSERVER_CONNECTION_STRING is invalid"),
        "{error}"
    );
    assert!(!error.to_string().contains("hunter2"));
}

/// Opt-in: the same query against a real SQL Server. Set
/// `SQLSERVER_TEST_CONNECTION_STRING` to a database this test may write to;
/// it creates `dbo.assessments` from `infra/sql/` and loads the demo rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_real_sql_server_returns_the_same_pages() {
    let Ok(connection_string) = std::env::var("SQLSERVER_TEST_CONNECTION_STRING") else {
        eprintln!(
            "skipped: SQLSERVER_TEST_CONNECTION_STRING is not set (the only test allowed to skip)"
        );
        return;
    };
    let settings = SqlSettings::from_env(
        &Env::from_process(),
        connection_string,
        InsecureSettings::ALLOWED,
    )
    .expect("settings");
    load_real_sql_server(&settings).await;
    let pool = SqlPool::new(&settings).expect("pool");
    let ids: Vec<i64> = walk(&pool, first_page("stu-0001", 7))
        .await
        .iter()
        .map(|r| r.assessment_id)
        .collect();
    assert_eq!(ids, expected(|a| a.student_id == "stu-0001"));
    // The batch's statement (OPENJSON, CROSS APPLY) reads what the page query reads.
    let requests = [
        first_page("stu-0001", 3),
        first_page("stu-0002", 2),
        first_page("stu-9999", 1),
    ];
    let refs: Vec<&PageRequest> = requests.iter().collect();
    for (request, page) in requests
        .iter()
        .zip(pool.fetch_pages(&refs, &budget()).await)
    {
        let alone = pool.fetch_page(request, &budget()).await.expect("page");
        assert_eq!(page.expect("page of the batch"), alone, "{request:?}");
    }
}

/// Runs `infra/sql/001_schema.sql` and `002_seed_demo.sql` on a real server.
async fn load_real_sql_server(settings: &SqlSettings) {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let config =
        tiberius::Config::from_ado_string(&settings.connection_string).expect("connection string");
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .expect("connect");
    let mut client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("login");
    for script in [
        include_str!("../infra/sql/001_schema.sql"),
        include_str!("../infra/sql/002_seed_demo.sql"),
    ] {
        client
            .simple_query(script)
            .await
            .expect("script")
            .into_results()
            .await
            .expect("script results");
    }
}
