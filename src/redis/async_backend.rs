//! [`AsyncRedisBackend`]: the async (tokio) connection to one server or to a Redis
//! Cluster, shared by every task, and the cluster connection that its clones share.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;

use super::cluster::{cluster_builder, cluster_eval_async};
use super::error::connection_error;
use super::prepared::Prepared;
use super::retry::{is_moved, refused_for_now, Pauses};
use super::script::invocation;
use super::{RedisCheckError, DEFAULT_DEADLINE};

/// An async (tokio) connection to Redis, multiplexed: every task that checks through it
/// (or through a clone) shares one connection, with requests pipelined.
///
/// It reconnects by itself after the connection breaks; each call gives up after its
/// deadline.
///
/// [`open`](AsyncRedisBackend::open) talks to one server;
/// [`open_cluster`](AsyncRedisBackend::open_cluster) to a Redis Cluster, with one
/// multiplexed connection per master and each check sent to the node serving its keys'
/// slot (following `MOVED` and `ASK` redirections).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ratewarden::redis::AsyncRedisBackend;
///
/// let redis = AsyncRedisBackend::open("redis://127.0.0.1:6379")?;
///
/// // A cluster: any of its nodes will do as seeds, the others are discovered.
/// let cluster = AsyncRedisBackend::open_cluster([
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncRedisBackend {
    conn: AsyncConn,
    deadline: Duration,
}

#[derive(Clone)]
enum AsyncConn {
    Node(ConnectionManager),
    Cluster(Arc<AsyncCluster>),
}

/// The cluster connection of an [`AsyncRedisBackend`] and its clones: made on first use,
/// made again when making it failed or the slots moved. Once made, it reconnects to
/// nodes by itself.
///
/// One attempt at a time makes it, in a task of its own (no caller's deadline or
/// cancellation cuts it short), and every call that needs a connection meanwhile waits
/// for that attempt and shares its outcome, failure included: when the slots move under
/// many concurrent calls, they make one new connection between them, not one each. An
/// attempt older than a deadline (its runtime no longer driven, say) no longer holds
/// calls back: the next call starts another. Each attempt has a generation number, so
/// that a call replaces only the connection it used. A connection is dropped after a
/// connection fault, and after [`STRIKES`] timeouts in a row with no answer between
/// them (made by an attempt whose runtime is no longer driven, it would never answer).
struct AsyncCluster {
    client: ClusterClient,
    /// How long calls wait for one attempt before starting another: the deadline.
    patience: Duration,
    link: Mutex<Link>,
    /// Calls on connection `struck` that timed out in a row, no answer between them.
    struck: AtomicU64,
    strikes: AtomicU32,
}

/// Timeouts in a row, with no answer between them, after which a connection is
/// forgotten: one whose driver is stuck on a runtime no longer driven answers nothing,
/// ever, where a slow one still answers some calls.
const STRIKES: u32 = 3;

type Made = redis::RedisResult<redis::cluster_async::ClusterConnection>;

#[derive(Default)]
struct Link {
    /// The generation of the latest attempt.
    latest: u64,
    state: LinkState,
}

#[derive(Default)]
enum LinkState {
    #[default]
    Unmade,
    /// Attempt `generation`, started at `since`; its outcome comes on `made`.
    Making {
        generation: u64,
        since: Instant,
        made: tokio::sync::watch::Receiver<Option<Made>>,
    },
    Made {
        generation: u64,
        conn: redis::cluster_async::ClusterConnection,
    },
}

impl AsyncCluster {
    fn new(client: ClusterClient, patience: Duration) -> AsyncCluster {
        AsyncCluster {
            client,
            patience,
            link: Mutex::new(Link::default()),
            struck: AtomicU64::new(0),
            strikes: AtomicU32::new(0),
        }
    }

