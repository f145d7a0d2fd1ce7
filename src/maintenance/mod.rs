//! Housekeeping that keeps the queue healthy. Every worker rescues dead workers' tasks (cheap
//! and idempotent, so a lone surviving worker recovers its peers' tasks quickly); pruning old
//! finished rows runs only on the elected leader.

mod leader;

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::MaintenanceConfig;
use crate::error::Result;
use crate::store::Store;

pub use leader::Leader;

/// Lease name of the maintenance leader.
pub const MAINTENANCE_LEASE: &str = "maintenance";
/// Pause between prune chunks, so pruning never monopolises the table.
const PRUNE_PAUSE: Duration = Duration::from_millis(10);
/// Throughput windows (dashboard chart, queue rates) are kept this long.
const THROUGHPUT_KEEP: Duration = Duration::from_secs(24 * 3600);
/// Dead worker rows are forgotten this long after their lease expired.
const DEAD_WORKER_GRACE: Duration = Duration::from_secs(60);

/// The maintenance services of one process.
pub struct Maintenance {
    store: Store,
    config: MaintenanceConfig,
    max_lost: u32,
    leader: Leader,
}

impl Maintenance {
    /// Maintenance on `store`; tasks lost more than `max_lost` times end FAILURE.
    pub fn new(store: Store, config: MaintenanceConfig, max_lost: u32) -> Self {
        let leader = Leader::new(
            store.clone(),
            MAINTENANCE_LEASE,
            Uuid::new_v4(),
            config.leader_ttl,
        );
        Maintenance {
            store,
            config,
            max_lost,
            leader,
        }
    }

    /// Rescue the running tasks of dead workers once: (re-queued, failed for good).
    pub async fn rescue_once(&self) -> Result<(u64, u64)> {
        let (requeued, failed) = self.store.task_rescue_orphans(self.max_lost).await?;
        if requeued + failed > 0 {
            tracing::warn!(requeued, failed, "rescued tasks of dead workers");
        }
        self.store.worker_prune_dead(DEAD_WORKER_GRACE).await?;
        Ok((requeued, failed))
    }

    /// Delete finished tasks older than the retention, in chunks, until none is left or `stop`.
    pub async fn prune_once(&self, stop: &CancellationToken) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self
                .store
                .task_prune_finished(self.config.retention, self.config.prune_chunk)
                .await?;
            total += n;
            if n < u64::from(self.config.prune_chunk) || stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        loop {
            let n = self
                .store
                .group_prune_finished(self.config.retention, self.config.prune_chunk)
                .await?;
            if n < u64::from(self.config.prune_chunk) || stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        if total > 0 {
            tracing::info!(pruned = total, "pruned finished tasks past the retention");
        }
        self.store.queue_throughput_prune(THROUGHPUT_KEEP).await?;
        Ok(total)
    }

    /// Run until `stop`: rescue every `rescue_interval`; prune every `prune_interval` while
    /// holding the maintenance lease.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut rescue = tokio::time::interval(self.config.rescue_interval);
        rescue.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(self.config.prune_interval);
        prune.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut lead = tokio::time::interval(self.config.leader_ttl / 3);
        lead.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = rescue.tick() => {
                    if let Err(e) = self.rescue_once().await {
                        tracing::debug!(error = %e, "rescue failed; will retry");
                    }
                }
                _ = lead.tick() => {
                    if self.leader.tick().await {
                        match self.store.limit_reconcile().await {
                            Ok(n) if n > 0 => tracing::warn!(released = n, "limits: released throttled tasks that had room"),
                            Ok(_) => {}
                            Err(e) => tracing::debug!(error = %e, "limit reconcile failed"),
                        }
                    }
                }
                _ = prune.tick() => {
                    if self.leader.is_leader()
                        && let Err(e) = self.prune_once(&stop).await {
                            tracing::debug!(error = %e, "prune failed; will retry");
                        }
                }
            }
        }
        self.leader.release().await;
    }
}
