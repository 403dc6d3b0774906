//! The Redis backends against a real three-master Redis Cluster (started per test on free
//! loopback ports): checks whose hash tags hash to slots on every master decide exactly
//! as the in-process policy, blocking and async; a single-node backend pointed at one
//! master fails, with a typed error, the checks whose slot another master serves; a
//! denial spends nothing, on whichever node its keys live; and a check that Redis
//! refuses for a moment (a slot migrating or unserved) is served, once, as soon as the
//! slot is, within its deadline.

#[path = "common/redis_server.rs"]
mod redis_server;

#[path = "common/redis_cluster.rs"]
mod redis_cluster;

#[path = "common/redis_fixture.rs"]
mod redis_fixture;

#[path = "common/redis_twins.rs"]
mod redis_twins;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratewarden::redis::{
    AsyncRedisBackend, FailureMode, RedisAlgorithm, RedisBackend, RedisCheckError, RedisPolicy,
    RedisScope,
};
use ratewarden::{Anchor, Clock, FixedWindow, Gcra, Policy, Rate, SlidingLog, SlidingWindow};
use redis_cluster::RedisCluster;
use redis_fixture::{multi_thread_runtime, req, runtime, BothBackends, Key, Req};
use redis_twins::{in_process_scope, seen, seen_on_both, Seen, T0};

static POLICY_ID: AtomicU64 = AtomicU64::new(0);

/// A fresh policy name, so that tests share no keys.
fn policy_name(what: &str) -> String {
    format!("{what}{}", POLICY_ID.fetch_add(1, Ordering::Relaxed))
}

/// The same scopes as an in-process policy (on `clock`, if given) and as a Redis Cluster
/// policy tagged by organization.
fn twins(
    name: &str,
    scopes: &[(&str, RedisAlgorithm, Key)],
    clock: Option<Clock>,
) -> (Policy<Req>, RedisPolicy<Req>) {
    let mut local = Policy::builder();
    let mut remote = RedisPolicy::builder()
        .name(name)
        .hash_tag(|r: &Req| Some(r.org.clone()))
        .cluster();
    for &(scope, alg, key) in scopes {
        let f = move |r: &Req| key.of(r);
        local = local.scope(in_process_scope(scope, alg, f));
        remote = remote.scope(RedisScope::keyed(scope, alg, f));
    }
    if let Some(clock) = clock {
        local = local.clock(clock);
    }
    (
        local.build(),
        remote.build().expect("a valid cluster policy"),
    )
}

/// In-process and Redis twins of a policy with one scope: 5 a day per user (sliding log).
fn one_user_scope(name: &str) -> (Policy<Req>, RedisPolicy<Req>) {
    twins(
        name,
        &[("user", SlidingLog::new(rate("5/day")).into(), Key::User)],
        None,
    )
}

/// The Redis policy of [`one_user_scope`], and an organization whose keys lie on the
/// first master.
fn one_user_scope_on_one_org(cluster: &RedisCluster, name: &str) -> (RedisPolicy<Req>, String) {
    let (_, policy) = one_user_scope(name);
    (policy, orgs_on_every_node(cluster, 1)[0].clone())
}

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

/// Organizations whose hash tags, together, lie on every master: `per_node` of each.
fn orgs_on_every_node(cluster: &RedisCluster, per_node: usize) -> Vec<String> {
    let mut found: [Vec<String>; 3] = Default::default();
    for i in 0.. {
        let org = format!("org{i}");
        let node = RedisCluster::node_of_slot(cluster.key_slot(&org));
        if found[node].len() < per_node {
            found[node].push(org);
        }
        if found.iter().all(|f| f.len() == per_node) {
            break;
        }
        assert!(i < 10_000, "no tags found for every node");
    }
    // interleaved, so that consecutive checks go to different nodes
    (0..per_node)
        .flat_map(|k| found.iter().map(move |f| f[k].clone()))
        .collect()
}

/// Traffic over `orgs`, two users each, interleaved across organizations: `rounds`
/// requests per user, every fifth of cost 2.
fn traffic(orgs: &[String], rounds: usize) -> Vec<(Req, u64)> {
    let mut all = Vec::new();
    for round in 0..rounds {
        for org in orgs {
            for u in 0..2 {
                let cost = if (round + u) % 5 == 4 { 2 } else { 1 };
                all.push((req(&format!("{org}-u{u}"), org), cost));
            }
        }
    }
    all
}

/// The nodes holding at least one key of policy `name`, asked node by node, each key
/// checked to hash to a slot its node serves.
fn nodes_holding(cluster: &RedisCluster, name: &str) -> BTreeSet<usize> {
    let mut nodes = BTreeSet::new();
    for i in 0..cluster.ports.len() {
        let keys = cluster.keys_on(i, &format!("*{name}*"));
        for key in &keys {
            assert_eq!(
                RedisCluster::node_of_slot(cluster.key_slot(key)),
                i,
                "key {key} on node {i}"
            );
        }
        if !keys.is_empty() {
            nodes.insert(i);
        }
    }
    nodes
}

/// Empties every node's script cache, as a restart would.
fn flush_all_scripts(cluster: &RedisCluster) {
    for i in 0..cluster.ports.len() {
        cluster.flush_scripts(i);
    }
}

/// Asserts the scenario exercised both outcomes, with policy `name`'s keys on every
/// master.
fn assert_mixed_on_every_master(all: &[Seen], cluster: &RedisCluster, name: &str) {
    let allowed = all.iter().filter(|s| s.0).count();
    assert!(
        allowed > 0 && allowed < all.len(),
        "{allowed} of {} allowed",
        all.len()
    );
    assert_eq!(
        nodes_holding(cluster, name),
        BTreeSet::from([0, 1, 2]),
        "the policy's keys lie on every master"
    );
}

