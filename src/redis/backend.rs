//! Connections: [`RedisBackend`] (blocking, for threads) and [`AsyncRedisBackend`]
//! (tokio), each shared by every concurrent check, each with its own deadline per call,
//! each to one server or to a Redis Cluster.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ConnectionLike, ErrorKind, ServerErrorKind};

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

/// A cluster client for the given seed nodes that never sends a command twice by itself:
/// after a timeout or a broken connection the check may have run, and sending it again
/// would spend twice (and outlast the deadline). Redirections, which tell that the check
/// did not run, are followed here instead ([`cluster_eval`], [`cluster_eval_async`]).
fn cluster_builder(
    nodes: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<ClusterClientBuilder, RedisCheckError> {
    let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
    if nodes.is_empty() {
        return Err(RedisCheckError::Connection {
            detail: Arc::from("no cluster node given; give the address of at least one"),
        });
    }
    Ok(ClusterClient::builder(nodes).retries(0))
}

fn is_moved(err: &redis::RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::Moved)
}

/// Where an `ASK` redirection points: the node importing the check's slot.
fn ask_target(err: &redis::RedisError) -> Option<SingleNodeRoutingInfo> {
    if err.kind() != ErrorKind::Server(ServerErrorKind::Ask) {
        return None;
    }
    let (addr, _slot) = err.redirect_node()?;
    let (host, port) = addr.rsplit_once(':')?;
    Some(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port: port.parse().ok()?,
    })
}

/// Whether Redis refused the check before running it, for a moment: its keys split
/// between the two nodes of a slot migration (`TRYAGAIN`), or a cluster that lost a
/// slot's master and has not failed over yet (`CLUSTERDOWN`). Sending it again later is
/// safe: it spent nothing.
fn refused_for_now(err: &redis::RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown)
    )
}

/// The pauses before sending a check again that Redis [refused for now](refused_for_now):
/// 2 ms, doubling up to 50 ms, each at most half of what is left of the deadline, so that
/// attempts continue until near its end.
struct Pauses(Duration);

impl Pauses {
    const FIRST: Duration = Duration::from_millis(2);
    const LONGEST: Duration = Duration::from_millis(50);

    fn new() -> Pauses {
        Pauses(Self::FIRST)
    }

    /// The next pause, or `None` when what is `left` of the deadline is too short for a
    /// pause and another attempt.
    fn next(&mut self, left: Option<Duration>) -> Option<Duration> {
        let pause = self.0.min(left? / 2);
        if pause < Self::FIRST {
            return None;
        }
        self.0 = (self.0 * 2).min(Self::LONGEST);
        Some(pause)
    }
}

fn is_noscript(err: &redis::RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// `EVALSHA` of the check, for sending to an explicit node.
fn evalsha(prepared: &Prepared) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(SCRIPT.get_hash()).arg(prepared.keys.len());
    for key in &prepared.keys {
        cmd.arg(key);
    }
    for arg in &prepared.args {
        cmd.arg(*arg);
    }
    cmd
}

fn script_load() -> redis::Cmd {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(SOURCE);
    cmd
}

fn reply(value: redis::Value) -> redis::RedisResult<Vec<i64>> {
    Ok(<Vec<i64> as redis::FromRedisValue>::from_redis_value(
        value,
    )?)
}

/// Where a check goes: the master serving its first key's slot (all keys of a check
/// share it), or `None` for a check without keys.
fn check_route(prepared: &Prepared) -> Option<RoutingInfo> {
    let key = prepared.keys.first()?;
    Some(RoutingInfo::SingleNode(
        SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)),
    ))
}

