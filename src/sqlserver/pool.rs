//! The bounded pool of SQL Server connections: deadpool around tiberius.
//!
//! deadpool gives the bound (`max_size`), the wait/create/recycle timeouts and
//! the return-on-drop guard. On top, modelled on HikariCP:
//! * `max_lifetime` and `idle_timeout`, checked when a connection is recycled
//!   (deadpool has neither), so connections a server or a network device may
//!   have cut are retired before a request uses them;
//! * a cheap health check: a connection idle for longer than
//!   `validate_after_idle` runs `SELECT 1` before it is handed out; one that
//!   broke during a query is never handed out again;
//! * leak detection: a warning when a connection is held longer than `leak_warn_after`;
//! * status for logs and metrics, with the peak number in use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use assessments_common::budget::Budget;
use assessments_common::xray;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts};
use tiberius::Client;
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::SqlSettings;
use super::error::SqlError;

/// One login to SQL Server, owned by the pool.
pub struct SqlConnection {
    pub(super) client: Client<Compat<TcpStream>>,
    /// When the last lease on it ended (or it was created).
    returned_at: Instant,
    /// Set while a query runs, cleared when it completes: a connection whose
    /// query was cancelled or failed mid-stream keeps it and is discarded.
    pub(super) broken: bool,
}

impl std::fmt::Debug for SqlConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConnection")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct PoolCounters {
    in_use: AtomicUsize,
    peak_in_use: AtomicUsize,
    /// The most in use since [`SqlPool::take_recent_peak`] last read it.
    recent_peak: AtomicUsize,
    created: AtomicU64,
    retired: AtomicU64,
}

/// deadpool's `Manager`: how to create and recycle a connection.
pub struct SqlManager {
    config: tiberius::Config,
    settings: PoolTimings,
    counters: Arc<PoolCounters>,
}

impl std::fmt::Debug for SqlManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tiberius config holds credentials: never print it.
        f.debug_struct("SqlManager")
            .field("timings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct PoolTimings {
    connect_timeout: Duration,
    max_lifetime: Duration,
    idle_timeout: Duration,
    validate_after_idle: Duration,
}

impl managed::Manager for SqlManager {
    type Type = SqlConnection;
    type Error = SqlError;

    async fn create(&self) -> Result<SqlConnection, SqlError> {
        let tcp = TcpStream::connect(self.config.get_addr())
            .await
            .map_err(|e| SqlError::Connect(format!("i/o error ({:?})", e.kind())))?;
        tcp.set_nodelay(true)
            .map_err(|e| SqlError::Connect(format!("i/o error ({:?})", e.kind())))?;
        // Boxed, as the health check below: deadpool's checkout future holds
        // this one, and unboxed its ~50 KB were copied on every checkout.
        let client = Box::pin(Client::connect(self.config.clone(), tcp.compat_write()))
            .await
            .map_err(|e| SqlError::from_connect(e, self.settings.connect_timeout))?;
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("SQL Server connection created");
        Ok(SqlConnection {
            client,
            returned_at: Instant::now(),
            broken: false,
        })
    }

    async fn recycle(
        &self,
        conn: &mut SqlConnection,
        metrics: &Metrics,
    ) -> RecycleResult<SqlError> {
        let retire = |reason: &'static str| {
            self.counters.retired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(reason, "SQL Server connection retired");
            Err(RecycleError::message(reason))
        };
        if conn.broken {
            return retire("broken during its last query");
        }
        if metrics.age() >= self.settings.max_lifetime {
            return retire("reached its maximum lifetime");
        }
        let idle = conn.returned_at.elapsed();
        if idle >= self.settings.idle_timeout {
            return retire("idle past the idle timeout");
        }
        if idle >= self.settings.validate_after_idle {
            conn.broken = true;
            let alive = Box::pin(async {
                match conn.client.simple_query("SELECT 1").await {
                    Ok(stream) => stream.into_row().await.is_ok_and(|row| row.is_some()),
                    Err(_) => false,
                }
            })
            .await;
            if !alive {
                return retire("failed its health check");
            }
            conn.broken = false;
        }
        Ok(())
    }
}

