//! A named leader lease in `celeriac.leases`: held by renewing it before it expires; taken over
//! by someone else once it lapses. The token grows with every change of holder.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::store::Store;

/// One process's view of a named lease.
pub struct Leader {
    store: Store,
    name: String,
    holder: Uuid,
    ttl: Duration,
    /// Token and local deadline while we hold it.
    held: Option<(i64, Instant)>,
}

impl Leader {
    /// Compete for lease `name` as `holder`, holding it for `ttl` per renewal.
    pub fn new(store: Store, name: &str, holder: Uuid, ttl: Duration) -> Self {
        Leader {
            store,
            name: name.into(),
            holder,
            ttl,
            held: None,
        }
    }

    /// Take or renew the lease; returns whether we hold it now. Call at least every ttl/3.
    pub async fn tick(&mut self) -> bool {
        let asked = Instant::now();
        match self
            .store
            .lease_acquire(&self.name, self.holder, self.ttl)
            .await
        {
            Ok(Some(token)) => {
                if self.held.is_none() {
                    tracing::info!(lease = %self.name, token, "became leader");
                }
                // Count the lease from when we asked: the database's expiry is later still.
                self.held = Some((token, asked + self.ttl));
            }
            Ok(None) => {
                if self.held.take().is_some() {
                    tracing::warn!(lease = %self.name, "lost leadership");
                }
            }
            Err(e) => {
                tracing::debug!(lease = %self.name, error = %e, "lease renewal failed");
            }
        }
        self.is_leader()
    }

    /// Whether we hold the lease (and it has not run out locally).
    pub fn is_leader(&self) -> bool {
        self.held.is_some_and(|(_, until)| Instant::now() < until)
    }

    /// The fencing token of our current tenure.
    pub fn token(&self) -> Option<i64> {
        self.held.filter(|_| self.is_leader()).map(|(t, _)| t)
    }

    /// Give the lease up now so a successor need not wait for it to expire.
    pub async fn release(&mut self) {
        if self.held.take().is_some()
            && let Err(e) = self.store.lease_release(&self.name, self.holder).await
        {
            tracing::debug!(lease = %self.name, error = %e, "lease release failed");
        }
    }
}