/// Every algorithm, limits per hour on the user and the organization, tags on all three
/// masters: the blocking cluster backend decides request by request exactly as the
/// in-process policy (both given the same instants), retry-after included, also after
/// every node lost the script.
#[test]
fn blocking_cluster_backend_agrees_with_the_in_process_policy_on_every_node() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let redis = RedisBackend::open_cluster(cluster.urls())
        .unwrap()
        .with_deadline(Duration::from_secs(5))
        .with_connections(2);
    assert!(redis.is_cluster());
    let name = policy_name("agree");
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_micros(T0));
    let (local, remote) = twins(
        &name,
        &[
            ("user_gcra", Gcra::new(rate("4/hour")).into(), Key::User),
            (
                "user_log",
                SlidingLog::new(rate("5/hour")).into(),
                Key::User,
            ),
            (
                "org_fixed",
                FixedWindow::new(rate("7/hour")).into(),
                Key::Org,
            ),
            (
                "org_sliding",
                SlidingWindow::new(rate("9/hour")).into(),
                Key::Org,
            ),
            (
                "org_first",
                FixedWindow::new(rate("8/hour"))
                    .anchored(Anchor::FirstRequest)
                    .into(),
                Key::Org,
            ),
        ],
        Some(clock),
    );
    let orgs = orgs_on_every_node(&cluster, 4);
    let mut at = 0;
    let mut all = Vec::new();
    let traffic = traffic(&orgs, 6);
    for (i, (r, cost)) in traffic.iter().enumerate() {
        if i == traffic.len() / 2 {
            flush_all_scripts(&cluster);
        }
        // a millisecond apart: far too little for any refill of these rates to matter,
        // but every algorithm sees time pass
        at += 1_000;
        mock.increment(Duration::from_micros(1_000));
        let (mine, theirs) = seen_on_both(&local, &remote, &redis, r, *cost, at);
        assert_eq!(theirs, mine, "request {i}: {r:?} cost {cost}");
        all.push(mine);
    }
    assert_mixed_on_every_master(&all, &cluster, &name);
}

/// The same through the async cluster backend on tokio, at the servers' own time: the
/// algorithms are per day (a first-request-anchored window, a log, GCRA), so no refill
/// and no window reset happens during the test, and allowed, denials and remaining agree,
/// also after every node lost the script.
#[test]
fn async_cluster_backend_agrees_with_the_in_process_policy_on_every_node() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let name = policy_name("async");
    let (local, remote) = twins(
        &name,
        &[
            ("user_gcra", Gcra::new(rate("4/day")).into(), Key::User),
            ("user_log", SlidingLog::new(rate("5/day")).into(), Key::User),
            (
                "org_first",
                FixedWindow::new(rate("11/day"))
                    .anchored(Anchor::FirstRequest)
                    .into(),
                Key::Org,
            ),
        ],
        None,
    );
    let orgs = orgs_on_every_node(&cluster, 4);
    let rt = multi_thread_runtime(2);
    let all = rt.block_on(async {
        let redis =
            AsyncRedisBackend::open_cluster_with_deadline(cluster.urls(), Duration::from_secs(5))
                .unwrap();
        assert!(redis.is_cluster());
        let mut all = Vec::new();
        let traffic = traffic(&orgs, 6);
        for (i, (r, cost)) in traffic.iter().enumerate() {
            if i == traffic.len() / 2 {
                flush_all_scripts(&cluster);
            }
            let mine = seen(&local.check(r, *cost).unwrap(), false);
            // through a clone, as tasks would share it
            let theirs = seen(
                &remote.check_async(&redis.clone(), r, *cost).await.unwrap(),
                false,
            );
            assert_eq!(theirs, mine, "request {i}: {r:?} cost {cost}");
            all.push(mine);
        }
        all
    });
    assert_mixed_on_every_master(&all, &cluster, &name);
}

/// A single-node backend pointed at the first master answers for its own slots and fails
/// the others with a typed fault (the server's `MOVED`), while the cluster backend
/// answers for both.
#[test]
fn single_node_backend_fails_other_nodes_slots_with_a_typed_error() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let orgs = orgs_on_every_node(&cluster, 1);
    let (here, elsewhere) = (&orgs[0], &orgs[1]);
    assert_eq!(RedisCluster::node_of_slot(cluster.key_slot(here)), 0);
    assert_eq!(RedisCluster::node_of_slot(cluster.key_slot(elsewhere)), 1);
    let (_, policy) = twins(
        &policy_name("moved"),
        &[("user", SlidingLog::new(rate("3/day")).into(), Key::User)],
        None,
    );
    let single = RedisBackend::open(&cluster.urls()[0])
        .unwrap()
        .with_deadline(Duration::from_secs(5));
    assert!(!single.is_cluster());
    let d = policy.check(&single, &req("a", here), 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.scopes().next().unwrap().decision.remaining(), 2);

    let err = policy.check(&single, &req("b", elsewhere), 1).unwrap_err();
    let slot = cluster.key_slot(elsewhere);
    let node = format!("127.0.0.1:{}", cluster.ports[1]);
    assert_eq!(
        err,
        RedisCheckError::WrongNode {
            slot,
            node: node.as_str().into()
        }
    );
    // a misconfiguration, returned whatever the failure mode
    assert!(!err.is_fault());
    let open = RedisPolicy::builder()
        .name(&policy_name("moved_open"))
        .hash_tag(|r: &Req| Some(r.org.clone()))
        .cluster()
        .on_failure(FailureMode::Open)
        .scope(RedisScope::keyed(
            "user",
            SlidingLog::new(rate("3/day")),
            |r: &Req| Some(r.user.clone()),
        ))
        .build()
        .unwrap();
    assert!(matches!(
        open.check(&single, &req("c", elsewhere), 1),
        Err(RedisCheckError::WrongNode { .. })
    ));

    let clustered = RedisBackend::open_cluster(cluster.urls())
        .unwrap()
        .with_deadline(Duration::from_secs(5));
    // the same user as through the single node: one unit already spent
    let d = policy.check(&clustered, &req("a", here), 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.scopes().next().unwrap().decision.remaining(), 1);
    // the failed check spent nothing; through the cluster it is the first
    let d = policy.check(&clustered, &req("b", elsewhere), 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.scopes().next().unwrap().decision.remaining(), 2);
}

/// On every master, a request denied by its organization's scope spends nothing in the
/// user's scope that would have allowed it, nor in the organization's: later checks and
/// peeks see the counts the denial left untouched.
#[test]
fn denials_spend_nothing_on_any_node() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (_, policy) = twins(
        &policy_name("deny"),
        &[
            ("user", SlidingLog::new(rate("5/day")).into(), Key::User),
            ("org", FixedWindow::new(rate("2/day")).into(), Key::Org),
        ],
        None,
    );
    let redis = RedisBackend::open_cluster(cluster.urls())
        .unwrap()
        .with_deadline(Duration::from_secs(5));
    let orgs = orgs_on_every_node(&cluster, 2);
    let mut nodes = BTreeSet::new();
    for org in &orgs {
        nodes.insert(RedisCluster::node_of_slot(cluster.key_slot(org)));
        let r = req(&format!("{org}-u"), org);
        for left in [1, 0] {
            let d = policy.check(&redis, &r, 1).unwrap();
            assert!(d.is_allowed(), "{org}");
            let remaining: Vec<u64> = d.scopes().map(|s| s.decision.remaining()).collect();
            assert_eq!(remaining, [3 + left, left], "{org}");
        }
        for _ in 0..3 {
            let d = policy.check(&redis, &r, 1).unwrap();
            assert!(!d.is_allowed(), "{org}");
            let denials: Vec<&str> = d.denials().map(|s| s.name).collect();
            assert_eq!(denials, ["org"], "{org}");
            let remaining: Vec<u64> = d.scopes().map(|s| s.decision.remaining()).collect();
            assert_eq!(remaining, [3, 0], "{org}: the denial spent nothing");
        }
        let d = policy.peek(&redis, &r, 1).unwrap();
        let remaining: Vec<u64> = d.scopes().map(|s| s.decision.remaining()).collect();
        assert_eq!(remaining, [3, 0], "{org}");
    }
    assert_eq!(nodes, BTreeSet::from([0, 1, 2]), "denials on every master");
}

