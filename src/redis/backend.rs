//! [`RedisBackend`]: the blocking connection (for threads) to one server or to a Redis
//! Cluster, shared by every concurrent check; and the [`DEFAULT_DEADLINE`] of a call.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::ConnectionLike;

use super::cluster::{cluster_builder, cluster_eval};
use super::error::connection_error;
use super::prepared::Prepared;
use super::retry::{is_moved, refused_for_now, Pauses};
use super::script::invocation;
use super::RedisCheckError;

/// The deadline of one call unless configured otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);

/// Where a blocking backend connects.
enum Target {
    Node(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// One blocking connection: to a single server, or to every node of a cluster (routed by
/// the keys' slot).
enum Conn {
    Node(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Target {
    fn connect(&self, wait: Duration) -> redis::RedisResult<Conn> {
        match self {
            Target::Node(client) => client.get_connection_with_timeout(wait).map(Conn::Node),
            Target::Cluster(client) => connect_cluster(client, wait).map(Conn::Cluster),
        }
    }
}

/// A blocking connection to the cluster within `wait`. redis-rs bounds each step
/// (connecting to a seed, asking it for the slot map, connecting to each master) by the
/// timeout given, not the whole: seeds and masters that do not answer each cost up to
/// `wait`, one after another. So the connection is made on a thread of its own and
/// waited for at most `wait`; one not made by then is dropped by that thread when it
/// is. Nothing of a check is sent while connecting.
fn connect_cluster(
    client: &ClusterClient,
    wait: Duration,
) -> redis::RedisResult<Box<redis::cluster::ClusterConnection>> {
    let client = client.clone();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ratewarden-cluster-connect".into())
        .spawn(move || {
            let config = ClusterConfig::new()
                .set_connection_timeout(wait)
                .set_response_timeout(wait);
            let _ = tx.send(client.get_connection_with_config(config).map(Box::new));
        })?;
    match rx.recv_timeout(wait) {
        Ok(conn) => conn,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting to the cluster outlasted the deadline",
        )
        .into()),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(std::io::Error::other("connecting to the cluster failed").into())
        }
    }
}

impl Conn {
    fn set_timeouts(&self, wait: Duration) -> redis::RedisResult<()> {
        match self {
            Conn::Node(conn) => conn
                .set_read_timeout(Some(wait))
                .and_then(|()| conn.set_write_timeout(Some(wait))),
            Conn::Cluster(conn) => conn
                .set_read_timeout(Some(wait))
                .and_then(|()| conn.set_write_timeout(Some(wait))),
        }
    }

    fn eval(
        &mut self,
        prepared: &Prepared,
        left: &dyn Fn() -> Option<Duration>,
    ) -> redis::RedisResult<Vec<i64>> {
        match self {
            Conn::Node(conn) => invocation(prepared).invoke::<Vec<i64>>(conn),
            Conn::Cluster(conn) => cluster_eval(conn, prepared, left),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Node(conn) => conn.is_open(),
            Conn::Cluster(conn) => conn.is_open(),
        }
    }
}

/// A blocking connection to Redis, shared by every thread that checks through it.
///
/// One connection serves one call at a time; a call waits for it at most its deadline.
/// [`with_connections`](RedisBackend::with_connections) spreads calls over a few
/// connections, taken in turn. Connections are made on first use and made again after
/// any failure, so a restarted server is picked up by the next call.
///
/// [`open`](RedisBackend::open) talks to one server;
/// [`open_cluster`](RedisBackend::open_cluster) to a Redis Cluster, where each
/// connection reaches every master and sends each check to the node serving its keys'
/// slot (following `MOVED` and `ASK` redirections after a resharding or a failover).
///
/// ```no_run
/// use ratewarden::redis::RedisBackend;
/// use std::time::Duration;
///
/// let redis = RedisBackend::open("redis://127.0.0.1:6379")?
///     .with_deadline(Duration::from_millis(50));
/// assert_eq!(redis.deadline(), Duration::from_millis(50));
///
/// // A cluster: any of its nodes will do as seeds, the others are discovered.
/// let cluster = RedisBackend::open_cluster([
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])?
/// .with_connections(4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisBackend {
    target: Target,
    deadline: Duration,
    conns: Box<[Mutex<Option<Conn>>]>,
    next: AtomicUsize,
}

impl RedisBackend {
    /// A backend for the server at `url` (`redis://host:port/db`), with the
    /// [`DEFAULT_DEADLINE`]. Connects on first use.
    pub fn open(url: &str) -> Result<RedisBackend, RedisCheckError> {
        let client = redis::Client::open(url).map_err(|e| connection_error(&e))?;
        Ok(RedisBackend::with_target(Target::Node(client)))
    }

