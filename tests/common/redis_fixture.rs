//! What the single-node and the cluster Redis tests share: the request type (a user in
//! an organization), which of the two a scope is keyed by, and the tokio runtimes of the
//! async backends.

#![allow(dead_code)]

#[derive(Clone, Debug)]
pub struct Req {
    pub user: String,
    pub org: String,
}

pub fn req(user: &str, org: &str) -> Req {
    Req {
        user: user.into(),
        org: org.into(),
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Key {
    User,
    Org,
}

impl Key {
    pub fn of(self, r: &Req) -> Option<String> {
        Some(match self {
            Key::User => r.user.clone(),
            Key::Org => r.org.clone(),
        })
    }
}

/// A single-threaded tokio runtime for the async backend.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-threaded tokio runtime with `workers` worker threads.
pub fn multi_thread_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}