/// A slot migrated from the first master to the second while checks go on: during the
/// migration (`ASK`, with the importing node having lost the script) and after it
/// (`MOVED`), the blocking and async cluster backends reach the node that holds the
/// slot, and each check is spent exactly once.
#[test]
fn a_resharding_is_followed_and_each_check_spent_once() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let name = policy_name("reshard");
    let (policy, org) = one_user_scope_on_one_org(&cluster, &name);
    let slot = cluster.key_slot(&org);
    assert_eq!(RedisCluster::node_of_slot(slot), 0);
    let backends = BothBackends::open_cluster(cluster.urls(), Duration::from_secs(5));
    let remaining = |user: &str, async_: bool| -> u64 {
        let d = backends
            .check(&policy, &req(user, &org), async_)
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert!(d.is_allowed(), "{user}");
        let left = d.scopes().next().unwrap().decision.remaining();
        left
    };
    // both connect and load the script everywhere, on the slot's first owner
    assert_eq!(remaining("warm-b", false), 4);
    assert_eq!(remaining("warm-a", true), 4);
    assert_eq!(cluster.keys_on(0, &format!("*{name}*")).len(), 2);

    cluster.start_migrating(slot, 0, 1);
    // the importing node lost the script: the check sent there after ASKING loads it
    cluster.flush_scripts(1);
    assert_eq!(remaining("b", false), 4);
    assert_eq!(remaining("b", false), 3);
    cluster.flush_scripts(1);
    assert_eq!(remaining("a", true), 4);
    assert_eq!(remaining("a", true), 3);
    // the new users' keys went to the importing node, the old ones stayed
    assert_eq!(cluster.keys_on(1, &format!("*{name}*")).len(), 2);
    assert_eq!(cluster.keys_on(0, &format!("*{name}*")).len(), 2);

    // move the old users' keys too, then hand the slot over
    cluster.migrate_keys(&format!("*{name}*"), 0, 1);
    cluster.assign_slot(slot, 1);
    assert_eq!(remaining("b", false), 2);
    assert_eq!(remaining("a", true), 2);
    assert_eq!(remaining("warm-b", false), 3);
    assert_eq!(remaining("warm-a", true), 3);
    assert_eq!(cluster.keys_on(1, &format!("*{name}*")).len(), 4);
    assert!(cluster.keys_on(0, &format!("*{name}*")).is_empty());
}

/// A check on a paused master times out with the typed error, on the blocking and the
/// async cluster backend, and is not sent again: once the node is back, the user's count
/// shows at most that one check spent besides the next one.
#[test]
fn a_check_that_timed_out_is_never_sent_again() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (_, policy) = one_user_scope(&policy_name("timeout"));
    let org = orgs_on_every_node(&cluster, 1)[1].clone();
    assert_eq!(RedisCluster::node_of_slot(cluster.key_slot(&org)), 1);
    let deadline = Duration::from_millis(300);
    let backends = BothBackends::open_cluster(cluster.urls(), deadline);
    let check = |user: &str, async_: bool| {
        backends.check(&policy, &req(user, &org), async_).map(|d| {
            (
                d.is_allowed(),
                d.scopes().next().unwrap().decision.remaining(),
            )
        })
    };
    for (user, async_) in [("b", false), ("a", true)] {
        assert_eq!(check(user, async_), Ok((true, 4)), "{user}");
        cluster.pause(1);
        let timed_out = check(user, async_);
        cluster.resume(1);
        assert_eq!(
            timed_out,
            Err(RedisCheckError::Timeout { deadline }),
            "{user}"
        );
        let (allowed, left) = check(user, async_).unwrap();
        assert!(allowed, "{user}");
        // 3 if the timed-out check never ran, 2 if it ran once; resending it would
        // have spent more
        assert!((2..=3).contains(&left), "{user}: {left} left");
    }
}

/// Threads on one blocking cluster backend (a few pooled connections) and tasks on one
/// async cluster backend, all at once, over organizations on every master: each
/// organization admits exactly its limit.
#[test]
fn concurrent_checks_on_both_backends_admit_exactly_the_limit() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (_, policy) = twins(
        &policy_name("concurrent"),
        &[("org", FixedWindow::new(rate("10/day")).into(), Key::Org)],
        None,
    );
    let policy = std::sync::Arc::new(policy);
    let orgs = orgs_on_every_node(&cluster, 2);
    let blocking = std::sync::Arc::new(
        RedisBackend::open_cluster(cluster.urls())
            .unwrap()
            .with_deadline(Duration::from_secs(5))
            .with_connections(3),
    );
    let rt = multi_thread_runtime(2);
    let async_backend = rt.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline(cluster.urls(), Duration::from_secs(5))
            .unwrap()
    });
    send_sync(&*blocking);
    send_sync(&async_backend);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (policy, blocking, orgs) = (policy.clone(), blocking.clone(), orgs.clone());
            std::thread::spawn(move || {
                let mut allowed = vec![0u64; orgs.len()];
                for _ in 0..5 {
                    for (i, org) in orgs.iter().enumerate() {
                        let r = req(&format!("t{t}"), org);
                        allowed[i] +=
                            u64::from(policy.check(&blocking, &r, 1).unwrap().is_allowed());
                    }
                }
                allowed
            })
        })
        .collect();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (policy, backend, orgs) = (policy.clone(), async_backend.clone(), orgs.clone());
            rt.spawn(async move {
                let mut allowed = vec![0u64; orgs.len()];
                for _ in 0..3 {
                    for (i, org) in orgs.iter().enumerate() {
                        let r = req(&format!("a{t}"), org);
                        let d = policy.check_async(&backend, &r, 1).await.unwrap();
                        allowed[i] += u64::from(d.is_allowed());
                    }
                }
                allowed
            })
        })
        .collect();
    let mut total = vec![0u64; orgs.len()];
    for thread in threads {
        for (sum, n) in total.iter_mut().zip(thread.join().unwrap()) {
            *sum += n;
        }
    }
    for task in tasks {
        for (sum, n) in total.iter_mut().zip(rt.block_on(task).unwrap()) {
            *sum += n;
        }
    }
    // 4 × 5 + 8 × 3 = 44 attempts per organization, 10 admitted
    assert_eq!(total, vec![10; orgs.len()]);
}