/// Pool figures for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    /// Connections that exist (in use or idle).
    pub size: usize,
    /// Idle connections ready to be handed out.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    pub in_use: usize,
    /// The most connections ever in use at once.
    pub peak_in_use: usize,
    pub created: u64,
    pub retired: u64,
}

/// The pool. Built once per execution environment; connects lazily.
#[derive(Debug, Clone)]
pub struct SqlPool {
    pool: managed::Pool<SqlManager>,
    counters: Arc<PoolCounters>,
    pub(super) query_timeout: Duration,
    leak_warn_after: Duration,
    wait_timeout: Duration,
    connect_timeout: Duration,
    recycle_timeout: Duration,
}

impl SqlPool {
    pub fn new(settings: &SqlSettings) -> Result<Self, SqlError> {
        let mut config = settings.tiberius_config()?;
        config.handshake_timeout(Some(settings.connect_timeout));
        config.command_timeout(Some(settings.query_timeout));
        config.application_name("assessments-resolver");
        let counters = Arc::new(PoolCounters::default());
        let manager = SqlManager {
            config,
            settings: PoolTimings {
                connect_timeout: settings.connect_timeout,
                max_lifetime: settings.max_lifetime,
                idle_timeout: settings.idle_timeout,
                validate_after_idle: settings.validate_after_idle,
            },
            counters: Arc::clone(&counters),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(settings.max_size)
            .timeouts(Timeouts {
                wait: Some(settings.wait_timeout),
                create: Some(settings.connect_timeout),
                recycle: Some(settings.recycle_timeout),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| SqlError::Connect(format!("pool build failed: {e}")))?;
        Ok(SqlPool {
            pool,
            counters,
            query_timeout: settings.query_timeout,
            leak_warn_after: settings.leak_warn_after,
            wait_timeout: settings.wait_timeout,
            connect_timeout: settings.connect_timeout,
            recycle_timeout: settings.recycle_timeout,
        })
    }

    pub fn status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
            in_use: self.counters.in_use.load(Ordering::Relaxed),
            peak_in_use: self.counters.peak_in_use.load(Ordering::Relaxed),
            created: self.counters.created.load(Ordering::Relaxed),
            retired: self.counters.retired.load(Ordering::Relaxed),
        }
    }

    /// The most connections in use at once since the last call (an
    /// invocation's own peak, for its metrics); starts the next period at
    /// what is in use now.
    pub fn take_recent_peak(&self) -> usize {
        let now = self.counters.in_use.load(Ordering::Relaxed);
        self.counters
            .recent_peak
            .swap(now, Ordering::Relaxed)
            .max(now)
    }

    /// Opens a connection (or checks an idle one) and leaves it idle in the
    /// pool: init's, so that the first request finds one ready.
    pub async fn open_connection(&self, budget: &Budget) -> Result<(), SqlError> {
        self.checkout(budget).await.map(drop)
    }

    /// Closes the pool: waiting and future checkouts fail, idle connections close.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A connection, exclusively, until the lease drops. Each step (waiting
    /// for a free connection, connecting, the health check of an idle one)
    /// ends by its own timeout or by the budget, whichever comes first.
    pub(super) async fn checkout(&self, budget: &Budget) -> Result<Lease, SqlError> {
        let span = tracing::trace_span!(
            target: "xray",
            "SQL Server connection",
            failure = tracing::field::Empty,
        );
        xray::traced(span, self.take_connection(budget)).await
    }

