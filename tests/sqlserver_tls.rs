//! The SQL Server connection over TLS, through the resolver's own settings
//! and pool (the code production runs): the local TDS server negotiates
//! encryption as SQL Server does and presents a certificate signed by a CA
//! it made at start.

mod support;

use assessments_common::config::{Env, InsecureSettings};
use assessments_resolver::sqlserver::{SqlError, SqlPool, SqlSettings};
use testkit::tds::tls::Encryption;
use testkit::tds::{TdsServer, TdsServerConfig};

use support::{budget, first_page};

async fn server(encryption: Encryption) -> TdsServer {
    TdsServer::start(TdsServerConfig {
        encryption,
        ..TdsServerConfig::default()
    })
    .await
    .expect("TDS server starts")
}

/// Settings as the resolver reads them from its environment.
fn settings(connection_string: String) -> SqlSettings {
    let env = Env::from_pairs(Vec::<(String, String)>::new());
    SqlSettings::from_env(&env, connection_string, InsecureSettings::ALLOWED)
        .expect("valid settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_connection_is_encrypted_and_the_certificate_checked_against_its_ca() {
    let server = server(Encryption::Required).await;
    let connection_string = server.connection_string();
    assert!(connection_string.contains("Encrypt=true;TrustServerCertificateCA="));
    let pool = SqlPool::new(&settings(connection_string)).expect("pool");
    for _ in 0..3 {
        let page = pool
            .fetch_page(&first_page("stu-0001", 5), &budget())
            .await
            .expect("a page over TLS");
        assert_eq!(page.records.len(), 5);
    }
    let stats = server.stats();
    // One connection, pooled: one handshake, one login, three queries inside TLS.
    assert_eq!((stats.tls_handshakes, stats.logins_ok), (1, 1), "{stats:?}");
    assert_eq!(stats.requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_false_encrypts_the_login_only_where_the_server_allows_it() {
    let server = server(Encryption::Available).await;
    let ca = server.ca_pem().expect("a CA").display().to_string();
    let pool = SqlPool::new(&settings(server.connection_string_with(&format!(
        "Encrypt=false;TrustServerCertificateCA={ca}"
    ))))
    .expect("pool");
    let page = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("a page after a login-only handshake");
    assert!(!page.records.is_empty());
    let stats = server.stats();
    assert_eq!((stats.tls_handshakes, stats.logins_ok), (1, 1), "{stats:?}");
    assert_eq!(stats.clear_sessions, 1, "the queries crossed in the clear");

    // The same client against a server that forces encryption: the whole session.
    let forced = self::server(Encryption::Required).await;
    let ca = forced.ca_pem().expect("a CA").display().to_string();
    let pool = SqlPool::new(&settings(forced.connection_string_with(&format!(
        "Encrypt=false;TrustServerCertificateCA={ca}"
    ))))
    .expect("pool");
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("a page over TLS");
    assert_eq!(forced.stats().tls_handshakes, 1);
}

/// On Lambda (insecure settings refused) the string does not decide the
/// transport: `Encrypt=false` still gets the whole session encrypted, and a
/// control character (which parsers read differently) is refused at init.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_the_whole_session_is_encrypted_whatever_the_string_says() {
    let server = server(Encryption::Available).await;
    let ca = server.ca_pem().expect("a CA").display().to_string();
    let on_lambda = Env::from_pairs([("AWS_LAMBDA_FUNCTION_NAME", "assessments-resolver")]);
    let refused = InsecureSettings::from_env(&on_lambda).expect("valid");
    for encrypt in ["Encrypt=false", "Encrypt=DANGER_PLAINTEXT"] {
        let string =
            server.connection_string_with(&format!("{encrypt};TrustServerCertificateCA={ca}"));
        let settings = SqlSettings::from_env(&on_lambda, string, refused).expect("settings");
        let pool = SqlPool::new(&settings).expect("pool");
        pool.fetch_page(&first_page("stu-0001", 5), &budget())
            .await
            .expect("a page over TLS");
    }
    let stats = server.stats();
    assert_eq!((stats.tls_handshakes, stats.requests), (2, 2), "{stats:?}");
    assert_eq!(stats.clear_sessions, 0, "no query crossed in the clear");

    let smuggled =
        server.connection_string_with(&format!("TrustServerCertificateCA={ca};\r\nEncrypt=false"));
    let error = SqlSettings::from_env(&on_lambda, smuggled, refused).expect_err("refused");
    assert!(
        error.to_string().contains("contains a control character"),
        "{error}"
    );
    assert_eq!(
        server.stats().accepted,
        2,
        "nothing more reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_encryption_refuses_a_plaintext_client() {
    let server = server(Encryption::Required).await;
    let pool = SqlPool::new(&settings(
        server.connection_string_with("Encrypt=DANGER_PLAINTEXT"),
    ))
    .expect("pool");
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("refused");
    // Refused at once, not timed out: a connect or TLS error, not a timeout.
    assert!(
        matches!(error, SqlError::Connect(_) | SqlError::Tls(_)),
        "{error:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.refused_plaintext, 1, "{stats:?}");
    assert_eq!(
        (stats.logins_ok, stats.requests),
        (0, 0),
        "no login, no query"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_client_does_not_trust_is_a_typed_tls_error_at_checkout() {
    let server = server(Encryption::Required).await;
    // Encryption without naming the local CA: the system's CAs do not know it.
    let pool =
        SqlPool::new(&settings(server.connection_string_with("Encrypt=true"))).expect("pool");
    let error = pool
        .fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect_err("untrusted certificate");
    let SqlError::Tls(reason) = &error else {
        panic!("expected a TLS error, got {error:?}");
    };
    assert!(
        reason.to_lowercase().contains("certificate"),
        "the reason names the certificate: {reason}"
    );
    // The message never carries the connection string's secrets.
    assert!(
        !error.to_string().contains("local-only-Passw0rd"),
        "{error}"
    );
    let stats = server.stats();
    assert_eq!(
        (stats.logins_ok, stats.requests),
        (0, 0),
        "no login, no query"
    );

    // Trusting any certificate (local only) gets through.
    let pool = SqlPool::new(&settings(
        server.connection_string_with("Encrypt=true;TrustServerCertificate=true"),
    ))
    .expect("pool");
    pool.fetch_page(&first_page("stu-0001", 5), &budget())
        .await
        .expect("trusted");
}