/// Opening checks its arguments without any server, and the async backend needs tokio.
#[test]
fn opening_a_cluster_backend_rejects_bad_arguments() {
    let none: [&str; 0] = [];
    assert!(matches!(
        RedisBackend::open_cluster(none),
        Err(RedisCheckError::Connection { .. })
    ));
    assert!(matches!(
        RedisBackend::open_cluster(["not a url"]),
        Err(RedisCheckError::Connection { .. })
    ));
    assert_eq!(
        AsyncRedisBackend::open_cluster(["redis://127.0.0.1:1/"]).unwrap_err(),
        RedisCheckError::NoRuntime
    );
    let rt = runtime();
    rt.block_on(async {
        assert!(matches!(
            AsyncRedisBackend::open_cluster(none),
            Err(RedisCheckError::Connection { .. })
        ));
        let backend = AsyncRedisBackend::open_cluster(["redis://127.0.0.1:1/"]).unwrap();
        assert!(backend.is_cluster());
        assert_eq!(backend.deadline(), ratewarden::redis::DEFAULT_DEADLINE);
    });
    let blocking = RedisBackend::open_cluster(["redis://127.0.0.1:1/"]).unwrap();
    assert!(blocking.is_cluster());
    assert_eq!(blocking.deadline(), ratewarden::redis::DEFAULT_DEADLINE);
}

/// Runs `check` while node 1 is paused and asserts that it answered within `deadline`
/// (and some scheduling); returns its answer.
fn answer_with_node_1_paused(
    cluster: &RedisCluster,
    deadline: Duration,
    check: impl FnOnce() -> Result<bool, RedisCheckError>,
) -> Result<bool, RedisCheckError> {
    cluster.pause(1);
    let start = std::time::Instant::now();
    let got = check();
    let elapsed = start.elapsed();
    cluster.resume(1);
    assert!(
        elapsed < deadline + Duration::from_millis(500),
        "took {elapsed:?} with a deadline of {deadline:?}: {got:?}"
    );
    got
}

/// A blocking cluster backend's first call, with an unresponsive (paused)
/// node listed first among the seeds, answers within its deadline like a single-node
/// backend does: connecting is part of the call.
#[test]
fn blocking_cluster_call_with_a_paused_seed_answers_within_the_deadline() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("paused_seed"));
    let deadline = Duration::from_millis(300);
    let urls = cluster.urls();
    let blocking = RedisBackend::open_cluster([&urls[1], &urls[0], &urls[2]])
        .unwrap()
        .with_deadline(deadline);
    let got = answer_with_node_1_paused(&cluster, deadline, || {
        policy
            .check(&blocking, &req("u", &org), 1)
            .map(|d| d.is_allowed())
    });
    assert_eq!(got, Err(RedisCheckError::Timeout { deadline }));
    // the node back, the next call connects and is served
    let d = policy.check(&blocking, &req("u", &org), 1).unwrap();
    assert!(d.is_allowed());
}

/// The async twin: the whole call, connecting included, is bounded by the deadline.
#[test]
fn async_cluster_call_with_a_paused_seed_answers_within_the_deadline() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("paused_seed_async"));
    let deadline = Duration::from_millis(300);
    let urls = cluster.urls();
    let rt = runtime();
    let backend = rt.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline([&urls[1], &urls[0], &urls[2]], deadline)
            .unwrap()
    });
    // only how soon it answers is asserted, not what
    let _ = answer_with_node_1_paused(&cluster, deadline, || {
        rt.block_on(policy.check_async(&backend, &req("u", &org), 1))
            .map(|d| d.is_allowed())
    });
}

/// A node that lost the script is served although another master does
/// not answer: the script is loaded where the check goes.
#[test]
fn noscript_on_a_healthy_node_is_recovered_while_another_master_is_paused() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("noscript_paused"));
    let deadline = Duration::from_millis(300);
    let backends = BothBackends::open_cluster(cluster.urls(), deadline);
    let r = req("u", &org);
    assert!(backends.check(&policy, &r, false).unwrap().is_allowed());
    assert!(backends.check(&policy, &r, true).unwrap().is_allowed());
    cluster.flush_scripts(0);
    cluster.pause(1);
    let b = backends.check(&policy, &r, false).map(|d| d.is_allowed());
    cluster.flush_scripts(0);
    let a = backends.check(&policy, &r, true).map(|d| d.is_allowed());
    cluster.resume(1);
    assert_eq!((b, a), (Ok(true), Ok(true)), "(blocking, async)");
}

/// Odd seeds and deadlines give errors, never a panic, when opening and when checking.
#[test]
fn odd_cluster_arguments_never_panic() {
    for url in [
        "",
        "redis://",
        "redis://:0",
        "redis://[::1",
        "redis://h:99999",
        "unix:///tmp/x.sock",
        "rediss://127.0.0.1:1/",
        "redis://127.0.0.1:1/99999999999",
    ] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            RedisBackend::open_cluster([url]).map(|_| ())
        }));
        assert!(r.is_ok(), "open_cluster({url:?}) panicked");
        if let Ok(Ok(())) = r {
            let (_, policy) = one_user_scope(&policy_name("odd"));
            let b = RedisBackend::open_cluster([url]).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                policy.check(&b, &req("u", "o"), 1).map(|_| ())
            }));
            assert!(r.is_ok(), "check on {url:?} panicked");
        }
    }
    for deadline in [Duration::ZERO, Duration::from_millis(50), Duration::MAX] {
        let (_, policy) = one_user_scope(&policy_name("odd"));
        let b = RedisBackend::open_cluster(["redis://127.0.0.1:1/"])
            .unwrap()
            .with_deadline(deadline);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            policy.check(&b, &req("u", "o"), 1).map(|_| ())
        }));
        assert!(matches!(r, Ok(Err(_))), "deadline {deadline:?}: {r:?}");
    }
    let rt = runtime();
    for url in [
        "",
        "redis://",
        "redis://:0",
        "redis://h:99999",
        "unix:///tmp/x.sock",
        "rediss://127.0.0.1:1/",
        "redis://127.0.0.1:1/",
    ] {
        for deadline in [Duration::ZERO, Duration::from_millis(50), Duration::MAX] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(async {
                    let b = AsyncRedisBackend::open_cluster_with_deadline([url], deadline)?;
                    let (_, policy) = one_user_scope(&policy_name("odd"));
                    if deadline != Duration::MAX {
                        policy.check_async(&b, &req("u", "o"), 1).await.map(|_| ())
                    } else {
                        Ok(())
                    }
                })
            }));
            assert!(r.is_ok(), "async {url:?} {deadline:?} panicked");
        }
    }
}

