//! Named lease locks shared by every process on the database (`celeriac.locks`).
//!
//! A lock is held until released or until its TTL runs out. Every acquisition gets a larger
//! fencing token: hand it to whatever the lock protects and refuse writes with an older one. A
//! holder whose lease ran out cannot release or extend it any more.
//!
//! ```no_run
//! # async fn f(client: celeriac::Client) -> celeriac::Result<()> {
//! use std::time::Duration;
//! if let Some(guard) = client.lock("reports:42", Duration::from_secs(60))?.wait(Duration::from_secs(5)).acquire().await? {
//!     // … work, passing guard.token() along …
//!     guard.release().await?;
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::store::Store;

/// A request for a lock: name, TTL, how long to wait.
#[derive(Debug, Clone)]
pub struct LockRequest {
    store: Store,
    name: String,
    ttl: Duration,
    wait: Duration,
    holder: Option<String>,
}

impl LockRequest {
    /// Ask for lock `name` for `ttl`, without waiting.
    pub fn new(store: Store, name: impl Into<String>, ttl: Duration) -> Self {
        LockRequest {
            store,
            name: name.into(),
            ttl,
            wait: Duration::ZERO,
            holder: None,
        }
    }

    /// Wait up to `wait` for the lock to be free.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Record who holds it (shown in `celeriac.locks`).
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = Some(holder.into());
        self
    }

    /// Take the lock; `None` when it stayed held for the whole wait. Waits on the release
    /// notification (or the current holder's expiry), not by polling.
    pub async fn acquire(self) -> Result<Option<LockGuard>> {
        if self.name.is_empty() {
            return Err(Error::Invalid("a lock needs a name".into()));
        }
        if self.ttl.is_zero() {
            return Err(Error::Invalid("a lock needs a positive ttl".into()));
        }
        let deadline = Instant::now() + self.wait;
        // Subscribe before the first try, so a release in between is not missed.
        let mut released = (!self.wait.is_zero()).then(|| self.store.lock_events());
        loop {
            if let Some(token) = self
                .store
                .lock_try(&self.name, self.ttl, self.holder.as_deref())
                .await?
            {
                return Ok(Some(LockGuard {
                    store: self.store,
                    name: self.name,
                    token,
                    released: false,
                }));
            }
            let now = Instant::now();
            let Some(events) = released.as_mut().filter(|_| now < deadline) else {
                return Ok(None);
            };
            // Wake on its release, when its holder's lease runs out, or (belt and braces) after
            // a second; never later than the deadline.
            let expires_in = self
                .store
                .lock_get(&self.name)
                .await?
                .map(|r| Duration::from_secs_f64(r.expires_in.max(0.0)))
                .unwrap_or(Duration::ZERO);
            let wake = (now + (expires_in + Duration::from_millis(5)).min(Duration::from_secs(1)))
                .min(deadline);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(name) if name == self.name || name.is_empty() => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    },
                    _ = tokio::time::sleep_until(wake) => break,
                }
            }
        }
    }
}

/// A held lock. Release it explicitly (`release`); dropping it releases in the background.
#[derive(Debug)]
pub struct LockGuard {
    store: Store,
    name: String,
    token: i64,
    /// Released explicitly: nothing left for Drop to do.
    released: bool,
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token of this tenure (larger than any earlier holder's).
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Extend to `ttl` from now; false when the lock was lost (expired).
    pub async fn extend(&self, ttl: Duration) -> Result<bool> {
        self.store.lock_extend(&self.name, self.token, ttl).await
    }

    /// Release now; false when the lock was lost before (expired, maybe taken since).
    pub async fn release(mut self) -> Result<bool> {
        self.released = true;
        self.store.lock_release(&self.name, self.token).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, name, token) = (self.store.clone(), self.name.clone(), self.token);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = store.lock_release(&name, token).await;
            });
        }
    }
}
