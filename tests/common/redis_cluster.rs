//! A real three-master Redis Cluster: three `redis-server` processes in cluster mode on
//! free loopback ports, slots 0–5460, 5461–10922 and 10923–16383 assigned one range per
//! node, joined with `CLUSTER MEET`, ready once every node reports `cluster_state:ok`.
//! The processes are killed and their directory removed on drop.
//!
//! Needs the declaring test crate to have `mod redis_server` (the binary lookup and the
//! `RATEWARDEN_REQUIRE_REDIS` rule are shared): without a `redis-server` binary,
//! [`RedisCluster::start`] returns `None` after printing why, unless
//! `RATEWARDEN_REQUIRE_REDIS` is set: then it fails the test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::redis_server::{binary_or_skip, free_port, send_signal};

/// The slot ranges of the three masters, in node order.
pub const SLOT_RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

/// How long the cluster may take to form.
const FORM_WITHIN: Duration = Duration::from_secs(20);

pub struct RedisCluster {
    children: Vec<Child>,
    /// The client port of each node, in the order of [`SLOT_RANGES`] (replicas added
    /// later follow).
    pub ports: Vec<u16>,
    /// The cluster-bus port of each node.
    buses: Vec<u16>,
    binary: PathBuf,
    dir: PathBuf,
}

static CLUSTER_ID: AtomicU64 = AtomicU64::new(0);

fn connect(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(con)
}