/// A slot half-migrated (the source answers `ASK`, the target was never set importing
/// and answers `MOVED` back): both cluster backends give up with a fault within the
/// deadline instead of bouncing between the nodes, and nothing is spent.
#[test]
fn a_redirection_loop_ends_in_a_fault_that_spent_nothing() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let name = policy_name("bounce");
    let (policy, org) = one_user_scope_on_one_org(&cluster, &name);
    let slot = cluster.key_slot(&org);
    let deadline = Duration::from_secs(2);
    let backends = BothBackends::open_cluster(cluster.urls(), deadline);
    cluster.set_slot(0, slot, "MIGRATING", &cluster.node_id(1));
    for async_ in [false, true] {
        let r = req(&format!("u{async_}"), &org);
        let start = std::time::Instant::now();
        let got = backends.check(&policy, &r, async_);
        let elapsed = start.elapsed();
        let e = got.map(|d| d.is_allowed()).unwrap_err();
        assert!(e.is_fault(), "async {async_}: {e:?}");
        assert!(elapsed < deadline, "async {async_}: {elapsed:?}");
    }
    for i in 0..3 {
        assert!(
            cluster.keys_on(i, &format!("*{name}*")).is_empty(),
            "node {i}"
        );
    }
}

/// The async cluster backend outlives the runtime it first connected on: once that
/// runtime is gone, a check on another runtime fails at most once, as a connection
/// fault, and the next one connects afresh.
#[test]
fn async_cluster_backend_recovers_after_its_runtime_is_dropped() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("runtime"));
    let r = req("u", &org);
    let first = runtime();
    let backend = first.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline(cluster.urls(), Duration::from_secs(2))
            .unwrap()
    });
    let d = first.block_on(policy.check_async(&backend, &r, 1)).unwrap();
    assert_eq!(d.scopes().next().unwrap().decision.remaining(), 4);
    drop(first);
    let second = runtime();
    let once = second.block_on(policy.check_async(&backend, &r, 1));
    let left = match once {
        Ok(d) => d.scopes().next().unwrap().decision.remaining(),
        Err(e) => {
            assert!(matches!(e, RedisCheckError::Connection { .. }), "{e:?}");
            4
        }
    };
    let d = second
        .block_on(policy.check_async(&backend, &r, 1))
        .unwrap();
    assert_eq!(d.scopes().next().unwrap().decision.remaining(), left - 1);
}

/// A Redis policy of two scopes whose keys share the organization's slot: 5 a day per
/// user (sliding log), 50 a day per organization (fixed window).
fn user_and_org(name: &str) -> RedisPolicy<Req> {
    let scopes = [
        ("user", SlidingLog::new(rate("5/day")).into(), Key::User),
        ("org", FixedWindow::new(rate("50/day")).into(), Key::Org),
    ];
    twins(name, &scopes, None).1
}

/// A check of several keys (user and organization, one slot) while that slot migrates:
/// a user whose keys are not all on one side (a new user: the organization's key on the
/// source, the user's nowhere yet) is refused by Redis itself (`TRYAGAIN`, no
/// redirection to follow), on both backends. The check is sent again after growing
/// pauses until the deadline leaves no room, then fails as a fault, answered by the
/// failure mode, that spent nothing. A user whose keys are all still on the source is
/// served. Once the slot is handed over, the new user is served too.
#[test]
fn a_multi_key_check_during_a_migration_is_a_fault_until_the_slot_is_handed_over() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let name = policy_name("twokeys");
    let policy = user_and_org(&name);
    let org = orgs_on_every_node(&cluster, 1)[0].clone();
    let slot = cluster.key_slot(&org);
    let deadline = Duration::from_millis(500);
    let backends = BothBackends::open_cluster(cluster.urls(), deadline);
    let check = |user: &str, async_: bool| {
        backends.check(&policy, &req(user, &org), async_).map(|d| {
            d.scopes()
                .map(|s| s.decision.remaining())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(check("old", false), Ok(vec![4, 49]));
    cluster.start_migrating(slot, 0, 1);
    assert_eq!(check("old", true), Ok(vec![3, 48]));
    for async_ in [false, true] {
        let start = Instant::now();
        match check("new", async_) {
            Err(RedisCheckError::Server { detail }) => {
                assert!(detail.contains("TryAgain"), "{detail}")
            }
            other => panic!("async {async_}: {other:?}"),
        }
        // sent again until the deadline left no room, and not past it
        let waited = start.elapsed();
        assert!(waited >= deadline / 2, "async {async_}: {waited:?}");
        assert!(waited < deadline * 2, "async {async_}: {waited:?}");
    }
    // hand the slot over, keys and all
    cluster.migrate_keys(&format!("*{name}*"), 0, 1);
    cluster.assign_slot(slot, 1);
    // the refused checks spent nothing
    assert_eq!(check("new", false), Ok(vec![4, 47]));
    assert_eq!(check("new", true), Ok(vec![3, 46]));
}

/// The same migration, with the slot handed over while a refused check waits to be sent
/// again: the check is served within its deadline, once, on both backends. Whether the
/// organization's key is on the source (which refuses the check: `TRYAGAIN`) or nowhere
/// yet (the source sends it to the importing node, `ASK`, which refuses it there).
#[test]
fn a_check_refused_during_a_migration_is_served_once_the_slot_is_handed_over() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    // organizations on the first master, one per case
    let orgs: Vec<String> = orgs_on_every_node(&cluster, 4)
        .into_iter()
        .step_by(3)
        .collect();
    let slots: BTreeSet<u16> = orgs.iter().map(|o| cluster.key_slot(o)).collect();
    assert_eq!(slots.len(), 4);
    let backends = BothBackends::open_cluster(cluster.urls(), Duration::from_secs(5));
    let cases = [(false, false), (true, false), (false, true), (true, true)];
    for ((async_, fresh), org) in cases.into_iter().zip(orgs) {
        let name = policy_name("handover");
        let policy = user_and_org(&name);
        let check = |user: &str| {
            backends.check(&policy, &req(user, &org), async_).map(|d| {
                d.scopes()
                    .map(|s| s.decision.remaining())
                    .collect::<Vec<_>>()
            })
        };
        let used = match fresh {
            true => 0,
            false => {
                assert_eq!(check("old"), Ok(vec![4, 49]));
                1
            }
        };
        let slot = cluster.key_slot(&org);
        cluster.start_migrating(slot, 0, 1);
        let start = Instant::now();
        let handover = Duration::from_millis(300);
        let served = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(handover);
                cluster.migrate_keys(&format!("*{name}*"), 0, 1);
                // the source last, so that whoever it sends away reads the new owner
                let to = cluster.node_id(1);
                for i in [1, 2, 0] {
                    cluster.set_slot(i, slot, "NODE", &to);
                }
            });
            check("new")
        });
        let case = format!("async {async_}, fresh {fresh}");
        assert_eq!(served, Ok(vec![4, 49 - used]), "{case}");
        assert!(start.elapsed() >= handover, "{case}");
        // spent once, and the keys live on the new owner
        assert_eq!(check("new"), Ok(vec![3, 48 - used]), "{case}");
        assert!(cluster.keys_on(0, &format!("*{name}*")).is_empty());
        assert!(!cluster.keys_on(1, &format!("*{name}*")).is_empty());
    }
}