    /// Judges connection `generation` by a call's `reply`: a connection fault forgets it
    /// at once, [`STRIKES`] timeouts in a row forget it too, any answer clears the count.
    /// (Counted without a lock: calls racing may miscount by one.)
    fn settled(&self, generation: u64, reply: &Result<Vec<i64>, RedisCheckError>) {
        match reply {
            Err(RedisCheckError::Connection { .. }) => self.forget(generation),
            Err(RedisCheckError::Timeout { .. }) => {
                if self.struck.swap(generation, Ordering::Relaxed) != generation {
                    self.strikes.store(1, Ordering::Relaxed);
                } else if self.strikes.fetch_add(1, Ordering::Relaxed) + 1 >= STRIKES {
                    self.strikes.store(0, Ordering::Relaxed);
                    self.forget(generation);
                }
            }
            _ => {
                if self.strikes.load(Ordering::Relaxed) != 0 {
                    self.strikes.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// The connection and its generation: the one made, else the outcome of the attempt
    /// under way, else of one started now.
    async fn connection(
        self: &Arc<Self>,
    ) -> redis::RedisResult<(u64, redis::cluster_async::ClusterConnection)> {
        let (generation, mut made) = {
            let mut link = self.link.lock();
            match &link.state {
                LinkState::Made { generation, conn } => return Ok((*generation, conn.clone())),
                LinkState::Making {
                    generation,
                    since,
                    made,
                } if since.elapsed() < self.patience => (*generation, made.clone()),
                _ => self.start(&mut link),
            }
        };
        let outcome = match made.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The attempt's task was dropped with the runtime it ran on.
            Err(_) => None,
        };
        match outcome {
            Some(Ok(conn)) => Ok((generation, conn)),
            Some(Err(error)) => Err(error),
            None => {
                self.forget(generation);
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the connection attempt ended with its runtime",
                )
                .into())
            }
        }
    }

    /// Starts an attempt in a task of its own; returns its generation and where its
    /// outcome will come.
    fn start(
        self: &Arc<Self>,
        link: &mut Link,
    ) -> (u64, tokio::sync::watch::Receiver<Option<Made>>) {
        link.latest += 1;
        let generation = link.latest;
        let (tell, made) = tokio::sync::watch::channel(None);
        link.state = LinkState::Making {
            generation,
            since: Instant::now(),
            made: made.clone(),
        };
        let this = Arc::clone(self);
        let attempt = async move {
            let outcome = this.client.get_async_connection().await;
            {
                let mut link = this.link.lock();
                let current = matches!(link.state, LinkState::Making { generation: g, .. } if g == generation);
                match &outcome {
                    // Kept unless a connection was made meanwhile: a newer attempt under
                    // way (this one outlived the deadline) may be no faster.
                    Ok(conn) if !matches!(link.state, LinkState::Made { .. }) => {
                        link.state = LinkState::Made {
                            generation,
                            conn: conn.clone(),
                        };
                    }
                    Err(_) if current => link.state = LinkState::Unmade,
                    _ => {}
                }
            }
            let _ = tell.send(Some(outcome));
        };
        // Outside a runtime the attempt is dropped unstarted, and its waiters fail.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(attempt);
        }
        (generation, made)
    }