impl RedisCluster {
    /// A fresh, formed cluster, or `None` (with a visible message) when none can be run
    /// here.
    pub fn start() -> Option<RedisCluster> {
        let binary = binary_or_skip()?;
        // A port found free may be taken before the server binds it (the other tests
        // start servers too): then that node exits, and the cluster is started again on
        // other ports.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match RedisCluster::start_with(&binary) {
                Ok(cluster) => return Some(cluster),
                Err(_) if attempts < 3 => continue,
                Err(why) => panic!("cannot start a Redis Cluster: {why}"),
            }
        }
    }

    fn start_with(binary: &std::path::Path) -> Result<RedisCluster, String> {
        let dir = std::env::temp_dir().join(format!(
            "ratewarden-cluster-{}-{}",
            std::process::id(),
            CLUSTER_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let mut cluster = RedisCluster {
            children: Vec::new(),
            ports: Vec::new(),
            buses: Vec::new(),
            binary: binary.to_owned(),
            dir,
        };
        // Client and cluster-bus ports, all free now (the bus port is given explicitly,
        // so it need not be the client port + 10000).
        let ports: Vec<(u16, u16)> = (0..SLOT_RANGES.len())
            .map(|_| (free_port(), free_port()))
            .collect();
        for &(port, bus) in &ports {
            cluster.spawn_node(port, bus);
        }
        let start = Instant::now();
        let mut cons: Vec<redis::Connection> = Vec::new();
        for (i, port) in cluster.ports.clone().into_iter().enumerate() {
            let con = loop {
                if let Ok(Some(status)) = cluster.children[i].try_wait() {
                    return Err(format!("the node on port {port} exited: {status}"));
                }
                if let Some(mut con) = connect(port) {
                    if let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut con) {
                        // the node answering is ours, not another test's server
                        let pid = format!("process_id:{}", cluster.children[i].id());
                        if !info.lines().any(|l| l.trim() == pid) {
                            return Err(format!("port {port} is another server's"));
                        }
                        break con;
                    }
                }
                if start.elapsed() > FORM_WITHIN {
                    return Err(format!("the node on port {port} did not come up"));
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            cons.push(con);
        }
        for (con, (first, last)) in cons.iter_mut().zip(SLOT_RANGES) {
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query::<()>(con)
                .expect("CLUSTER ADDSLOTSRANGE");
        }
        for (port, bus) in &ports[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(*port)
                .arg(*bus)
                .query::<()>(&mut cons[0])
                .expect("CLUSTER MEET");
        }
        loop {
            let ready = cons.iter_mut().all(|con| {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(con)
                    .expect("CLUSTER INFO");
                info.lines().any(|l| l.trim() == "cluster_state:ok")
                    && info.lines().any(|l| l.trim() == "cluster_known_nodes:3")
            });
            if ready {
                break;
            }
            assert!(
                start.elapsed() < FORM_WITHIN,
                "the cluster on ports {:?} did not reach cluster_state:ok within {FORM_WITHIN:?}",
                cluster.ports
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    /// Starts a cluster-mode `redis-server` on `port` (bus `bus`) as the next node.
    fn spawn_node(&mut self, port: u16, bus: u16) {
        let child = Command::new(&self.binary)
            .current_dir(&self.dir)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--cluster-port", &bus.to_string()])
            .args(["--cluster-announce-ip", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.children.push(child);
        self.ports.push(port);
        self.buses.push(bus);
    }

    /// Adds a node that replicates master `of`, once its copy is in sync; returns its
    /// index. When `of` dies, the cluster promotes it after the node timeout (2 s).
    pub fn add_replica(&mut self, of: usize) -> usize {
        let start = Instant::now();
        let (port, bus) = (free_port(), free_port());
        self.spawn_node(port, bus);
        let i = self.ports.len() - 1;
        let mut con = loop {
            if let Some(con) = connect(port) {
                break con;
            }
            assert!(start.elapsed() < FORM_WITHIN, "the replica did not come up");
            std::thread::sleep(Duration::from_millis(20));
        };
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(self.ports[of])
            .arg(self.buses[of])
            .query::<()>(&mut con)
            .expect("CLUSTER MEET");
        let master = self.node_id(of);
        // the master must be known before the node can replicate it
        loop {
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con).unwrap();
            if nodes.contains(&master)
                && redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&master)
                    .query::<()>(&mut con)
                    .is_ok()
            {
                break;
            }
            assert!(
                start.elapsed() < FORM_WITHIN,
                "the replica never met its master"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut con)
                .unwrap();
            if info.lines().any(|l| l.trim() == "master_link_status:up") {
                break;
            }
            assert!(start.elapsed() < FORM_WITHIN, "the replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        i
    }

    /// Kills node `i` (SIGKILL): it is gone for good.
    pub fn kill(&mut self, i: usize) {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// A plain (single-node) connection to node `i`, for inspecting it.
    pub fn connection(&self, i: usize) -> redis::Connection {
        connect(self.ports[i]).expect("connect to a cluster node")
    }

    /// The slot of `key` (or of its hash tag), as the cluster computes it.
    pub fn key_slot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.connection(0))
            .expect("CLUSTER KEYSLOT")
    }

    /// The node (index into [`SLOT_RANGES`]) serving `slot`.
    pub fn node_of_slot(slot: u16) -> usize {
        SLOT_RANGES
            .iter()
            .position(|&(first, last)| (first..=last).contains(&slot))
            .expect("every slot is assigned")
    }

    /// The keys stored on node `i` that match `pattern` (`KEYS` answers for one node only).
    pub fn keys_on(&self, i: usize, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection(i))
            .expect("KEYS")
    }
}

impl RedisCluster {
    /// The cluster id of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.connection(i))
            .expect("CLUSTER MYID")
    }

    /// Sends `CLUSTER SETSLOT slot state node_id` to node `i` (`state` is `IMPORTING`,
    /// `MIGRATING` or `NODE`).
    pub fn set_slot(&self, i: usize, slot: u16, state: &str, node_id: &str) {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(node_id)
            .query::<()>(&mut self.connection(i))
            .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {state}: {e}"));
    }

    /// Starts migrating `slot` from node `from` to node `to`: `from` answers `ASK` for
    /// the slot's keys it does not hold, `to` accepts them after `ASKING`.
    pub fn start_migrating(&self, slot: u16, from: usize, to: usize) {
        self.set_slot(to, slot, "IMPORTING", &self.node_id(from));
        self.set_slot(from, slot, "MIGRATING", &self.node_id(to));
    }

    /// Moves every key that matches `pattern` from node `from` to node `to` (`MIGRATE`).
    pub fn migrate_keys(&self, pattern: &str, from: usize, to: usize) {
        let mut source = self.connection(from);
        for key in self.keys_on(from, pattern) {
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.ports[to])
                .arg(&key)
                .arg(0)
                .arg(5000)
                .query::<()>(&mut source)
                .expect("MIGRATE");
        }
    }

    /// Assigns `slot` to node `to` on every node: the others answer `MOVED` for it.
    pub fn assign_slot(&self, slot: u16, to: usize) {
        let id = self.node_id(to);
        // the importing node first, as a resharding does
        let order = std::iter::once(to).chain((0..self.ports.len()).filter(|&i| i != to));
        for i in order {
            self.set_slot(i, slot, "NODE", &id);
        }
    }

    /// Empties node `i`'s script cache (`SCRIPT FLUSH`), as a restart would: the next
    /// check there meets `NOSCRIPT` and must load the script again.
    pub fn flush_scripts(&self, i: usize) {
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query::<()>(&mut self.connection(i))
            .expect("SCRIPT FLUSH");
    }

    /// Pauses node `i` (SIGSTOP): it accepts nothing and answers nothing. Keep it short:
    /// after the node timeout (2 s) the others would mark it failed.
    pub fn pause(&self, i: usize) {
        send_signal(self.children[i].id(), libc::SIGSTOP).expect("SIGSTOP a node");
    }

    /// Resumes a paused node (SIGCONT).
    pub fn resume(&self, i: usize) {
        send_signal(self.children[i].id(), libc::SIGCONT).expect("SIGCONT a node");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &self.children {
            // A paused server does not die of SIGKILL until resumed on some systems.
            let _ = send_signal(child.id(), libc::SIGCONT);
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
