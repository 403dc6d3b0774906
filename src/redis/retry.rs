//! When a check that did not run may be sent again: the errors that tell so (`MOVED`,
//! `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `NOSCRIPT`) and the pauses between attempts.

use std::time::Duration;

use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{ErrorKind, ServerErrorKind};

pub(super) fn is_moved(err: &redis::RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::Moved)
}

/// Where an `ASK` redirection points: the node importing the check's slot.
pub(super) fn ask_target(err: &redis::RedisError) -> Option<SingleNodeRoutingInfo> {
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
pub(super) fn refused_for_now(err: &redis::RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown)
    )
}

/// The pauses before sending a check again that Redis [refused for now](refused_for_now):
/// 2 ms, doubling up to 50 ms, each at most half of what is left of the deadline, so that
/// attempts continue until near its end.
pub(super) struct Pauses(Duration);

impl Pauses {
    const FIRST: Duration = Duration::from_millis(2);
    const LONGEST: Duration = Duration::from_millis(50);

    pub(super) fn new() -> Pauses {
        Pauses(Self::FIRST)
    }

    /// The next pause, or `None` when what is `left` of the deadline is too short for a
    /// pause and another attempt.
    pub(super) fn next(&mut self, left: Option<Duration>) -> Option<Duration> {
        let pause = self.0.min(left? / 2);
        if pause < Self::FIRST {
            return None;
        }
        self.0 = (self.0 * 2).min(Self::LONGEST);
        Some(pause)
    }
}

pub(super) fn is_noscript(err: &redis::RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}
