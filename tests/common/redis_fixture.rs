//! What the single-node and the cluster Redis tests share: the request type (a user in
//! an organization), which of the two a scope is keyed by, the tokio runtimes of the
//! async backends, and a blocking and an async backend side by side.

#![allow(dead_code)]

use std::time::Duration;

use ratewarden::redis::{
    AsyncRedisBackend, RedisBackend, RedisCheckError, RedisDecision, RedisPolicy,
};

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

/// A blocking and an async backend on the same server or cluster, both given `deadline`
/// per call, and the runtime the async one runs on.
pub struct BothBackends {
    pub blocking: RedisBackend,
    pub rt: tokio::runtime::Runtime,
    pub async_backend: AsyncRedisBackend,
}

impl BothBackends {
    /// Both on the server at `url`.
    pub fn open(url: &str, deadline: Duration) -> BothBackends {
        let blocking = RedisBackend::open(url).unwrap().with_deadline(deadline);
        let rt = runtime();
        let async_backend =
            rt.block_on(async { AsyncRedisBackend::open_with_deadline(url, deadline).unwrap() });
        BothBackends {
            blocking,
            rt,
            async_backend,
        }
    }

    /// Both on the cluster whose nodes are at `urls`.
    pub fn open_cluster(urls: Vec<String>, deadline: Duration) -> BothBackends {
        let blocking = RedisBackend::open_cluster(urls.clone())
            .unwrap()
            .with_deadline(deadline);
        let rt = runtime();
        let async_backend = rt.block_on(async {
            AsyncRedisBackend::open_cluster_with_deadline(urls, deadline).unwrap()
        });
        BothBackends {
            blocking,
            rt,
            async_backend,
        }
    }

    /// Checks `r` at a cost of 1 on the async backend if `async_`, else on the blocking
    /// one.
    pub fn check<'p>(
        &self,
        policy: &'p RedisPolicy<Req>,
        r: &Req,
        async_: bool,
    ) -> Result<RedisDecision<'p>, RedisCheckError> {
        if async_ {
            self.rt
                .block_on(policy.check_async(&self.async_backend, r, 1))
        } else {
            policy.check(&self.blocking, r, 1)
        }
    }
}
