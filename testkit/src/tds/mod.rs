//! A TDS server (the SQL Server wire protocol, 7.1 to 8.0) for tests and
//! local runs, serving the fixture rows read-only.
//!
//! It answers as SQL Server does, so that clients nobody here wrote work
//! against it (tiberius, tedious, Microsoft's `mssql-tds`, FreeTDS under
//! pymssql: `testkit/tests/independent_clients.rs`): PRELOGIN with
//! encryption negotiated as SQL Server does it ([`tls`]: a CA and
//! certificate made at start, required by default), or TDS 8.0's strict
//! encryption (TLS first); LOGIN7 checked against configured credentials and
//! answered with the login sequence SQL Server sends (ENVCHANGE database,
//! collation, language and packet size, INFO 5701/5703, LOGINACK with the
//! negotiated version); SQL batches and RPCs (`sp_executesql`, `sp_prepare`,
//! `sp_execute`, `sp_prepexec`, `sp_unprepare`, `sp_reset_connection`, by id
//! or by name) with typed parameters; statements parsed as T-SQL and run
//! over the fixtures ([`sql`]); DONE, DONEINPROC and DONEPROC with the
//! spec's flags and counts; the RESETCONNECTION bit acknowledged; attention.
//! It records every statement and parameter it receives, logs every
//! statement it refuses (its text, truncated, and the error number), counts
//! open connections (current and peak), and injects faults on demand
//! ([`Faults`]). Not implemented: writes, temporary tables, MARS, cursors,
//! bulk copy, transactions that isolate anything (they are counted, and
//! acknowledged as SQL Server does, over data that never changes).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use testkit::tds::{TdsServer, TdsServerConfig};
//! let server = TdsServer::start(TdsServerConfig::default()).await?;
//! println!("{}", server.connection_string());
//! server.faults().drop_next_queries(1);
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod fuzzing;
pub mod request;
pub mod sql;
pub mod tls;
pub mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::faults::Trigger;
use crate::fixtures::Fixtures;
use catalog::{EnvChange, SessionSettings, StatementOutcome};
use request::{Login, Param, SP_EXECUTE, SP_EXECUTESQL, SP_PREPARE, SP_PREPEXEC, SP_UNPREPARE};
use sql::{Prepared, Session};
use tls::Negotiated;
use wire::{
    COLLATION, ClientMessageError, DONE_ATTN, DONE_COUNT, DONE_ERROR, DONE_FINAL, DONE_MORE,
    ENV_BEGIN_TRAN, ENV_COLLATION, ENV_COMMIT_TRAN, ENV_DATABASE, ENV_LANGUAGE, ENV_PACKET_SIZE,
    ENV_RESET_ACK, ENV_ROLLBACK_TRAN, Message, PKT_ATTENTION, PKT_LOGIN7, PKT_PRELOGIN, PKT_REPLY,
    PKT_RPC, PKT_SQL_BATCH, TOKEN_DONE, TOKEN_DONEINPROC, TOKEN_DONEPROC, TdsVersion, TokenWriter,
    Value,
};

const SERVER_NAME: &str = "testkit-tds";
/// The session id every connection reports (`@@SPID`, the packet headers').
const SPID: u16 = 54;
/// How much of a refused statement's text its log line keeps.
const LOGGED_STATEMENT_CHARS: usize = 200;
/// How many received statements are kept for inspection (oldest dropped first).
pub const RECORDED_STATEMENTS_KEPT: usize = 1024;

#[derive(Debug, Clone)]
pub struct TdsServerConfig {
    /// Where to listen; port 0 picks a free port. Loopback only by default.
    pub bind: SocketAddr,
    pub user: String,
    pub password: String,
    pub database: String,
    pub fixtures: Arc<Fixtures>,
    /// Required by default: every session encrypted, as production's server should.
    pub encryption: tls::Encryption,
}

impl Default for TdsServerConfig {
    fn default() -> Self {
        TdsServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "resolver".to_owned(),
            password: "local-only-Passw0rd".to_owned(),
            database: "Assessments".to_owned(),
            fixtures: Arc::new(Fixtures::demo()),
            encryption: tls::Encryption::default(),
        }
    }
}

/// Faults to inject; every setter takes effect for the next connection or request.
#[derive(Debug, Default)]
pub struct Faults {
    refuse_connections: AtomicBool,
    reject_logins: AtomicBool,
    stall_login_ms: AtomicU64,
    stall_queries_ms: AtomicU64,
    drops: Trigger,
    errors: Trigger,
    /// A column and the value every result row gets in it.
    column_value: Mutex<Option<(String, Value)>>,
}

