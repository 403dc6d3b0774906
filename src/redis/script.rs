//! The check script (`check.lua`) and the commands that run it: `EVALSHA` with a
//! check's keys and arguments, `SCRIPT LOAD`, and its reply read as numbers.

use std::sync::LazyLock;

use super::prepared::Prepared;

/// The check script. `invoke` sends `EVALSHA` and, after `NOSCRIPT` (a restarted server,
/// `SCRIPT FLUSH`), loads the script and sends it again.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SOURCE));

/// The check script's source.
pub(crate) const SOURCE: &str = include_str!("check.lua");

pub(super) fn invocation(prepared: &Prepared) -> redis::ScriptInvocation<'static> {
    let mut inv = SCRIPT.prepare_invoke();
    for key in &prepared.keys {
        inv.key(key);
    }
    for arg in &prepared.args {
        inv.arg(*arg);
    }
    inv
}

/// `EVALSHA` of the check, for sending to an explicit node.
pub(super) fn evalsha(prepared: &Prepared) -> redis::Cmd {
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

pub(super) fn script_load() -> redis::Cmd {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(SOURCE);
    cmd
}

pub(super) fn reply(value: redis::Value) -> redis::RedisResult<Vec<i64>> {
    Ok(<Vec<i64> as redis::FromRedisValue>::from_redis_value(
        value,
    )?)
}