/// The check on a blocking cluster connection. `EVALSHA` is routed by its first key (all
/// keys of a check share its slot); after `NOSCRIPT` the script is loaded on that node
/// only (a node that does not answer elsewhere in the cluster must not fail a check
/// that never goes there) and the check sent again. During a slot migration (`ASK`) the
/// check is sent once to the importing node, after `ASKING`. A `MOVED` is returned: the
/// caller reconnects, reading the new slot map.
fn cluster_eval(
    conn: &mut redis::cluster::ClusterConnection,
    prepared: &Prepared,
    left: &dyn Fn() -> Option<Duration>,
) -> redis::RedisResult<Vec<i64>> {
    let first = match check_route(prepared) {
        Some(route) => {
            let cmd = evalsha(prepared);
            let mut send = |cmd: &redis::Cmd| {
                rearm(conn, left)?;
                conn.route_command(cmd, route.clone())
                    .and_then(redis::Value::extract_error)
            };
            match send(&cmd) {
                Err(err) if is_noscript(&err) => {
                    send(&script_load())?;
                    send(&cmd)
                }
                other => other,
            }
        }
        None => invocation(prepared).invoke::<redis::Value>(conn),
    };
    let err = match first {
        Err(err) => err,
        Ok(value) => return reply(value),
    };
    let Some(node) = ask_target(&err) else {
        return Err(err);
    };
    let route = || RoutingInfo::SingleNode(node.clone());
    let ask = |conn: &mut redis::cluster::ClusterConnection| {
        // The connection is this call's alone: `ASKING` applies to the next command.
        rearm(conn, left)?;
        conn.route_command(&redis::cmd("ASKING"), route())?;
        conn.route_command(&evalsha(prepared), route())
    };
    match ask(conn) {
        Err(err) if is_noscript(&err) => {
            rearm(conn, left)?;
            conn.route_command(&script_load(), route())?;
            reply(ask(conn)?)
        }
        other => reply(other?),
    }
}

/// `cmd` sent to the node `route` names, a server error as an error.
async fn send_async(
    conn: &mut redis::cluster_async::ClusterConnection,
    cmd: redis::Cmd,
    route: RoutingInfo,
) -> redis::RedisResult<redis::Value> {
    conn.route_command(cmd, route)
        .await
        .and_then(redis::Value::extract_error)
}

/// Bounds the next round trips on `conn` by what is `left` of the call's deadline:
/// each node's read and write timeout, set once per call, would otherwise allow a
/// reload or a redirection as long again.
fn rearm(
    conn: &redis::cluster::ClusterConnection,
    left: &dyn Fn() -> Option<Duration>,
) -> redis::RedisResult<()> {
    let Some(wait) = left() else {
        return Err(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the deadline passed").into(),
        );
    };
    conn.set_read_timeout(Some(wait))?;
    conn.set_write_timeout(Some(wait))
}

/// [`cluster_eval`] on the async cluster connection; a `MOVED` is returned as well.
async fn cluster_eval_async(
    conn: &mut redis::cluster_async::ClusterConnection,
    prepared: &Prepared,
) -> redis::RedisResult<Vec<i64>> {
    let first = match check_route(prepared) {
        Some(route) => {
            let cmd = evalsha(prepared);
            match send_async(conn, cmd.clone(), route.clone()).await {
                Err(err) if is_noscript(&err) => {
                    send_async(conn, script_load(), route.clone()).await?;
                    send_async(conn, cmd, route).await
                }
                other => other,
            }
        }
        None => {
            invocation(prepared)
                .invoke_async::<redis::Value>(&mut *conn)
                .await
        }
    };
    let err = match first {
        Err(err) => err,
        Ok(value) => return reply(value),
    };
    let Some(node) = ask_target(&err) else {
        return Err(err);
    };
    // `ASKING` and the check in one pipeline: the connection to the node is shared with
    // other tasks, whose commands must not come between them.
    let mut asking = redis::pipe();
    asking.cmd("ASKING").add_command(evalsha(prepared));
    match ask_async(conn, asking.clone(), node.clone()).await {
        Err(err) if is_noscript(&err) => {
            conn.route_command(script_load(), RoutingInfo::SingleNode(node.clone()))
                .await?;
            reply(ask_async(conn, asking, node).await?)
        }
        other => reply(other?),
    }
}

/// The reply to the second command of `pipeline` (`ASKING`, the check) sent to `node`.
async fn ask_async(
    conn: &mut redis::cluster_async::ClusterConnection,
    pipeline: redis::Pipeline,
    node: SingleNodeRoutingInfo,
) -> redis::RedisResult<redis::Value> {
    let replies = conn.route_pipeline(pipeline, 1, 1, node).await?;
    match replies.into_iter().next() {
        Some(value) => value.extract_error(),
        None => Err(redis::RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "no reply to the check",
        ))),
    }
}

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
    /// [`RedisBackend::open_cluster`]; a check that timed out or whose connection broke
    /// is never sent again, since it may have run. Fails with
    /// [`RedisCheckError::Connection`] when no node is given or an address is not a
    /// Redis URL.
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
