//! A TDS 7.4 server (the SQL Server wire protocol) for tests and local runs.
//!
//! It speaks what tiberius and other standard clients need: PRELOGIN without
//! encryption, LOGIN7 checked against configured credentials, SQL batches, RPC
//! requests (`sp_executesql` with typed parameters: nvarchar including
//! nvarchar(max), int, bigint, float, bit, date, datetime2, NULL), result sets,
//! DONE and ERROR tokens, and attention. It serves the fixture rows through
//! the statements in [`catalog`], records every statement and parameter it
//! receives, counts open connections (current and peak), and injects faults
//! on demand ([`Faults`]).
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
pub mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::faults::Trigger;
use crate::fixtures::Fixtures;
use catalog::StatementOutcome;
use request::{Param, Procedure, SP_EXECUTESQL};
use wire::{
    ClientMessageError, DONE_ATTN, DONE_COUNT, DONE_ERROR, DONE_FINAL, ENV_DATABASE,
    ENV_PACKET_SIZE, Message, PKT_ATTENTION, PKT_LOGIN7, PKT_PRELOGIN, PKT_REPLY, PKT_RPC,
    PKT_SQL_BATCH, TOKEN_DONE, TOKEN_DONEINPROC, TOKEN_DONEPROC, TokenWriter, Value, WireType,
};

const SERVER_NAME: &str = "testkit-tds";
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
}