/// A slot that no master serves for a moment (`CLUSTERDOWN`, as while a lost master's
/// replica is promoted): a check of that slot is sent again after growing pauses and
/// served, once, as soon as a master serves the slot again, on both backends.
#[test]
fn a_check_refused_while_the_cluster_is_down_is_served_once_it_is_up() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let name = policy_name("down");
    let (policy, org) = one_user_scope_on_one_org(&cluster, &name);
    let slot = cluster.key_slot(&org);
    let backends = BothBackends::open_cluster(cluster.urls(), Duration::from_secs(5));
    let slots = |i: usize, command: &str| {
        redis::cmd("CLUSTER")
            .arg(command)
            .arg(slot)
            .query::<()>(&mut cluster.connection(i))
            .unwrap_or_else(|e| panic!("CLUSTER {command} on node {i}: {e}"));
    };
    for (async_, left) in [(false, 3), (true, 1)] {
        let r = req("u", &org);
        assert_eq!(
            backends
                .check(&policy, &r, async_)
                .unwrap()
                .scopes()
                .next()
                .unwrap()
                .decision
                .remaining(),
            left + 1
        );
        // the first master drops the slot; no other claims it
        slots(0, "DELSLOTS");
        let start = Instant::now();
        let outage = Duration::from_millis(300);
        let served = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(outage);
                slots(0, "ADDSLOTS");
            });
            backends.check(&policy, &r, async_)
        });
        let served = served.map(|d| d.scopes().next().unwrap().decision.remaining());
        assert_eq!(served, Ok(left), "async {async_}");
        assert!(start.elapsed() >= outage, "async {async_}");
    }
}

/// Connections node `i` has accepted so far, read on `conn` (a connection to it).
fn connections_received(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_connections_received")
}

/// Many async checks in flight when their slot moves: each meets `MOVED`, and between
/// them they make one new cluster connection (a handful of connections per node), not
/// one each; every check is then served, once.
#[test]
fn concurrent_async_checks_meeting_a_moved_slot_reconnect_once() {
    const CHECKS: usize = 32;
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let name = policy_name("storm");
    let (policy, org) = one_user_scope_on_one_org(&cluster, &name);
    let policy = std::sync::Arc::new(policy);
    let rt = multi_thread_runtime(2);
    let backend = rt.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline(cluster.urls(), Duration::from_secs(5))
            .unwrap()
    });
    let first = rt.block_on(policy.check_async(&backend, &req("u-first", &org), 1));
    assert!(first.unwrap().is_allowed());
    // the slot moves to the second master, keys and all
    let slot = cluster.key_slot(&org);
    cluster.start_migrating(slot, 0, 1);
    cluster.migrate_keys(&format!("*{name}*"), 0, 1);
    cluster.assign_slot(slot, 1);
    let mut watch: Vec<redis::Connection> = (0..3).map(|i| cluster.connection(i)).collect();
    let before: u64 = watch.iter_mut().map(connections_received).sum();
    let left: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..CHECKS)
            .map(|u| {
                let (policy, backend) = (policy.clone(), backend.clone());
                let r = req(&format!("u{u}"), &org);
                tokio::spawn(async move {
                    let d = policy.check_async(&backend, &r, 1).await.unwrap();
                    let left = d.scopes().next().unwrap().decision.remaining();
                    left
                })
            })
            .collect();
        let mut left = Vec::new();
        for task in tasks {
            left.push(task.await.unwrap());
        }
        left
    });
    assert_eq!(left, vec![4; CHECKS], "each served once");
    let made = watch.iter_mut().map(connections_received).sum::<u64>() - before;
    assert!(made <= 9, "{made} connections made for {CHECKS} checks");
}

/// A single-node backend pointed at a cluster node answers a refusal (`CLUSTERDOWN`) at
/// once, as a fault: only cluster backends, which know where a slot went, wait and send
/// a check again.
#[test]
fn a_single_node_backend_answers_a_refusal_at_once() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("single_down"));
    let deadline = Duration::from_secs(2);
    let single = BothBackends::open(&cluster.urls()[0], deadline);
    assert!(single
        .check(&policy, &req("u", &org), false)
        .unwrap()
        .is_allowed());
    redis::cmd("CLUSTER")
        .arg("DELSLOTS")
        .arg(cluster.key_slot(&org))
        .query::<()>(&mut cluster.connection(0))
        .unwrap();
    for async_ in [false, true] {
        let start = Instant::now();
        let got = single.check(&policy, &req("u", &org), async_);
        let took = start.elapsed();
        match got {
            Err(RedisCheckError::Server { detail }) => {
                assert!(detail.contains("ClusterDown"), "{detail}")
            }
            other => panic!("async {async_}: {:?}", other.map(|d| d.is_allowed())),
        }
        assert!(took < deadline / 4, "async {async_}: {took:?}");
    }
}

