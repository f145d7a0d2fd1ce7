//! A LISTEN connection that survives server restarts, killed backends and silently dead TCP
//! connections. Whenever notifications may have been missed, consumers get
//! [`ListenEvent::Reconnected`] and must re-check the database themselves.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Store;

/// What the listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// A notification on one of the channels.
    Notification {
        /// The channel.
        channel: String,
        /// The payload.
        payload: String,
    },
    /// The connection was (re-)established: anything sent meanwhile was missed.
    Reconnected,
}

/// Without any notification for this long, the listener sends itself a ping.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(15);
/// A ping not echoed within this long means the connection is dead: reconnect.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Listen on `channels` (plus the control channel, for its own pings) until `shutdown`,
/// calling `on_event` for every event. Runs as a spawned task.
pub fn spawn_listener<F>(
    store: Store,
    channels: Vec<String>,
    shutdown: CancellationToken,
    on_event: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(ListenEvent) + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let me = Uuid::new_v4();
        let control = store.schema().control_channel();
        let ping_payload = format!("ping:{me}");
        let mut all = channels.clone();
        if !all.contains(&control) {
            all.push(control.clone());
        }
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(store.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listener: cannot connect; retrying in {backoff:?}");
                    tokio::select! { _ = shutdown.cancelled() => return, _ = sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(e) = listener.listen_all(all.iter().map(String::as_str)).await {
                tracing::warn!(error = %e, "listener: LISTEN failed; retrying in {backoff:?}");
                tokio::select! { _ = shutdown.cancelled() => return, _ = sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            backoff = Duration::from_millis(100);
            tracing::debug!(channels = ?all, "listener: listening");
            on_event(ListenEvent::Reconnected);

            let mut last_heard = Instant::now();
            let mut ping_deadline: Option<Instant> = None;
            loop {
                let idle_check = last_heard + IDLE_BEFORE_PING;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(n)) => {
                            last_heard = Instant::now();
                            ping_deadline = None;
                            if n.channel() == control && n.payload() == ping_payload {
                                continue;
                            }
                            on_event(ListenEvent::Notification {
                                channel: n.channel().to_string(),
                                payload: n.payload().to_string(),
                            });
                        }
                        Ok(None) => {
                            // sqlx reconnected underneath us (and re-issued LISTEN).
                            tracing::info!("listener: connection lost and re-established");
                            last_heard = Instant::now();
                            ping_deadline = None;
                            on_event(ListenEvent::Reconnected);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listener: connection failed; reconnecting");
                            break;
                        }
                    },
                    _ = sleep_until(idle_check), if ping_deadline.is_none() => {
                        // Quiet for a while: make sure the connection still delivers.
                        if let Err(e) = store.notify(&control, &ping_payload).await {
                            tracing::debug!(error = %e, "listener: ping not sent");
                        }
                        ping_deadline = Some(Instant::now() + PING_TIMEOUT);
                    }
                    _ = sleep_until(ping_deadline.unwrap_or_else(Instant::now)), if ping_deadline.is_some() => {
                        tracing::warn!("listener: ping not echoed within {PING_TIMEOUT:?}; reconnecting");
                        break;
                    }
                }
            }
            drop(listener);
            tokio::select! { _ = shutdown.cancelled() => return, _ = sleep(backoff) => {} }
        }
    })
}

/// Notifications shared by every holder of a store: one LISTEN connection, fanned out. Stops
/// listening when the last store clone is dropped.
pub struct Hub {
    tx: tokio::sync::broadcast::Sender<String>,
    stop: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Store {
    /// Names of released locks as they are released (an empty name after a reconnection:
    /// anything may have been missed). Subscribe before checking, so nothing is missed between.
    pub fn lock_events(&self) -> tokio::sync::broadcast::Receiver<String> {
        let hub = self.hub.get_or_init(|| {
            let (tx, _) = tokio::sync::broadcast::channel(1024);
            let stop = CancellationToken::new();
            let channel = self.schema().locks_channel();
            let sender = tx.clone();
            // The listener gets a store of its own (no hub), so it does not keep this one alive.
            let own = self.with_pool(self.pool().clone());
            spawn_listener(
                own,
                vec![channel.clone()],
                stop.clone(),
                move |ev| match ev {
                    ListenEvent::Notification {
                        channel: c,
                        payload,
                    } if c == channel => {
                        let _ = sender.send(payload);
                    }
                    ListenEvent::Reconnected => {
                        let _ = sender.send(String::new());
                    }
                    ListenEvent::Notification { .. } => {}
                },
            );
            Hub { tx, stop }
        });
        hub.tx.subscribe()
    }
}
