//! Snapshot and restore of a whole [`Policy`]: every scope, every key.

use super::Policy;
use crate::snapshot::{
    check_version, checksum_error, DropReason, DroppedScope, LimiterSnapshot, PolicySnapshot,
    RestoreReport, ScopeSnapshot, SnapshotError, SNAPSHOT_VERSION,
};
use crate::Nanos;

impl SnapshotError {
    /// The same error, naming the scope it happened in.
    fn in_scope(self, scope: &str) -> SnapshotError {
        let scope = format!("scope {scope:?}");
        match self {
            SnapshotError::Unsupported { reason, .. } => SnapshotError::Unsupported {
                what: scope,
                reason,
            },
            SnapshotError::KeyMismatch { key, .. } => {
                SnapshotError::KeyMismatch { what: scope, key }
            }
            SnapshotError::Corrupted { reason, .. } => SnapshotError::Corrupted {
                what: scope,
                reason,
            },
            SnapshotError::TooManyKeys { keys, room, .. } => SnapshotError::TooManyKeys {
                what: scope,
                keys,
                room,
            },
            other => other,
        }
    }
}

impl<Req: 'static> Policy<Req> {
    /// The state of every scope (every key that is not idle), now; see
    /// [`crate::snapshot`]. Fails with [`SnapshotError::Unsupported`] if a scope cannot be
    /// snapshotted (a key type without a snapshot form, a custom limiter or algorithm).
    ///
    /// Each key's state is read atomically, scope after scope; a snapshot taken under
    /// traffic is not one instant across scopes, so take the last one after traffic
    /// has stopped (at shutdown).
    ///
    /// ```
    /// use ratewarden::{Clock, Gcra, FixedWindow, Policy, Scope};
    /// use ratewarden::snapshot::{DropReason, PolicySnapshot};
    ///
    /// let (clock, _mock) = Clock::mock();
    /// let v1 = Policy::builder()
    ///     .clock(clock.clone())
    ///     .scope(Scope::keyed("per_user", Gcra::new("10/min".parse()?), |u: &u64| Some(*u)))
    ///     .scope(Scope::unkeyed("global", FixedWindow::new("1000/min".parse()?)))
    ///     .build();
    /// v1.check(&7, 3)?;
    /// let saved = serde_json::to_string(&v1.snapshot()?)?;
    ///
    /// // The new release drops the global scope and adds a daily one.
    /// let v2 = Policy::builder()
    ///     .clock(clock)
    ///     .scope(Scope::keyed("per_user", Gcra::new("10/min".parse()?), |u: &u64| Some(*u)))
    ///     .scope(Scope::keyed("daily", FixedWindow::new("500/day".parse()?), |u: &u64| Some(*u)))
    ///     .build();
    /// let report = v2.restore(&serde_json::from_str::<PolicySnapshot>(&saved)?)?;
    /// assert_eq!(report.restored, ["per_user"]);
    /// assert_eq!(report.dropped[0].name, "global");
    /// assert_eq!(report.dropped[0].reason, DropReason::NoSuchScope);
    /// assert_eq!(report.missing, ["daily"]);
    /// assert_eq!(v2.peek(&7, 1)?.scope("per_user").unwrap().decision.remaining(), 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Result<PolicySnapshot, SnapshotError> {
        self.snapshot_at(self.clock.now())
    }

    /// [`snapshot`](Self::snapshot) at an explicit time.
    pub fn snapshot_at(&self, now: Nanos) -> Result<PolicySnapshot, SnapshotError> {
        let scopes = self
            .scopes
            .iter()
            .map(|scope| {
                Ok(ScopeSnapshot {
                    name: scope.name.to_string(),
                    limiter: scope
                        .run
                        .snapshot_at(now)
                        .map_err(|e| e.in_scope(&scope.name))?,
                })
            })
            .collect::<Result<_, SnapshotError>>()?;
        let mut snapshot = PolicySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: now,
            scopes,
            checksum: None,
        };
        snapshot.seal();
        Ok(snapshot)
    }

    /// Restores every scope of `snapshot` that still exists under the same name with the
    /// same algorithm (states taken under another rate are carried over, as by
    /// [`set_rate`](Self::set_rate)), and reports the scopes it dropped and the ones it
    /// found no state for. Everything is validated first: an unsupported version or a
    /// corrupted state is an error, and then nothing has changed.
    pub fn restore(&self, snapshot: &PolicySnapshot) -> Result<RestoreReport, SnapshotError> {
        self.restore_at(snapshot, self.clock.now())
    }

    /// [`restore`](Self::restore) at an explicit time.
    pub fn restore_at(
        &self,
        snapshot: &PolicySnapshot,
        now: Nanos,
    ) -> Result<RestoreReport, SnapshotError> {
        check_version(snapshot.version)?;
        // Every scope's checksum too, including those of scopes about to be dropped:
        // damage anywhere means the file cannot be trusted.
        if !snapshot.is_intact() {
            return Err(checksum_error("policy snapshot"));
        }
        let mut report = RestoreReport::default();
        // Scopes pair up by name; two scopes of one name pair up in order.
        let mut taken = vec![false; self.scopes.len()];
        let mut plan: Vec<(usize, &LimiterSnapshot)> = Vec::new();
        for ScopeSnapshot { name, limiter } in &snapshot.scopes {
            let found = self
                .names
                .iter()
                .zip(&taken)
                .position(|(n, taken)| !taken && **n == **name);
            let Some(i) = found else {
                report.dropped.push(DroppedScope {
                    name: name.clone(),
                    reason: DropReason::NoSuchScope,
                });
                continue;
            };
            taken[i] = true;
            let reason = match self.scopes[i].run.validate_snapshot(limiter) {
                Ok(()) => {
                    plan.push((i, limiter));
                    report.restored.push(name.clone());
                    continue;
                }
                Err(SnapshotError::AlgorithmMismatch { .. }) => DropReason::AlgorithmChanged,
                Err(SnapshotError::KeyMismatch { .. }) => DropReason::KeyTypeChanged,
                Err(SnapshotError::Unsupported { .. }) => DropReason::Unsupported,
                Err(e) => return Err(e.in_scope(name)),
            };
            report.dropped.push(DroppedScope {
                name: name.clone(),
                reason,
            });
        }
        report.missing = self
            .names
            .iter()
            .zip(&taken)
            .filter(|(_, taken)| !**taken)
            .map(|(n, _)| n.to_string())
            .collect();
        for (i, limiter) in plan {
            // Validated above; only traffic racing the restore can make it fail (keys it
            // leaves fresh are what a restart without a snapshot gives): report it.
            if self.scopes[i].run.restore_at(limiter, now).is_err() {
                let name = self.scopes[i].name.to_string();
                report.restored.retain(|n| *n != name);
                report.dropped.push(DroppedScope {
                    name,
                    reason: DropReason::NoRoom,
                });
            }
        }
        Ok(report)
    }
}
