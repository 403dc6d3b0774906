//! Connections: [`RedisBackend`] (blocking, for threads) and [`AsyncRedisBackend`]
//! (tokio), each shared by every concurrent check, each with its own deadline per call.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::ConnectionLike;

use super::policy::Prepared;
use super::RedisCheckError;

/// The deadline of one call unless configured otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);

/// The check script. `invoke` sends `EVALSHA` and, after `NOSCRIPT` (a restarted server,
/// `SCRIPT FLUSH`), loads the script and sends it again.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SOURCE));

/// The check script's source.
pub(crate) const SOURCE: &str = include_str!("check.lua");

fn invocation(prepared: &Prepared) -> redis::ScriptInvocation<'static> {
    let mut inv = SCRIPT.prepare_invoke();
    for key in &prepared.keys {
        inv.key(key);
    }
    for arg in &prepared.args {
        inv.arg(*arg);
    }
    inv
}

fn connection_error(err: &redis::RedisError) -> RedisCheckError {
    RedisCheckError::Connection {
        detail: Arc::from(err.to_string()),
    }
}

/// A blocking connection to Redis, shared by every thread that checks through it.
///
/// One connection serves one call at a time; a call waits for it at most its deadline.
/// [`with_connections`](RedisBackend::with_connections) spreads calls over a few
/// connections, taken in turn. Connections are made on first use and made again after
/// any failure, so a restarted server is picked up by the next call.
///
/// ```no_run
/// use ratewarden::redis::RedisBackend;
/// use std::time::Duration;
///
/// let redis = RedisBackend::open("redis://127.0.0.1:6379")?
///     .with_deadline(Duration::from_millis(50));
/// assert_eq!(redis.deadline(), Duration::from_millis(50));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisBackend {
    client: redis::Client,
    deadline: Duration,
    conns: Box<[Mutex<Option<redis::Connection>>]>,
    next: AtomicUsize,
}

impl RedisBackend {
    /// A backend for the server at `url` (`redis://host:port/db`), with the
    /// [`DEFAULT_DEADLINE`]. Connects on first use.
    pub fn open(url: &str) -> Result<RedisBackend, RedisCheckError> {
        let client = redis::Client::open(url).map_err(|e| connection_error(&e))?;
        Ok(RedisBackend {
            client,
            deadline: DEFAULT_DEADLINE,
            conns: Box::new([Mutex::new(None)]),
            next: AtomicUsize::new(0),
        })
    }

    /// The same backend with `count` connections (at least one), which concurrent calls
    /// take in turn.
    pub fn with_connections(mut self, count: usize) -> RedisBackend {
        self.conns = (0..count.max(1)).map(|_| Mutex::new(None)).collect();
        self
    }

    /// The same backend with another deadline per call (waiting for the connection,
    /// connecting, sending and receiving, all included).
    pub fn with_deadline(mut self, deadline: Duration) -> RedisBackend {
        self.deadline = deadline;
        self
    }

    /// The deadline per call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(crate) fn eval(&self, prepared: &Prepared) -> Result<Vec<i64>, RedisCheckError> {
        let start = Instant::now();
        let timeout = RedisCheckError::Timeout {
            deadline: self.deadline,
        };
        let left = || {
            self.deadline
                .checked_sub(start.elapsed())
                .filter(|d| !d.is_zero())
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut guard = self.conns[turn]
            .try_lock_for(self.deadline)
            .ok_or(timeout.clone())?;
        let mut conn = match guard.take() {
            Some(conn) => conn,
            None => {
                let wait = left().ok_or(timeout.clone())?;
                self.client
                    .get_connection_with_timeout(wait)
                    .map_err(|e| RedisCheckError::from_redis(&e, self.deadline))?
            }
        };
        let wait = left().ok_or(timeout)?;
        let timeouts = conn
            .set_read_timeout(Some(wait))
            .and_then(|()| conn.set_write_timeout(Some(wait)));
        if let Err(e) = timeouts {
            return Err(RedisCheckError::from_redis(&e, self.deadline));
        }
        match invocation(prepared).invoke::<Vec<i64>>(&mut conn) {
            Ok(reply) => {
                *guard = Some(conn);
                Ok(reply)
            }
            Err(e) => {
                let error = RedisCheckError::from_redis(&e, self.deadline);
                // After a timeout or a broken stream the connection's state is unknown:
                // drop it, and the next call connects afresh.
                if !matches!(
                    error,
                    RedisCheckError::Timeout { .. } | RedisCheckError::Connection { .. }
                ) && conn.is_open()
                {
                    *guard = Some(conn);
                }
                Err(error)
            }
        }
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// An async (tokio) connection to Redis, multiplexed: every task that checks through it
/// (or through a clone) shares one connection, with requests pipelined.
///
/// It reconnects by itself after the connection breaks; each call gives up after its
/// deadline.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ratewarden::redis::AsyncRedisBackend;
///
/// let redis = AsyncRedisBackend::open("redis://127.0.0.1:6379")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncRedisBackend {
    conn: ConnectionManager,
    deadline: Duration,
}

impl AsyncRedisBackend {
    /// A backend for the server at `url` with the [`DEFAULT_DEADLINE`]. Connects on first
    /// use. Must be called within a tokio runtime ([`RedisCheckError::NoRuntime`]
    /// otherwise).
    pub fn open(url: &str) -> Result<AsyncRedisBackend, RedisCheckError> {
        Self::open_with_deadline(url, DEFAULT_DEADLINE)
    }

    /// A backend with another deadline per call.
    pub fn open_with_deadline(
        url: &str,
        deadline: Duration,
    ) -> Result<AsyncRedisBackend, RedisCheckError> {
        // The connection manager spawns its reconnection onto the current runtime.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisCheckError::NoRuntime);
        }
        let client = redis::Client::open(url).map_err(|e| connection_error(&e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(deadline))
            .set_response_timeout(Some(deadline))
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| connection_error(&e))?;
        Ok(AsyncRedisBackend { conn, deadline })
    }

    /// The deadline per call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(crate) async fn eval(&self, prepared: &Prepared) -> Result<Vec<i64>, RedisCheckError> {
        let mut conn = self.conn.clone();
        let call = async move {
            invocation(prepared)
                .invoke_async::<Vec<i64>>(&mut conn)
                .await
        };
        match tokio::time::timeout(self.deadline, call).await {
            Ok(reply) => reply.map_err(|e| RedisCheckError::from_redis(&e, self.deadline)),
            Err(_) => Err(RedisCheckError::Timeout {
                deadline: self.deadline,
            }),
        }
    }
}

impl fmt::Debug for AsyncRedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisBackend")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