impl Default for TdsServerConfig {
    fn default() -> Self {
        TdsServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "resolver".to_owned(),
            password: "local-only-Passw0rd".to_owned(),
            database: "Assessments".to_owned(),
            fixtures: Arc::new(Fixtures::demo()),
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
    null_column: Mutex<Option<String>>,
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
        *self.null_column.lock().unwrap_or_else(|p| p.into_inner()) = column.map(str::to_owned);
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
            .null_column
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match (outcome, column) {
            (StatementOutcome::Rows { columns, mut rows }, Some(name)) => {
                if let Some(index) = columns.iter().position(|c| c.name == name) {
                    rows.iter_mut().for_each(|row| row[index] = Value::Null);
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
    recorded: Mutex<VecDeque<RecordedStatement>>,
}

impl ServerShared {
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
            recorded: Mutex::new(VecDeque::new()),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        tracing::info!(%addr, "TDS server listening");
        Ok(TdsServer { addr, shared, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An ADO.NET connection string for this server (plaintext: it has no TLS).
    pub fn connection_string(&self) -> String {
        let c = &self.shared.config;
        format!(
            "Server=tcp:{},{};Database={};User Id={};Password={};Encrypt=DANGER_PLAINTEXT",
            self.addr.ip(),
            self.addr.port(),
            c.database,
            c.user,
            c.password
        )
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

async fn expect_message(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
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

async fn serve(stream: TcpStream, shared: &ServerShared) -> Result<(), SessionError> {
    stream.set_nodelay(true)?;
    let (read_half, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let config = &shared.config;
    let faults = &shared.faults;

    let Some(prelogin) = expect_message(&mut reader, PKT_PRELOGIN).await? else {
        return Ok(());
    };
    request::parse_prelogin(&prelogin.payload)?;
    wire::write_message(&mut writer, PKT_REPLY, &request::prelogin_response(), 4096).await?;

    let Some(login) = expect_message(&mut reader, PKT_LOGIN7).await? else {
        return Ok(());
    };
    let login = request::parse_login7(&login.payload)?;
    sleep_ms(faults.stall_login_ms.load(Ordering::SeqCst)).await;
    let mut reply = TokenWriter::new();
    let credentials_ok = login.user == config.user && login.password == config.password;
    if faults.reject_logins.load(Ordering::SeqCst) || !credentials_ok {
        shared.logins_rejected.fetch_add(1, Ordering::SeqCst);
        let message = format!("Login failed for user '{}'.", login.user);
        reply.error(18456, 1, 14, &message, SERVER_NAME, "", 1);
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
        reply.error(4060, 1, 11, &message, SERVER_NAME, "", 1);
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
    reply.env_change(ENV_DATABASE, &config.database, "master");
    reply.login_ack(SERVER_NAME);
    reply.env_change(ENV_PACKET_SIZE, &packet_size.to_string(), "4096");
    reply.done(TOKEN_DONE, DONE_FINAL, 0, 0);
    wire::write_message(&mut writer, PKT_REPLY, &reply.into_bytes(), packet_size).await?;

    loop {
        let Some(message) = wire::read_message(&mut reader).await? else {
            return Ok(());
        };
        let reply = match message.packet_type {
            PKT_ATTENTION => {
                let mut reply = TokenWriter::new();
                reply.done(TOKEN_DONE, DONE_ATTN, 0, 0);
                reply
            }
            PKT_SQL_BATCH | PKT_RPC => {
                shared.requests.fetch_add(1, Ordering::SeqCst);
                let (statement, outcome) = execute(&message, &config.fixtures)?;
                let is_rpc = statement.kind != "batch";
                shared.record(statement);
                sleep_ms(faults.stall_queries_ms.load(Ordering::SeqCst)).await;
                if faults.should_drop() {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    return Ok(()); // closes the socket mid-request
                }
                let outcome = if faults.should_error() {
                    StatementOutcome::Error {
                        number: 50000,
                        class: 16,
                        message: "Injected error from the test TDS server.".into(),
                    }
                } else {
                    faults.corrupt(outcome)
                };
                render(outcome, is_rpc)?
            }
            other => {
                return Err(
                    ClientMessageError(format!("unsupported packet type 0x{other:02X}")).into(),
                );
            }
        };
        wire::write_message(&mut writer, PKT_REPLY, &reply.into_bytes(), packet_size).await?;
    }
}

/// Decodes a batch or RPC request and runs it.
fn execute(
    message: &Message,
    fixtures: &Fixtures,
) -> Result<(RecordedStatement, StatementOutcome), ClientMessageError> {
    if message.packet_type == PKT_SQL_BATCH {
        let text = request::parse_sql_batch(&message.payload)?;
        let outcome = catalog::run_batch(&text);
        return Ok((
            RecordedStatement {
                kind: "batch",
                text,
                params: Vec::new(),
            },
            outcome,
        ));
    }
    let rpc = request::parse_rpc(&message.payload)?;
    if rpc.procedure != Procedure::Id(SP_EXECUTESQL) {
        let outcome = StatementOutcome::Error {
            number: 2812,
            class: 16,
            message: "The test TDS server only implements sp_executesql.".into(),
        };
        return Ok((
            RecordedStatement {
                kind: "rpc",
                text: format!("{:?}", rpc.procedure),
                params: rpc.params,
            },
            outcome,
        ));
    }
    let mut params = rpc.params.into_iter();
    let text = match params.next() {
        Some(Param {
            value: Value::String(text),
            wire_type: WireType::NVarChar | WireType::NVarCharMax,
            ..
        }) => text,
        _ => {
            return Err(ClientMessageError(
                "sp_executesql without a statement".into(),
            ));
        }
    };
    let _declarations = params.next();
    let params: Vec<Param> = params.collect();
    let outcome = catalog::run_statement(&text, &params, fixtures);
    Ok((
        RecordedStatement {
            kind: "sp_executesql",
            text,
            params,
        },
        outcome,
    ))
}

/// The reply tokens for an outcome: RPCs end with DONEINPROC, RETURNSTATUS
/// and DONEPROC, as SQL Server answers sp_executesql; batches with DONE.
fn render(outcome: StatementOutcome, is_rpc: bool) -> Result<TokenWriter, ClientMessageError> {
    const SELECT_COMMAND: u16 = 0xC1;
    let mut reply = TokenWriter::new();
    match outcome {
        StatementOutcome::Rows { columns, rows } => {
            reply.col_metadata(&columns);
            for row in &rows {
                reply.row(&columns, row)?;
            }
            if is_rpc {
                reply.done(
                    TOKEN_DONEINPROC,
                    DONE_COUNT,
                    SELECT_COMMAND,
                    rows.len() as u64,
                );
                reply.return_status(0);
                reply.done(TOKEN_DONEPROC, DONE_FINAL, 0, 0);
            } else {
                reply.done(TOKEN_DONE, DONE_COUNT, SELECT_COMMAND, rows.len() as u64);
            }
        }
        StatementOutcome::Error {
            number,
            class,
            message,
        } => {
            reply.error(number, 1, class, &message, SERVER_NAME, "", 1);
            reply.done(
                if is_rpc { TOKEN_DONEPROC } else { TOKEN_DONE },
                DONE_ERROR,
                0,
                0,
            );
        }
    }
    Ok(reply)
}