impl Faults {
    /// Accept connections and close them at once, before PRELOGIN.
    pub fn set_refuse_connections(&self, on: bool) {
        self.refuse_connections.store(on, Ordering::SeqCst);
    }
    /// Answer every LOGIN7 with error 18456, whatever the credentials.
    pub fn set_reject_logins(&self, on: bool) {
        self.reject_logins.store(on, Ordering::SeqCst);
    }
    /// Wait this long before answering a LOGIN7.
    pub fn set_stall_logins(&self, stall: Duration) {
        self.stall_login_ms
            .store(stall.as_millis() as u64, Ordering::SeqCst);
    }
    /// Wait this long before answering each batch or RPC request.
    pub fn set_stall_queries(&self, stall: Duration) {
        self.stall_queries_ms
            .store(stall.as_millis() as u64, Ordering::SeqCst);
    }
    /// Close the connection, without a reply, on the next `n` requests.
    pub fn drop_next_queries(&self, n: u64) {
        self.drops.next(n);
    }
    /// Answer the next `n` requests with an ERROR token.
    pub fn error_next_queries(&self, n: u64) {
        self.errors.next(n);
    }
    /// Drop (or fail) this share of requests, chosen by a generator seeded with `seed`.
    pub fn set_rates(&self, drop_share: f64, error_share: f64, seed: u64) {
        self.drops.rate(drop_share, seed);
        self.errors.rate(error_share, seed.wrapping_add(1));
    }
    /// Send NULL in this column of every result row (a schema drift the client must catch).
    pub fn set_null_column(&self, column: Option<&str>) {
        self.set_column_value(column.map(|c| (c, Value::Null)));
    }
    /// Send this value in this column of every result row (e.g. another
    /// student's id: rows the client must not take for the student's).
    pub fn set_column_value(&self, column: Option<(&str, Value)>) {
        *self.column_value.lock().unwrap_or_else(|p| p.into_inner()) =
            column.map(|(c, v)| (c.to_owned(), v));
    }
    /// Back to a healthy server.
    pub fn clear(&self) {
        self.set_refuse_connections(false);
        self.set_reject_logins(false);
        self.set_stall_logins(Duration::ZERO);
        self.set_stall_queries(Duration::ZERO);
        self.drops.clear();
        self.errors.clear();
        self.set_null_column(None);
    }

    fn corrupt(&self, outcome: StatementOutcome) -> StatementOutcome {
        let column = self
            .column_value
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match (outcome, column) {
            (StatementOutcome::Rows { columns, mut rows }, Some((name, value))) => {
                if let Some(index) = columns.iter().position(|c| c.name == name) {
                    rows.iter_mut().for_each(|row| row[index] = value.clone());
                }
                StatementOutcome::Rows { columns, rows }
            }
            (outcome, _) => outcome,
        }
    }

    fn should_drop(&self) -> bool {
        self.drops.fires()
    }

    fn should_error(&self) -> bool {
        self.errors.fires()
    }
}

/// Counters of what the server saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TdsStats {
    pub open_connections: usize,
    pub peak_connections: usize,
    pub accepted: u64,
    pub logins_ok: u64,
    pub logins_rejected: u64,
    pub requests: u64,
    pub dropped_by_fault: u64,
    /// TLS handshakes completed (sessions encrypted whole or for the login).
    pub tls_handshakes: u64,
    /// Clients that could not encrypt, disconnected by a server requiring it.
    pub refused_plaintext: u64,
    /// Session resets (`sp_reset_connection`, or the RESETCONNECTION bit).
    pub resets: u64,
    /// Sessions in TDS 8.0's strict encryption (TLS before PRELOGIN).
    pub tds8_sessions: u64,
    /// Sessions whose queries cross in the clear: no TLS, or TLS for the login only.
    pub clear_sessions: u64,
}

/// A statement the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStatement {
    /// `batch` or `sp_executesql`.
    pub kind: &'static str,
    pub text: String,
    /// The statement's parameters (`@P1`...), without sp_executesql's own.
    pub params: Vec<Param>,
}

impl RecordedStatement {
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.value)
    }
}

#[derive(Debug)]
struct ServerShared {
    config: TdsServerConfig,
    faults: Faults,
    open: AtomicUsize,
    peak: AtomicUsize,
    accepted: AtomicU64,
    logins_ok: AtomicU64,
    logins_rejected: AtomicU64,
    requests: AtomicU64,
    dropped: AtomicU64,
    tls_handshakes: AtomicU64,
    refused_plaintext: AtomicU64,
    resets: AtomicU64,
    tds8_sessions: AtomicU64,
    clear_sessions: AtomicU64,
    recorded: Mutex<VecDeque<RecordedStatement>>,
    /// The `SET` options of the session that last ran a request.
    last_settings: Mutex<SessionSettings>,
    /// The certificate, unless encryption is not supported.
    tls: Option<tls::TlsIdentity>,
}