    /// Drops connection (or attempt) `generation` if it is still the latest, after it
    /// failed as a whole (its task gone with the runtime it ran on, every node
    /// unreachable) or read a slot map that no longer holds: the next call connects
    /// afresh.
    fn forget(&self, generation: u64) {
        let mut link = self.link.lock();
        let current = match &link.state {
            LinkState::Made { generation, .. } | LinkState::Making { generation, .. } => {
                Some(*generation)
            }
            LinkState::Unmade => None,
        };
        if current == Some(generation) {
            link.state = LinkState::Unmade;
        }
    }
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
        Ok(AsyncRedisBackend {
            conn: AsyncConn::Node(conn),
            deadline,
        })
    }

    /// A backend for the Redis Cluster that `nodes` belong to (`redis://host:port` each;
    /// one reachable node is enough, the others are discovered), with the
    /// [`DEFAULT_DEADLINE`]. Connects on first use, and again on the next call if that
    /// failed. Must be called within a tokio runtime ([`RedisCheckError::NoRuntime`]
    /// otherwise).
    ///
    /// Each check goes to the master serving its keys' slot, so the policy must keep the
    /// keys of one check in one slot: build it with
    /// [`cluster`](super::RedisPolicyBuilder::cluster). Redirections (`MOVED`, `ASK`)
    /// are followed within the deadline, and a check refused before it ran (`TRYAGAIN`,
    /// `CLUSTERDOWN`) is sent again after a pause while the deadline allows, as for
    /// [`RedisBackend::open_cluster`](crate::redis::RedisBackend::open_cluster); a check
    /// that timed out or whose connection broke is never sent again, since it may have
    /// run. Fails with [`RedisCheckError::Connection`] when no node is given or an
    /// address is not a Redis URL.
    pub fn open_cluster(
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<AsyncRedisBackend, RedisCheckError> {
        Self::open_cluster_with_deadline(nodes, DEFAULT_DEADLINE)
    }

    /// A cluster backend with another deadline per call (connecting and redirections
    /// included).
    pub fn open_cluster_with_deadline(
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
        deadline: Duration,
    ) -> Result<AsyncRedisBackend, RedisCheckError> {
        // The cluster connection runs as a task on the current runtime.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisCheckError::NoRuntime);
        }
        let client = cluster_builder(nodes)?
            .connection_timeout(deadline)
            .response_timeout(deadline)
            .build()
            .map_err(|e| connection_error(&e))?;
        Ok(AsyncRedisBackend {
            conn: AsyncConn::Cluster(Arc::new(AsyncCluster::new(client, deadline))),
            deadline,
        })
    }

    /// Whether this backend talks to a Redis Cluster (opened with
    /// [`open_cluster`](AsyncRedisBackend::open_cluster)).
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, AsyncConn::Cluster(_))
    }

    /// The deadline per call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(crate) async fn eval(&self, prepared: &Prepared) -> Result<Vec<i64>, RedisCheckError> {
        let deadline = self.deadline;
        let start = Instant::now();
        let left = || {
            deadline
                .checked_sub(start.elapsed())
                .filter(|d| !d.is_zero())
        };
        // The generation of the cluster connection last used, to judge by the reply.
        let mut used = None;
        let call = async {
            match &self.conn {
                AsyncConn::Node(conn) => {
                    let mut conn = conn.clone();
                    invocation(prepared)
                        .invoke_async::<Vec<i64>>(&mut conn)
                        .await
                        .map_err(|e| RedisCheckError::from_redis(&e, deadline))
                }
                AsyncConn::Cluster(cluster) => {
                    let call = async {
                        let (mut generation, mut conn) = cluster.connection().await?;
                        used = Some(generation);
                        let (mut reconnected, mut pauses) = (false, Pauses::new());
                        loop {
                            let reply = cluster_eval_async(&mut conn, prepared).await;
                            match &reply {
                                // The slots moved and the check did not run: connect
                                // afresh, reading the new slot map, and send it again.
                                Err(e) if is_moved(e) && !reconnected => {
                                    reconnected = true;
                                    cluster.forget(generation);
                                    (generation, conn) = cluster.connection().await?;
                                    used = Some(generation);
                                }
                                // Refused before it ran: wait, then send it again.
                                Err(e) if refused_for_now(e) => match pauses.next(left()) {
                                    Some(pause) => tokio::time::sleep(pause).await,
                                    None => return reply,
                                },
                                _ => return reply,
                            }
                        }
                    };
                    let reply = call.await;
                    reply.map_err(|e| RedisCheckError::from_cluster(&e, deadline))
                }
            }
        };
        let reply = match tokio::time::timeout(self.deadline, call).await {
            Ok(reply) => reply,
            Err(_) => Err(RedisCheckError::Timeout {
                deadline: self.deadline,
            }),
        };
        if let (AsyncConn::Cluster(cluster), Some(generation)) = (&self.conn, used) {
            cluster.settled(generation, &reply);
        }
        reply
    }
}

impl fmt::Debug for AsyncRedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisBackend")
            .field("cluster", &self.is_cluster())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