    /// A backend for the Redis Cluster that `nodes` belong to (`redis://host:port` each;
    /// one reachable node is enough, the others are discovered), with the
    /// [`DEFAULT_DEADLINE`]. Connects on first use.
    ///
    /// Each check goes to the master serving its keys' slot, so the policy must keep the
    /// keys of one check in one slot: build it with
    /// [`cluster`](super::RedisPolicyBuilder::cluster). A redirection, which means the
    /// check did not run, is followed within the deadline: after `MOVED` (a resharding,
    /// a failover) the connection is made again from the new slot map, after `ASK` (a
    /// slot being migrated) the check goes to the importing node; a check that Redis
    /// refuses before running it (`TRYAGAIN`: its keys split by the migration;
    /// `CLUSTERDOWN`: a master lost, no replica promoted yet) is sent again after a pause
    /// (2 ms, doubling up to 50 ms) while the deadline allows, and is a fault with
    /// Redis's answer once it does not. A check that timed out or whose connection broke is never sent again,
    /// since it may have run. The deadline bounds the whole call, connecting (to every
    /// seed and master it takes) included.
    ///
    /// Fails with [`RedisCheckError::Connection`] when no node is given or an address is
    /// not a Redis URL.
    pub fn open_cluster(
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<RedisBackend, RedisCheckError> {
        let client = cluster_builder(nodes)?
            .build()
            .map_err(|e| connection_error(&e))?;
        Ok(RedisBackend::with_target(Target::Cluster(Box::new(client))))
    }

    fn with_target(target: Target) -> RedisBackend {
        RedisBackend {
            target,
            deadline: DEFAULT_DEADLINE,
            conns: Box::new([Mutex::new(None)]),
            next: AtomicUsize::new(0),
        }
    }

    /// Whether this backend talks to a Redis Cluster (opened with
    /// [`open_cluster`](RedisBackend::open_cluster)).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
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
        let left = || {
            self.deadline
                .checked_sub(start.elapsed())
                .filter(|d| !d.is_zero())
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let (mut reconnected, mut pauses) = (false, Pauses::new());
        loop {
            match self.send(turn, prepared, &left, &mut reconnected)? {
                Ok(reply) => return Ok(reply),
                // A cluster refused it before it ran: wait a little, the connection free
                // for other calls meanwhile, and send it again while the deadline allows.
                Err(e) if self.is_cluster() && refused_for_now(&e) => match pauses.next(left()) {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(self.error(&e)),
                },
                Err(e) => return Err(self.error(&e)),
            }
        }
    }

    /// Sends the check once on connection `turn` (made if there is none), following one
    /// `MOVED` per call (`reconnected` tells whether it was), and gives the connection
    /// back unless its state is unknown. The outer error ends the call; the inner one is
    /// Redis's answer.
    fn send(
        &self,
        turn: usize,
        prepared: &Prepared,
        left: &dyn Fn() -> Option<Duration>,
        reconnected: &mut bool,
    ) -> Result<redis::RedisResult<Vec<i64>>, RedisCheckError> {
        let timeout = || RedisCheckError::Timeout {
            deadline: self.deadline,
        };
        let mut guard = self.conns[turn]
            .try_lock_for(left().ok_or_else(timeout)?)
            .ok_or_else(timeout)?;
        let mut conn = match guard.take() {
            Some(conn) => conn,
            None => {
                let wait = left().ok_or_else(timeout)?;
                self.target.connect(wait).map_err(|e| self.error(&e))?
            }
        };
        let wait = left().ok_or_else(timeout)?;
        conn.set_timeouts(wait).map_err(|e| self.error(&e))?;
        let mut reply = conn.eval(prepared, left);
        if !*reconnected && matches!(&reply, Err(e) if is_moved(e)) {
            // The cluster's slots moved (a resharding, a failover) and the check did not
            // run: connect afresh, reading the new slot map, and send it again (once:
            // another `MOVED` is a fault).
            *reconnected = true;
            let wait = left().ok_or_else(timeout)?;
            conn = self.target.connect(wait).map_err(|e| self.error(&e))?;
            let wait = left().ok_or_else(timeout)?;
            conn.set_timeouts(wait).map_err(|e| self.error(&e))?;
            reply = conn.eval(prepared, left);
        }
        // After a timeout or a broken stream the connection's state is unknown: drop it,
        // and the next call connects afresh.
        let keep = match &reply {
            Ok(_) => true,
            Err(e) => {
                !matches!(
                    self.error(e),
                    RedisCheckError::Timeout { .. } | RedisCheckError::Connection { .. }
                ) && conn.is_open()
            }
        };
        if keep {
            *guard = Some(conn);
        }
        Ok(reply)
    }

    fn error(&self, e: &redis::RedisError) -> RedisCheckError {
        match self.target {
            Target::Node(_) => RedisCheckError::from_redis(e, self.deadline),
            Target::Cluster(_) => RedisCheckError::from_cluster(e, self.deadline),
        }
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("cluster", &self.is_cluster())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
