//! A check on a Redis Cluster, for both backends: the client (which never sends a command
//! twice by itself), routing by the keys' slot, the script reloaded on a node that lost
//! it, and `ASK` redirections followed.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::ErrorKind;

use super::prepared::Prepared;
use super::retry::{ask_target, is_noscript};
use super::script::{evalsha, invocation, reply, script_load};
use super::RedisCheckError;

/// A cluster client for the given seed nodes that never sends a command twice by itself:
/// after a timeout or a broken connection the check may have run, and sending it again
/// would spend twice (and outlast the deadline). Redirections, which tell that the check
/// did not run, are followed here instead ([`cluster_eval`], [`cluster_eval_async`]).
pub(super) fn cluster_builder(
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
pub(super) fn cluster_eval(
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
pub(super) async fn cluster_eval_async(
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