/// While a refused check waits to be sent again, its connection serves other calls: a
/// check of a healthy slot on another master, sent meanwhile through the same (only)
/// connection, is answered at once.
#[test]
fn a_refused_check_does_not_hold_up_checks_of_other_masters() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let policy = user_and_org(&policy_name("hol"));
    let orgs = orgs_on_every_node(&cluster, 1);
    let (migrating, healthy) = (orgs[0].clone(), orgs[2].clone());
    let slot = cluster.key_slot(&migrating);
    let deadline = Duration::from_millis(1000);
    let redis = RedisBackend::open_cluster(cluster.urls())
        .unwrap()
        .with_deadline(deadline);
    policy.check(&redis, &req("old", &migrating), 1).unwrap();
    policy.check(&redis, &req("old", &healthy), 1).unwrap();
    cluster.start_migrating(slot, 0, 1);
    let (refused, served, took) = std::thread::scope(|s| {
        let refused = s.spawn(|| policy.check(&redis, &req("new", &migrating), 1).map(|_| ()));
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        let served = policy.check(&redis, &req("other", &healthy), 1);
        let took = start.elapsed();
        (
            refused.join().unwrap(),
            served.map(|d| d.is_allowed()),
            took,
        )
    });
    match refused {
        Err(RedisCheckError::Server { detail }) => assert!(detail.contains("TryAgain"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(served, Ok(true));
    assert!(took < deadline / 4, "waited {took:?} of its {deadline:?}");
}

/// `n` checks of new users of `org`, one after the other on `rt`: allowed or why not.
fn one_by_one(
    rt: &tokio::runtime::Runtime,
    policy: &RedisPolicy<Req>,
    backend: &AsyncRedisBackend,
    org: &str,
    n: usize,
) -> Vec<Result<bool, RedisCheckError>> {
    (0..n)
        .map(|u| {
            rt.block_on(policy.check_async(backend, &req(&format!("u{u}"), org), 1))
                .map(|d| d.is_allowed())
        })
        .collect()
}

/// A seed that accepts connections and closes each after `hold`, without a word: every
/// attempt to connect through it fails, slowly.
fn slowly_failing_seed(hold: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            std::thread::spawn(move || {
                std::thread::sleep(hold);
                drop(stream);
            });
        }
    });
    format!("redis://127.0.0.1:{port}/")
}

/// Concurrent first calls on an async cluster backend that cannot connect (each attempt
/// fails after 20 ms) all fail as connection faults about as soon as one attempt does:
/// they do not queue behind each other's failed attempts until their deadline.
#[test]
fn concurrent_async_calls_that_cannot_connect_fail_together() {
    const CALLS: usize = 40;
    let seed = slowly_failing_seed(Duration::from_millis(20));
    let deadline = Duration::from_millis(400);
    let rt = multi_thread_runtime(2);
    let backend = rt.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline([seed], deadline).unwrap()
    });
    let policy = std::sync::Arc::new(one_user_scope(&policy_name("slowfail")).1);
    let answers: Vec<(Result<bool, RedisCheckError>, Duration)> = rt.block_on(async {
        let tasks: Vec<_> = (0..CALLS)
            .map(|u| {
                let (policy, backend) = (policy.clone(), backend.clone());
                tokio::spawn(async move {
                    let start = Instant::now();
                    let got = policy
                        .check_async(&backend, &req(&format!("u{u}"), "o"), 1)
                        .await;
                    (got.map(|d| d.is_allowed()), start.elapsed())
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    });
    let timeouts = answers
        .iter()
        .filter(|(got, _)| matches!(got, Err(RedisCheckError::Timeout { .. })))
        .count();
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    for (got, _) in &answers {
        assert!(
            matches!(got, Err(RedisCheckError::Connection { .. })),
            "{timeouts} of {CALLS} timed out (slowest {slowest:?}), e.g. {got:?}"
        );
    }
    assert!(slowest < deadline / 2, "slowest {slowest:?}");
}

/// A proxy to `port` on the loopback that holds every chunk it forwards for `delay`, as
/// a network with a round trip of twice `delay` would.
fn delaying_proxy(port: u16, delay: Duration) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            std::thread::spawn(move || {
                let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let Ok(upstream) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) else {
                    return;
                };
                let pipe = move |mut from: TcpStream, mut to: TcpStream| {
                    move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    std::thread::sleep(delay);
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    }
                };
                let up = std::thread::spawn(pipe(
                    client.try_clone().unwrap(),
                    upstream.try_clone().unwrap(),
                ));
                pipe(upstream, client)();
                let _ = up.join();
            });
        }
    });
    format!("redis://127.0.0.1:{me}/")
}

/// Checks of new users of `org` spawned on `rt` one every `every` for `load_for`,
/// calling `tick` with the time since the start before each; returns when each was sent
/// and what it got, once all have answered.
fn steady_load(
    rt: &tokio::runtime::Runtime,
    policy: &std::sync::Arc<RedisPolicy<Req>>,
    backend: &AsyncRedisBackend,
    org: &str,
    load_for: Duration,
    every: Duration,
    mut tick: impl FnMut(Duration),
) -> Vec<(Instant, Result<(), RedisCheckError>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    let mut u = 0u64;
    while start.elapsed() < load_for {
        tick(start.elapsed());
        let (policy, backend, tx) = (policy.clone(), backend.clone(), tx.clone());
        let r = req(&format!("u{u}"), org);
        u += 1;
        rt.spawn(async move {
            let sent = Instant::now();
            let got = policy.check_async(&backend, &r, 1).await.map(|_| ());
            let _ = tx.send((sent, got));
        });
        std::thread::sleep(every);
    }
    drop(tx);
    rx.iter().collect()
}

/// An async cluster backend whose connection must be made while checks keep arriving
/// (here: about one every 500 µs, its seed 3 ms away and paused when the backend is
/// first used) connects once the node is back: a call must not have only what the calls
/// queued before it left of the deadline to connect in.
#[test]
fn async_cluster_backend_connects_under_steady_load_once_a_paused_node_is_back() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("steady"));
    let policy = std::sync::Arc::new(policy);
    let deadline = Duration::from_millis(200);
    let seed = delaying_proxy(cluster.ports[1], Duration::from_millis(3));
    let rt = multi_thread_runtime(2);
    let backend = rt.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline([seed], deadline).unwrap()
    });
    let (paused_for, load_for) = (Duration::from_millis(500), Duration::from_millis(1500));
    cluster.pause(1);
    let mut resumed = None;
    let answers = steady_load(
        &rt,
        &policy,
        &backend,
        &org,
        load_for,
        Duration::from_micros(500),
        |since| {
            if resumed.is_none() && since >= paused_for {
                cluster.resume(1);
                resumed = Some(Instant::now());
            }
        },
    );
    let resumed = resumed.unwrap();
    let after: Vec<_> = answers.iter().filter(|(sent, _)| *sent > resumed).collect();
    let served = after.iter().filter(|(_, got)| got.is_ok()).count();
    let timeouts = after
        .iter()
        .filter(|(_, got)| matches!(got, Err(RedisCheckError::Timeout { .. })))
        .count();
    assert!(
        served * 2 > after.len(),
        "of {} calls sent in the second after the node came back, {served} were served, \
         {timeouts} timed out",
        after.len()
    );
}

