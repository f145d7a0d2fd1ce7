//! The claim loop. It sleeps until something may be claimable, then claims at most as many
//! tasks as it has free slots, in one statement, and hands them to the executor.
//!
//! Wake-ups: a NOTIFY for one of its queues (coalesced: many notifications while busy lead to
//! one claim), a freed slot when the last claim was full, the earliest ETA/retry of its
//! queues, and a jittered poll as a fallback for lost notifications (PgBouncer, restarts).

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{Shared, executor};

/// Most rows staged (made ready) by one statement.
const STAGE_CHUNK: usize = 1000;
/// Under load (the last claim was full), wait up to this long for half the slots to free up,
/// so claims stay large instead of one statement per freed slot.
const REFILL_WAIT: Duration = Duration::from_millis(2);

pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = &shared.config;
    let mut queues = cfg.queues.clone();
    // Start by looking: there may be work already, and due ETAs to stage.
    let mut claim_now = true;
    let mut next_due: Option<Instant> = Some(Instant::now());
    let mut next_poll = Instant::now() + jittered(cfg.poll_interval);
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;

    loop {
        if !claim_now {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = shared.wake.notified() => {}
                _ = sleep_until(next_poll) => {}
                _ = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let under_load = claim_now;
        claim_now = false;

        // Wait for a free slot (a full worker claims nothing); under load, for half of them
        // (briefly), so each claim statement carries a useful batch.
        let mut free = cfg.concurrency.saturating_sub(shared.running_count());
        while free == 0 {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = shared.slot_freed.notified() => {}
            }
            free = cfg.concurrency.saturating_sub(shared.running_count());
        }
        if under_load {
            let enough = (cfg.concurrency / 2).clamp(1, cfg.claim_batch);
            let until = Instant::now() + REFILL_WAIT;
            while free < enough {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = shared.slot_freed.notified() => {}
                    _ = sleep_until(until) => break,
                }
                free = cfg.concurrency.saturating_sub(shared.running_count());
            }
        }

        let now = Instant::now();
        if next_due.is_some_and(|d| d <= now) {
            next_due = None;
            match stage_all(&shared, &queues).await {
                Ok(()) => {}
                Err(e) => {
                    failed(&e, &mut failing, "staging due tasks");
                    next_due = Some(Instant::now() + backoff);
                }
            }
        }

        let want = free.min(cfg.claim_batch);
        let t0 = std::time::Instant::now();
        let claimed = match shared
            .claim_store
            .task_claim(&queues, want, shared.id)
            .await
        {
            Ok(rows) => {
                if failing {
                    tracing::info!("claiming works again");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                rows
            }
            Err(e) => {
                failed(&e, &mut failing, "claiming");
                next_poll = Instant::now() + backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let got = claimed.len();
        tracing::trace!(
            want,
            got,
            ms = t0.elapsed().as_secs_f64() * 1000.0,
            "claimed"
        );
        for row in claimed {
            executor::start(&shared, row);
        }
        // Rotate the queue order so one busy queue cannot starve the others.
        if queues.len() > 1 {
            queues.rotate_left(1);
        }

        next_poll = Instant::now() + jittered(cfg.poll_interval);
        if got == want {
            // Probably more where these came from: go again as soon as a slot is free.
            claim_now = true;
        } else {
            // Drained: sleep until the earliest waiting task is due (or a wake-up).
            match shared.store.task_next_due(&queues).await {
                Ok(Some(wait)) => {
                    let at = Instant::now() + wait;
                    next_due = Some(next_due.map_or(at, |d| d.min(at)));
                }
                Ok(None) => {}
                Err(e) => failed(&e, &mut failing, "looking up the next due task"),
            }
        }
    }
}

/// Stage every due waiting task of `queues`.
async fn stage_all(shared: &Shared, queues: &[String]) -> crate::Result<()> {
    loop {
        let n = shared.store.task_stage_due(queues, STAGE_CHUNK).await?;
        if n < STAGE_CHUNK as u64 {
            return Ok(());
        }
    }
}

fn failed(e: &crate::Error, failing: &mut bool, what: &str) {
    if !*failing {
        tracing::warn!(error = %e, "{what} failed; retrying with backoff");
        *failing = true;
    } else {
        tracing::debug!(error = %e, "{what} failed again");
    }
}

/// `d` ± 20 %, so many workers do not poll in lockstep.
fn jittered(d: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.8..1.2);
    d.mul_f64(f)
}