impl ServerShared {
    fn keep_settings(&self, settings: &SessionSettings) {
        *self.last_settings.lock().unwrap_or_else(|p| p.into_inner()) = settings.clone();
    }

    fn record(&self, statement: RecordedStatement) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.len() == RECORDED_STATEMENTS_KEPT {
            recorded.pop_front();
        }
        recorded.push_back(statement);
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<ServerShared>);

impl OpenConnection {
    fn new(shared: &Arc<ServerShared>) -> Self {
        let now = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        OpenConnection(Arc::clone(shared))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running server. Dropping it (or [`TdsServer::shutdown`]) stops accepting
/// and closes every connection.
#[derive(Debug)]
pub struct TdsServer {
    addr: SocketAddr,
    shared: Arc<ServerShared>,
    stop: watch::Sender<bool>,
}

impl TdsServer {
    pub async fn start(config: TdsServerConfig) -> std::io::Result<TdsServer> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let tls = match config.encryption {
            tls::Encryption::NotSupported => None,
            _ => Some(tls::TlsIdentity::generate()?),
        };
        let shared = Arc::new(ServerShared {
            config,
            faults: Faults::default(),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            logins_ok: AtomicU64::new(0),
            logins_rejected: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            refused_plaintext: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            tds8_sessions: AtomicU64::new(0),
            clear_sessions: AtomicU64::new(0),
            recorded: Mutex::new(VecDeque::new()),
            last_settings: Mutex::new(SessionSettings::default()),
            tls,
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        tracing::info!(%addr, "TDS server listening");
        Ok(TdsServer { addr, shared, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An ADO.NET connection string for this server, as production's would
    /// be: TLS required (`Encrypt=true`) and the server's certificate checked
    /// against its CA (`TrustServerCertificateCA`, the local CA's PEM); no
    /// TLS (`Encrypt=DANGER_PLAINTEXT`) only for a server without it.
    pub fn connection_string(&self) -> String {
        match self.ca_pem() {
            Some(ca) => self.connection_string_with(&format!(
                "Encrypt=true;TrustServerCertificateCA={}",
                ca.display()
            )),
            None => self.connection_string_with("Encrypt=DANGER_PLAINTEXT"),
        }
    }

    /// The connection string with other TLS settings (`encryption`: e.g.
    /// `Encrypt=false`, or `Encrypt=true` alone, trusting only the system's CAs).
    pub fn connection_string_with(&self, encryption: &str) -> String {
        let c = &self.shared.config;
        format!(
            "Server=tcp:{},{};Database={};User Id={};Password={};{encryption}",
            self.addr.ip(),
            self.addr.port(),
            c.database,
            c.user,
            c.password
        )
    }

    /// The `SET` options of the session that ran the last request, as its
    /// client left them (empty: the server's defaults).
    pub fn session_settings(&self) -> SessionSettings {
        self.shared
            .last_settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The CA (PEM file) that signed the server's certificate; `None` without TLS.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        self.shared.tls.as_ref().map(tls::TlsIdentity::ca_pem)
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn stats(&self) -> TdsStats {
        let s = &self.shared;
        TdsStats {
            open_connections: s.open.load(Ordering::SeqCst),
            peak_connections: s.peak.load(Ordering::SeqCst),
            accepted: s.accepted.load(Ordering::SeqCst),
            logins_ok: s.logins_ok.load(Ordering::SeqCst),
            logins_rejected: s.logins_rejected.load(Ordering::SeqCst),
            requests: s.requests.load(Ordering::SeqCst),
            dropped_by_fault: s.dropped.load(Ordering::SeqCst),
            tls_handshakes: s.tls_handshakes.load(Ordering::SeqCst),
            refused_plaintext: s.refused_plaintext.load(Ordering::SeqCst),
            resets: s.resets.load(Ordering::SeqCst),
            tds8_sessions: s.tds8_sessions.load(Ordering::SeqCst),
            clear_sessions: s.clear_sessions.load(Ordering::SeqCst),
        }
    }

    /// Restarts peak counting from the connections open now.
    pub fn reset_peak(&self) {
        self.shared
            .peak
            .store(self.shared.open.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The last [`RECORDED_STATEMENTS_KEPT`] statements received, oldest first.
    pub fn recorded(&self) -> Vec<RecordedStatement> {
        self.shared
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn clear_recorded(&self) {
        self.shared
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Stops accepting and closes every open connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.faults.refuse_connections.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let shared = Arc::clone(&shared);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _open = OpenConnection::new(&shared);
            tokio::select! {
                result = serve(stream, &shared) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "TDS connection ended with an error");
                    }
                }
                _ = stopped.changed() => {}
            }
        });
    }
}

#[derive(Debug)]
enum SessionError {
    Io(std::io::Error),
    Protocol(ClientMessageError),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "i/o: {e}"),
            SessionError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

impl From<std::io::Error> for SessionError {
    fn from(e: std::io::Error) -> Self {
        SessionError::Io(e)
    }
}

impl From<ClientMessageError> for SessionError {
    fn from(e: ClientMessageError) -> Self {
        SessionError::Protocol(e)
    }
}

async fn expect_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    packet_type: u8,
) -> Result<Option<Message>, SessionError> {
    match wire::read_message(reader).await? {
        None => Ok(None),
        Some(m) if m.packet_type == packet_type => Ok(Some(m)),
        Some(m) => Err(ClientMessageError(format!(
            "expected packet type 0x{packet_type:02X}, got 0x{:02X}",
            m.packet_type
        ))
        .into()),
    }
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn serve(mut stream: TcpStream, shared: &ServerShared) -> Result<(), SessionError> {
    stream.set_nodelay(true)?;
    // TDS 8.0 (strict encryption) opens with a TLS ClientHello; TDS 7.x with PRELOGIN.
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(());
    }
    if first[0] == tls::TLS_HANDSHAKE_RECORD {
        let Some(identity) = &shared.tls else {
            return Ok(()); // no certificate: nothing to answer a ClientHello with
        };
        let mut encrypted = identity.accept_strict(stream).await?;
        shared.tls_handshakes.fetch_add(1, Ordering::SeqCst);
        shared.tds8_sessions.fetch_add(1, Ordering::SeqCst);
        let Some(prelogin) = expect_message(&mut encrypted, PKT_PRELOGIN).await? else {
            return Ok(());
        };
        request::parse_prelogin(&prelogin.payload)?;
        // Inside TLS already: the ENCRYPTION option means nothing any more.
        let response = request::prelogin_response(tls::ENCRYPT_NOT_SUP);
        wire::write_message(&mut encrypted, PKT_REPLY, &response, 4096).await?;
        let (reader, writer) = tokio::io::split(encrypted);
        return session(reader, writer, None, shared).await;
    }
    let Some(prelogin) = expect_message(&mut stream, PKT_PRELOGIN).await? else {
        return Ok(());
    };
    let client = request::parse_prelogin(&prelogin.payload)?;
    let (negotiated, answer) = match &shared.tls {
        Some(_) => Negotiated::from_prelogin(shared.config.encryption, client.encryption),
        None => (Negotiated::Plaintext, tls::ENCRYPT_NOT_SUP),
    };
    let response = request::prelogin_response(answer);
    wire::write_message(&mut stream, PKT_REPLY, &response, 4096).await?;
    let identity = match (negotiated, &shared.tls) {
        (Negotiated::Refused, _) => {
            shared.refused_plaintext.fetch_add(1, Ordering::SeqCst);
            return Ok(()); // SQL Server closes a client that cannot encrypt
        }
        (Negotiated::Plaintext, _) | (_, None) => {
            shared.clear_sessions.fetch_add(1, Ordering::SeqCst);
            let (reader, writer) = stream.into_split();
            return session(BufReader::new(reader), writer, None, shared).await;
        }
        (_, Some(identity)) => identity,
    };
    let mut encrypted = identity.accept(stream).await?;
    shared.tls_handshakes.fetch_add(1, Ordering::SeqCst);
    if negotiated == Negotiated::LoginOnly {
        // Only LOGIN7 is encrypted; the answer and the session are not.
        let Some(login) = expect_message(&mut encrypted, PKT_LOGIN7).await? else {
            return Ok(());
        };
        shared.clear_sessions.fetch_add(1, Ordering::SeqCst);
        let (reader, writer) = tls::into_plaintext(encrypted).into_split();
        return session(BufReader::new(reader), writer, Some(login), shared).await;
    }
    let (reader, writer) = tokio::io::split(encrypted);
    session(reader, writer, None, shared).await
}

/// The tokens SQL Server answers a good LOGIN7 with, in its order: the
/// database (with INFO 5701), the collation, the language (INFO 5703),
/// LOGINACK in the negotiated version, FEATUREEXTACK when the client asked
/// for extensions (none is acknowledged), the packet size, DONE.
fn login_reply(
    version: TdsVersion,
    database: &str,
    packet_size: usize,
    login: &Login,
) -> TokenWriter {
    let mut reply = TokenWriter::for_version(version);
    reply.env_change(ENV_DATABASE, database, "master");
    reply.info(
        5701,
        0,
        &format!("Changed database context to '{database}'."),
        SERVER_NAME,
    );
    reply.env_change_bytes(ENV_COLLATION, &COLLATION, &[]);
    reply.env_change(ENV_LANGUAGE, "us_english", "");
    reply.info(
        5703,
        0,
        "Changed language setting to us_english.",
        SERVER_NAME,
    );
    reply.login_ack(SERVER_NAME);
    if login.feature_ext {
        reply.feature_ext_ack(&login.features);
    }
    reply.env_change(ENV_PACKET_SIZE, &packet_size.to_string(), "4096");
    reply.done(TOKEN_DONE, DONE_FINAL, 0, 0);
    reply
}

/// LOGIN7 (`login`, if it was already read) and the requests that follow,
/// over plaintext or TLS alike.
async fn session<R, W>(
    mut reader: R,
    mut writer: W,
    login: Option<Message>,
    shared: &ServerShared,
) -> Result<(), SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let config = &shared.config;
    let faults = &shared.faults;
    let login = match login {
        Some(login) => login,
        None => match expect_message(&mut reader, PKT_LOGIN7).await? {
            Some(login) => login,
            None => return Ok(()),
        },
    };
    let login = request::parse_login7(&login.payload)?;
    let version = TdsVersion::negotiate(login.tds_version);
    sleep_ms(faults.stall_login_ms.load(Ordering::SeqCst)).await;
    let mut reply = TokenWriter::for_version(version);
    let credentials_ok = login.user == config.user && login.password == config.password;
    if faults.reject_logins.load(Ordering::SeqCst) || !credentials_ok {
        shared.logins_rejected.fetch_add(1, Ordering::SeqCst);
        let message = format!("Login failed for user '{}'.", login.user);
        tracing::warn!(user = %login.user, error = 18456, "TDS login refused");
        reply.error(18456, 14, &message, SERVER_NAME);
        reply.done(TOKEN_DONE, DONE_ERROR, 0, 0);
        wire::write_message(&mut writer, PKT_REPLY, &reply.into_bytes(), 4096).await?;
        return Ok(());
    }
    if !login.database.is_empty() && !login.database.eq_ignore_ascii_case(&config.database) {
        shared.logins_rejected.fetch_add(1, Ordering::SeqCst);
        let message = format!(
            "Cannot open database \"{}\" requested by the login. The login failed.",
            login.database
        );
        tracing::warn!(database = %login.database, error = 4060, "TDS login refused");
        reply.error(4060, 11, &message, SERVER_NAME);
        reply.done(TOKEN_DONE, DONE_ERROR, 0, 0);
        wire::write_message(&mut writer, PKT_REPLY, &reply.into_bytes(), 4096).await?;
        return Ok(());
    }
    shared.logins_ok.fetch_add(1, Ordering::SeqCst);
    let packet_size = if (512..=32767).contains(&login.packet_size) {
        login.packet_size
    } else {
        4096
    } as usize;
    tracing::debug!(
        client_version = format_args!("{:#010x}", login.tds_version),
        negotiated = format_args!("{:#010x}", version.0),
        app = %login.app_name,
        features = ?login.features,
        "TDS login"
    );
    let reply = login_reply(version, &config.database, packet_size, &login);
    wire::write_message(&mut writer, PKT_REPLY, &reply.into_bytes(), packet_size).await?;

    let mut session = Session::new(&config.database, SPID);
    loop {
        let Some(message) = wire::read_message(&mut reader).await? else {
            return Ok(());
        };
        let mut reply = TokenWriter::for_version(version);
        if message.status & wire::STATUS_RESET_CONNECTION != 0 {
            // Acknowledged first, as SQL Server does, then the request runs.
            let keep_transaction = message.status & wire::STATUS_RESET_SKIP_TRAN != 0;
            reset(&mut session, keep_transaction, &mut reply, shared);
        }
        match message.packet_type {
            PKT_ATTENTION => reply.done(TOKEN_DONE, DONE_ATTN, 0, 0),
            PKT_SQL_BATCH | PKT_RPC => {
                shared.requests.fetch_add(1, Ordering::SeqCst);
                let request = execute(&message, version, &config.fixtures, &mut session)?;
                if request.kind == "sp_reset_connection" {
                    reset(&mut session, false, &mut reply, shared);
                }
                log_refusals(&request);
                let is_rpc = request.kind != "batch";
                shared.record(RecordedStatement {
                    kind: request.kind,
                    text: request.text,
                    params: request.params,
                });
                shared.keep_settings(&session.settings);
                sleep_ms(faults.stall_queries_ms.load(Ordering::SeqCst)).await;
                if faults.should_drop() {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    return Ok(()); // closes the socket mid-request
                }
                let outcomes = if faults.should_error() {
                    vec![StatementOutcome::Error {
                        number: 50000,
                        class: 16,
                        message: "Injected error from the test TDS server.".into(),
                    }]
                } else {
                    request
                        .outcomes
                        .into_iter()
                        .map(|o| faults.corrupt(o))
                        .collect()
                };
                let tail = is_rpc.then_some(RpcTail {
                    handle: request.handle,
                });
                render(&mut reply, outcomes, tail, session.nocount_on())?;
            }
            other => {
                return Err(
                    ClientMessageError(format!("unsupported packet type 0x{other:02X}")).into(),
                );
            }
        }
        wire::write_message(&mut writer, PKT_REPLY, &reply.into_bytes(), packet_size).await?;
    }
}

/// A session reset: its state back to the login's, acknowledged with
/// ENVCHANGE 18 (and the rollback of an open transaction, if it had one).
fn reset(
    session: &mut Session,
    keep_transaction: bool,
    reply: &mut TokenWriter,
    shared: &ServerShared,
) {
    let rollback = session.reset(keep_transaction);
    shared.resets.fetch_add(1, Ordering::SeqCst);
    if let Some(change) = rollback {
        env_change(reply, &change);
    }
    reply.env_change_bytes(ENV_RESET_ACK, &[], &[]);
}

/// Every statement the server refused, in its log: the error number and
/// the statement's text, truncated.
fn log_refusals(request: &Executed) {
    for outcome in &request.outcomes {
        if let StatementOutcome::Error {
            number, message, ..
        } = outcome
        {
            let text: String = request.text.chars().take(LOGGED_STATEMENT_CHARS).collect();
            let truncated = request.text.chars().count() > LOGGED_STATEMENT_CHARS;
            tracing::warn!(
                error = number,
                kind = request.kind,
                statement = %text,
                truncated,
                message = %message,
                "TDS statement refused"
            );
        }
    }
}

/// A request decoded and run.
struct Executed {
    /// `batch`, or the RPC's procedure (`sp_executesql`, `sp_prepexec`, ...).
    kind: &'static str,
    text: String,
    params: Vec<Param>,
    outcomes: Vec<StatementOutcome>,
    /// The handle `sp_prepare` or `sp_prepexec` returns (an output parameter).
    handle: Option<i32>,
}

impl Executed {
    fn new(kind: &'static str, text: String, params: Vec<Param>) -> Self {
        Executed {
            kind,
            text,
            params,
            outcomes: Vec::new(),
            handle: None,
        }
    }
}

fn refused(kind: &'static str, text: String, outcome: StatementOutcome) -> Executed {
    let mut executed = Executed::new(kind, text, Vec::new());
    executed.outcomes.push(outcome);
    executed
}

/// Parses `text` and runs it with `params` in `session`.
fn run_text(
    text: &str,
    params: &[Param],
    fixtures: &Fixtures,
    session: &mut Session,
) -> Vec<StatementOutcome> {
    let parsed = sql::parse(text);
    match parsed.as_ref() {
        Ok(statements) => {
            let mut cx = sql::Context {
                fixtures,
                params,
                session,
                server_name: SERVER_NAME,
            };
            sql::run(statements, &mut cx)
        }
        Err(syntax) => vec![syntax.outcome()],
    }
}

/// A string parameter's value (the statement or a declaration), if it is one.
fn string_param(param: Option<&Param>) -> Option<&str> {
    match param {
        Some(Param {
            value: Value::String(text),
            ..
        }) => Some(text),
        Some(Param {
            value: Value::Null, ..
        }) => Some(""),
        _ => None,
    }
}

/// Names unnamed values after the declaration's parameters, in order.
fn bind(values: &[Param], names: &[String]) -> Vec<Param> {
    values
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut p = p.clone();
            if p.name.is_empty()
                && let Some(name) = names.get(i)
            {
                p.name.clone_from(name);
            }
            p
        })
        .collect()
}

fn handle_param(param: Option<&Param>) -> Option<i32> {
    match param.map(|p| &p.value) {
        Some(Value::Int(n)) => i32::try_from(*n).ok(),
        _ => None,
    }
}

/// Decodes a batch or RPC request and runs it (a `SET`, `USE` or
/// transaction statement changes `session`).
fn execute(
    message: &Message,
    version: TdsVersion,
    fixtures: &Fixtures,
    session: &mut Session,
) -> Result<Executed, ClientMessageError> {
    let headers = version.is_72_or_later();
    if message.packet_type == PKT_SQL_BATCH {
        let text = request::parse_sql_batch(&message.payload, headers)?;
        let mut executed = Executed::new("batch", text, Vec::new());
        executed.outcomes = run_text(&executed.text, &[], fixtures, session);
        return Ok(executed);
    }
    let rpc = request::parse_rpc(&message.payload, headers)?;
    let mut params = rpc.params;
    let Some(id) = rpc.procedure.system_id() else {
        let name = match &rpc.procedure {
            request::Procedure::Name(name) => name.clone(),
            request::Procedure::Id(id) => format!("procedure id {id}"),
        };
        let outcome = catalog::error(
            2812,
            16,
            format!("Could not find stored procedure '{name}'."),
        );
        return Ok(refused("rpc", name, outcome));
    };
    let missing = |what: &str| ClientMessageError(format!("{what} without its statement"));
    Ok(match id {
        0 => Executed::new("sp_reset_connection", "sp_reset_connection".into(), params),
        SP_EXECUTESQL => {
            let text = string_param(params.first())
                .ok_or_else(|| missing("sp_executesql"))?
                .to_owned();
            let declaration = string_param(params.get(1)).unwrap_or("").to_owned();
            let values: Vec<Param> = params.drain(..).skip(2).collect();
            let names = match sql::declared_names(&declaration) {
                Ok(names) => names,
                Err(syntax) => return Ok(refused("sp_executesql", text, syntax.outcome())),
            };
            let values = bind(&values, &names);
            let mut executed = Executed::new("sp_executesql", text, values);
            executed.outcomes = run_text(&executed.text, &executed.params, fixtures, session);
            executed
        }
        SP_PREPARE | SP_PREPEXEC => {
            let kind = if id == SP_PREPARE {
                "sp_prepare"
            } else {
                "sp_prepexec"
            };
            let declaration = string_param(params.get(1)).unwrap_or("").to_owned();
            let text = string_param(params.get(2))
                .ok_or_else(|| missing(kind))?
                .to_owned();
            let names = match sql::declared_names(&declaration) {
                Ok(names) => names,
                Err(syntax) => return Ok(refused(kind, text, syntax.outcome())),
            };
            if let Err(syntax) = sql::parse(&text).as_ref() {
                return Ok(refused(kind, text, syntax.outcome()));
            }
            let handle = session.prepare(Prepared {
                text: text.clone(),
                param_names: names.clone(),
            });
            // sp_prepare's trailing parameter is its options, not a value.
            let values: Vec<Param> = if id == SP_PREPEXEC {
                bind(&params[3.min(params.len())..], &names)
            } else {
                Vec::new()
            };
            let mut executed = Executed::new(kind, text, values);
            executed.handle = Some(handle);
            if id == SP_PREPEXEC {
                executed.outcomes = run_text(&executed.text, &executed.params, fixtures, session);
            }
            executed
        }
        SP_EXECUTE => {
            let handle = handle_param(params.first());
            let Some(prepared) = handle.and_then(|h| session.prepared.get(&h)).cloned() else {
                let outcome = catalog::error(
                    8179,
                    16,
                    format!(
                        "Could not find prepared statement with handle {}.",
                        handle.unwrap_or(0)
                    ),
                );
                return Ok(refused("sp_execute", String::new(), outcome));
            };
            let values = bind(&params[1.min(params.len())..], &prepared.param_names);
            let mut executed = Executed::new("sp_execute", prepared.text, values);
            executed.outcomes = run_text(&executed.text, &executed.params, fixtures, session);
            executed
        }
        SP_UNPREPARE => {
            if let Some(handle) = handle_param(params.first()) {
                session.prepared.remove(&handle);
            }
            Executed::new("sp_unprepare", String::new(), params)
        }
        other => {
            let outcome = catalog::error(
                2812,
                16,
                format!("Could not find stored procedure with id {other}."),
            );
            refused("rpc", format!("procedure id {other}"), outcome)
        }
    })
}

fn env_change(reply: &mut TokenWriter, change: &EnvChange) {
    match change {
        EnvChange::Database { new, old } => {
            reply.env_change(ENV_DATABASE, new, old);
            reply.info(
                5701,
                0,
                &format!("Changed database context to '{new}'."),
                SERVER_NAME,
            );
        }
        EnvChange::BeginTran(d) => reply.env_change_bytes(ENV_BEGIN_TRAN, &d.to_le_bytes(), &[]),
        EnvChange::Commit(d) => reply.env_change_bytes(ENV_COMMIT_TRAN, &[], &d.to_le_bytes()),
        EnvChange::Rollback(d) => reply.env_change_bytes(ENV_ROLLBACK_TRAN, &[], &d.to_le_bytes()),
    }
}

/// What ends an RPC's reply: its return status, the handle it returns (an
/// output parameter), DONEPROC.
struct RpcTail {
    handle: Option<i32>,
}

/// The reply tokens for a request's outcomes, one per statement (MS-TDS
/// 2.2.7.6-8): a result set and its DONE with the row count (COUNT, unless
/// NOCOUNT is on), a statement without one, an environment change, an error
/// (which ends the request). In a batch each statement's DONE but the
/// last says MORE; in an RPC each is a DONEINPROC, all with MORE, followed
/// by RETURNSTATUS, any RETURNVALUE and the final DONEPROC.
fn render(
    reply: &mut TokenWriter,
    outcomes: Vec<StatementOutcome>,
    rpc: Option<RpcTail>,
    nocount: bool,
) -> Result<(), ClientMessageError> {
    const SELECT_COMMAND: u16 = 0xC1;
    let inner = if rpc.is_some() {
        TOKEN_DONEINPROC
    } else {
        TOKEN_DONE
    };
    let count = if nocount { 0 } else { DONE_COUNT };
    let mut failed = false;
    let last = outcomes.len().saturating_sub(1);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let more = if rpc.is_some() || i < last {
            DONE_MORE
        } else {
            0
        };
        match outcome {
            StatementOutcome::Rows { columns, rows } => {
                reply.col_metadata(&columns);
                for row in &rows {
                    reply.row(&columns, row)?;
                }
                reply.done(inner, count | more, SELECT_COMMAND, rows.len() as u64);
            }
            StatementOutcome::Done => reply.done(inner, more, 0, 0),
            StatementOutcome::Env(changes) => {
                for change in &changes {
                    env_change(reply, change);
                }
                reply.done(inner, more, 0, 0);
            }
            StatementOutcome::Error {
                number,
                class,
                message,
            } => {
                reply.error(number, class, &message, SERVER_NAME);
                reply.done(inner, DONE_ERROR | more, 0, 0);
                failed = true;
            }
        }
    }
    if let Some(tail) = rpc {
        reply.return_status(if failed { 1 } else { 0 });
        if let Some(handle) = tail.handle {
            reply.return_value_int(0, "@handle", handle);
        }
        reply.done(
            TOKEN_DONEPROC,
            if failed { DONE_ERROR } else { DONE_FINAL },
            0,
            0,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DONE-family tokens of a reply: (token, status, row count), in order.
    fn dones(bytes: &[u8]) -> Vec<(u8, u16, u64)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                token @ (TOKEN_DONE | TOKEN_DONEINPROC | TOKEN_DONEPROC) => {
                    let status = u16::from_le_bytes([bytes[i + 1], bytes[i + 2]]);
                    let mut count = [0u8; 8];
                    count.copy_from_slice(&bytes[i + 5..i + 13]);
                    out.push((token, status, u64::from_le_bytes(count)));
                    i += 13;
                }
                0x79 => i += 5, // RETURNSTATUS
                other => panic!("unexpected token {other:#04x} in {bytes:02x?}"),
            }
        }
        out
    }

    #[test]
    fn done_flags_follow_the_spec_in_batches_and_rpcs() {
        let two = || vec![StatementOutcome::Done, StatementOutcome::Done];
        let mut batch = TokenWriter::new();
        render(&mut batch, two(), None, false).expect("render");
        assert_eq!(
            dones(&batch.into_bytes()),
            vec![(TOKEN_DONE, DONE_MORE, 0), (TOKEN_DONE, DONE_FINAL, 0)],
            "every DONE but the last says MORE"
        );
        let mut rpc = TokenWriter::new();
        render(&mut rpc, two(), Some(RpcTail { handle: None }), false).expect("render");
        assert_eq!(
            dones(&rpc.into_bytes()),
            vec![
                (TOKEN_DONEINPROC, DONE_MORE, 0),
                (TOKEN_DONEINPROC, DONE_MORE, 0),
                (TOKEN_DONEPROC, DONE_FINAL, 0),
            ],
            "DONEINPROC always says MORE: DONEPROC follows"
        );
        let failing = vec![
            StatementOutcome::Done,
            catalog::error(208, 16, "Invalid object name 'x'."),
        ];
        let mut reply = TokenWriter::new();
        render(&mut reply, failing, Some(RpcTail { handle: None }), false).expect("render");
        let bytes = reply.into_bytes();
        let error_at = bytes
            .iter()
            .position(|b| *b == 0xAA)
            .expect("an ERROR token");
        let length = usize::from(u16::from_le_bytes([
            bytes[error_at + 1],
            bytes[error_at + 2],
        ]));
        let mut rest = bytes[..error_at].to_vec();
        rest.extend_from_slice(&bytes[error_at + 3 + length..]);
        assert_eq!(
            dones(&rest),
            vec![
                (TOKEN_DONEINPROC, DONE_MORE, 0),
                (TOKEN_DONEINPROC, DONE_ERROR | DONE_MORE, 0),
                (TOKEN_DONEPROC, DONE_ERROR, 0),
            ]
        );
    }
}