/// A call left mid-way on a runtime that is kept but no longer driven (a current-thread
/// runtime between two `block_on`s, a task spawned on it still connecting) must not
/// hold up the calls on other runtimes: once the cluster answers, they are served.
#[test]
fn a_call_parked_on_an_idle_runtime_does_not_hold_up_other_runtimes() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("parked"));
    let policy = std::sync::Arc::new(policy);
    let deadline = Duration::from_millis(200);
    let idle = runtime();
    let backend = idle.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline(cluster.urls(), deadline).unwrap()
    });
    cluster.pause(1);
    idle.block_on(async {
        let (policy, backend, r) = (policy.clone(), backend.clone(), req("parked", &org));
        // starts connecting, then waits on the paused node
        tokio::spawn(async move { policy.check_async(&backend, &r, 1).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
    cluster.resume(1);
    let other = multi_thread_runtime(2);
    let answers = one_by_one(&other, &policy, &backend, &org, 5);
    assert!(answers.contains(&Ok(true)), "{answers:?}");
    drop(idle);
}

/// Connecting takes longer than the deadline (three round trips of 20 ms to the seed,
/// through a proxy, against a deadline of 40 ms) while checks keep arriving: the first
/// calls time out, but an attempt that finishes keeps its connection even though newer
/// attempts were started meanwhile, and the calls after it are served.
#[test]
fn an_attempt_slower_than_the_deadline_connects_under_steady_load() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("slowconn"));
    let policy = std::sync::Arc::new(policy);
    let deadline = Duration::from_millis(40);
    let seed = delaying_proxy(cluster.ports[1], Duration::from_millis(10));
    let rt = multi_thread_runtime(2);
    let backend = rt.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline([seed], deadline).unwrap()
    });
    let start = Instant::now();
    let answers = steady_load(
        &rt,
        &policy,
        &backend,
        &org,
        Duration::from_secs(2),
        Duration::from_millis(2),
        |_| {},
    );
    let late: Vec<_> = answers
        .iter()
        .filter(|(sent, _)| *sent > start + Duration::from_secs(1))
        .collect();
    let served = late.iter().filter(|(_, got)| got.is_ok()).count();
    assert!(
        served * 10 > late.len() * 9,
        "of {} calls sent in the second second, {served} served",
        late.len()
    );
}

/// A connection made while the backend was used from a current-thread runtime that is
/// kept but no longer driven answers nothing on other runtimes (its driver is stuck
/// there): after a few timeouts in a row the backend drops it and connects afresh.
#[test]
fn a_connection_made_on_an_idle_runtime_does_not_hold_up_other_runtimes() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("madeidle"));
    let deadline = Duration::from_millis(200);
    let idle = runtime();
    let backend = idle.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline(cluster.urls(), deadline).unwrap()
    });
    let first = idle.block_on(policy.check_async(&backend, &req("first", &org), 1));
    assert!(first.unwrap().is_allowed());
    let other = multi_thread_runtime(2);
    let answers = one_by_one(&other, &policy, &backend, &org, 10);
    assert!(answers.contains(&Ok(true)), "{answers:?}");
    drop(idle);
}

/// An attempt started on a runtime that then stops being driven is overtaken by a newer
/// one after a deadline; when the idle runtime runs for a moment and the old attempt
/// finishes first, its connection (whose driver lives on the idle runtime) may be the
/// one kept, but a few timeouts later the backend connects afresh and is served.
#[test]
fn an_overtaken_attempt_on_an_idle_runtime_does_not_hold_up_other_runtimes() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("overtaken"));
    let policy = std::sync::Arc::new(policy);
    let deadline = Duration::from_millis(300);
    let seed = delaying_proxy(cluster.ports[1], Duration::from_millis(20));
    let idle = runtime();
    let backend = idle.block_on(async {
        AsyncRedisBackend::open_cluster_with_deadline([seed], deadline).unwrap()
    });
    // attempt 1 starts on `idle`, which then stops
    idle.block_on(async {
        let (policy, backend, r) = (policy.clone(), backend.clone(), req("parked", &org));
        tokio::spawn(async move { policy.check_async(&backend, &r, 1).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(30)).await;
    });
    std::thread::sleep(deadline + Duration::from_millis(50));
    let other = multi_thread_runtime(2);
    // attempt 2 starts on `other`; `idle` runs briefly and attempt 1 ends meanwhile
    let first = {
        let (policy, backend, r) = (policy.clone(), backend.clone(), req("first", &org));
        other.spawn(async move { policy.check_async(&backend, &r, 1).await.map(|_| ()) })
    };
    idle.block_on(async { tokio::time::sleep(Duration::from_millis(150)).await });
    let first = other.block_on(first).unwrap();
    let answers = one_by_one(&other, &policy, &backend, &org, 8);
    assert!(
        answers.contains(&Ok(true)),
        "first {first:?}, then {answers:?}"
    );
    drop(idle);
}

/// A master lost for good, its replica promoted after the node timeout (2 s): until the
/// promotion the checks of its slots are faults of the store (answered by the failure
/// mode) that spend nothing; after it, both backends are served by the promoted
/// replica, which kept the state the master had replicated.
#[test]
fn after_a_failover_both_backends_are_served_by_the_promoted_replica() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let replica = cluster.add_replica(0);
    let (policy, org) = one_user_scope_on_one_org(&cluster, &policy_name("failover"));
    let backends = BothBackends::open_cluster(cluster.urls(), Duration::from_millis(500));
    let r = req("u", &org);
    let left = |async_: bool| {
        backends
            .check(&policy, &r, async_)
            .map(|d| d.scopes().next().unwrap().decision.remaining())
    };
    assert_eq!(left(false), Ok(4));
    assert_eq!(left(true), Ok(3));
    let replicated: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut cluster.connection(0))
        .unwrap();
    assert_eq!(replicated, 1, "the replica has the state");
    cluster.kill(0);
    let start = Instant::now();
    for (async_, expected) in [(false, 2), (true, 1)] {
        loop {
            match left(async_) {
                Ok(n) => {
                    assert_eq!(n, expected, "async {async_}: spent once");
                    break;
                }
                Err(e) => {
                    assert!(e.is_fault(), "async {async_}: {e:?}");
                    let waited = start.elapsed();
                    assert!(waited < Duration::from_secs(30), "after {waited:?}: {e:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut cluster.connection(replica))
        .unwrap();
    assert!(role.lines().any(|l| l.trim() == "role:master"), "{role}");
}
