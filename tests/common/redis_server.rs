//! A real `redis-server` on a free loopback port, as a child process stopped by its pid.
//!
//! Without a `redis-server` binary, [`RedisServer::start`] returns `None` after printing
//! why, unless `RATEWARDEN_REQUIRE_REDIS` is set (as in CI): then it fails the test.

#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    binary: PathBuf,
}

fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// The `redis-server` binary, or `None` (with a visible message) when there is none and
/// `RATEWARDEN_REQUIRE_REDIS` is not set; when it is set, a missing binary fails the test.
pub fn binary_or_skip() -> Option<PathBuf> {
    let Some(binary) = find_binary() else {
        if std::env::var_os("RATEWARDEN_REQUIRE_REDIS").is_some() {
            panic!("RATEWARDEN_REQUIRE_REDIS is set but no redis-server is on PATH");
        }
        // Written to the stderr handle, not with `eprintln!`, which the test harness
        // captures and hides for passing tests: the skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no redis-server on PATH; install it (apt-get install redis-server) \
             to run the Redis backend tests"
        );
        return None;
    };
    Some(binary)
}

/// Sends `signal` to process `pid` with kill(2), not by running `kill`: starting a
/// process blocks every signal in the starting thread for a moment, and a SIGCHLD that
/// arrives for that thread then interrupts another thread's socket read that has a
/// timeout (EINTR): a test's check or the cluster's formation failed with
/// "Interrupted system call" when tests ran in parallel.
pub fn send_signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl RedisServer {
    /// A fresh server, or `None` (with a visible message) when none can be run here.
    pub fn start() -> Option<RedisServer> {
        let binary = binary_or_skip()?;
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            binary,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) {
                    if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits until its port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(start.elapsed() < Duration::from_secs(10), "port still open");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Pauses the server (SIGSTOP): it accepts nothing and answers nothing.
    pub fn pause(&self) {
        send_signal(self.pid(), libc::SIGSTOP).expect("SIGSTOP the server");
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        send_signal(self.pid(), libc::SIGCONT).expect("SIGCONT the server");
    }

    /// A blocking backend on the server, with `deadline` per call.
    pub fn backend(&self, deadline: Duration) -> ratewarden::redis::RedisBackend {
        ratewarden::redis::RedisBackend::open(&self.url())
            .unwrap()
            .with_deadline(deadline)
    }

    /// A plain connection for inspecting and disturbing the server.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server does not die of SIGKILL until resumed on some systems.
            let _ = send_signal(child.id(), libc::SIGCONT);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
