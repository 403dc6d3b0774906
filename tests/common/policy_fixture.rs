//! A small policy and scripted traffic shared by the observability tests.

use ratewarden::{Clock, FixedWindow, KeyedLimiter, Policy, Scope};

#[derive(Clone, Copy)]
pub struct Req {
    pub user: u64,
    pub write: bool,
}

pub fn policy(clock: Clock) -> Policy<Req> {
    Policy::builder()
        .name("api")
        .clock(clock)
        .scope(Scope::with_limiter(
            "user",
            // one shard, so that eviction in the tests does not depend on how keys hash
            KeyedLimiter::<u64, _>::builder(FixedWindow::new("10/min".parse().unwrap()))
                .shards(1)
                .build(),
            |r: &Req| Some(r.user),
        ))
        .scope(Scope::keyed(
            "writes",
            FixedWindow::new("3/min".parse().unwrap()),
            |r: &Req| r.write.then_some(r.user),
        ))
        .scope(
            Scope::keyed(
                "new_daily",
                FixedWindow::new("5/day".parse().unwrap()),
                |r: &Req| Some(r.user),
            )
            .shadow(),
        )
        .build()
}

/// 12 requests from user 1 (4 of them writes) and 2 from user 2, then a peek.
pub fn traffic(policy: &Policy<Req>) {
    for i in 0..12 {
        policy
            .check(
                &Req {
                    user: 1,
                    write: i % 3 == 0,
                },
                1,
            )
            .unwrap();
    }
    for _ in 0..2 {
        policy
            .check(
                &Req {
                    user: 2,
                    write: false,
                },
                1,
            )
            .unwrap();
    }
    policy
        .peek(
            &Req {
                user: 1,
                write: true,
            },
            1,
        )
        .unwrap();
}