    async fn take_connection(&self, budget: &Budget) -> Result<Lease, SqlError> {
        if budget.remaining().is_zero() {
            // Nothing left to wait or connect with: not even a connect attempt.
            return Err(SqlError::PoolTimeout {
                limit: budget.as_bound().limit,
                max_size: self.pool.status().max_size,
            });
        }
        let wait = budget.bound(self.wait_timeout, "SQL_POOL_WAIT_TIMEOUT_MS");
        let create = budget.bound(self.connect_timeout, "SQL_CONNECT_TIMEOUT_MS");
        let timeouts = Timeouts {
            wait: Some(wait.allowed()),
            create: Some(create.allowed()),
            recycle: Some(
                budget
                    .bound(self.recycle_timeout, "SQL_RECYCLE_TIMEOUT_MS")
                    .allowed(),
            ),
        };
        // Boxed: creating a connection is a large future, and this one is
        // awaited inside every request's future. The outer bound is the
        // budget: deadpool's own timeouts apply one step at a time, so a wait
        // followed by a connect could otherwise outlast it. Past the wait, what
        // runs out is the connect (or an idle connection's health check).
        let got = budget
            .as_bound()
            .run(Box::pin(self.pool.timeout_get(&timeouts)))
            .await
            .map_err(|limit| SqlError::ConnectTimeout { limit })?;
        let object = got.map_err(|e| match e {
            PoolError::Timeout(managed::TimeoutType::Wait) => SqlError::PoolTimeout {
                limit: wait.limit,
                max_size: self.pool.status().max_size,
            },
            PoolError::Timeout(_) => SqlError::ConnectTimeout {
                limit: create.limit,
            },
            PoolError::Backend(e) => e,
            PoolError::Closed => SqlError::PoolClosed,
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                SqlError::Connect("pool misconfigured".to_owned())
            }
        })?;
        let now = self.counters.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.peak_in_use.fetch_max(now, Ordering::Relaxed);
        self.counters.recent_peak.fetch_max(now, Ordering::Relaxed);
        Ok(Lease {
            object: Some(object),
            checked_out: Instant::now(),
            counters: Arc::clone(&self.counters),
            leak_warn_after: self.leak_warn_after,
        })
    }

    /// After a connection was lost at `lost_at`: the idle connections
    /// created before then are discarded (the server, or the network to it,
    /// may have dropped them all), so that a retry really uses a new one.
    pub(super) fn discard_idle_created_before(&self, lost_at: Instant) {
        let removed = self
            .pool
            .retain(|_, metrics| metrics.created > lost_at)
            .removed
            .len();
        if removed > 0 {
            self.counters
                .retired
                .fetch_add(removed as u64, Ordering::Relaxed);
            tracing::info!(
                removed,
                "discarded idle SQL Server connections older than a lost one"
            );
        }
    }
}

/// A checked-out connection; returns to the pool (or is discarded, if broken) on drop.
pub(super) struct Lease {
    object: Option<Object<SqlManager>>,
    checked_out: Instant,
    counters: Arc<PoolCounters>,
    leak_warn_after: Duration,
}

impl Lease {
    /// Whether the connection had served a request before this lease.
    pub(super) fn is_reused(&self) -> bool {
        self.object
            .as_ref()
            .is_some_and(|o| Object::metrics(o).recycle_count > 0)
    }

    pub(super) fn connection(&mut self) -> &mut SqlConnection {
        // `object` is Some from construction until Drop.
        self.object
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("lease used after drop"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.counters.in_use.fetch_sub(1, Ordering::Relaxed);
        let held = self.checked_out.elapsed();
        if held >= self.leak_warn_after {
            tracing::warn!(
                held_ms = held.as_millis() as u64,
                "a SQL Server connection was held past the leak threshold"
            );
        }
        if let Some(mut object) = self.object.take() {
            object.returned_at = Instant::now();
            if object.broken {
                // Detach it from the pool so its slot frees at once; dropping closes the socket.
                self.counters.retired.fetch_add(1, Ordering::Relaxed);
                drop(Object::take(object));
            }
        }
    }
}
