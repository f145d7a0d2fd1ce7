//! Statements used only by `celeriac bench` (always on its own scratch schema).

use chrono::{DateTime, Utc};

use super::Store;
use crate::error::Result;

impl Store {
    /// Create the scratch table for raw reference measures.
    pub async fn bench_setup(&self) -> Result<()> {
        sqlx::raw_sql(&self.sql.bench_setup)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// One bare INSERT, committed.
    pub async fn bench_raw_insert(&self) -> Result<()> {
        sqlx::query(&self.sql.bench_raw_insert)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Refill the scratch table with `rows` rows.
    pub async fn bench_raw_fill(&self, rows: i32) -> Result<()> {
        sqlx::query(&self.sql.bench_raw_fill)
            .bind(rows)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Claim-and-delete 100 scratch rows; returns how many went.
    pub async fn bench_raw_claim_delete(&self) -> Result<u64> {
        Ok(sqlx::query(&self.sql.bench_raw_claim_delete)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// VACUUM ANALYZE the measured tables.
    pub async fn bench_analyze(&self) -> Result<()> {
        sqlx::raw_sql(&self.sql.bench_analyze)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether `queue` has unfinished tasks.
    pub async fn bench_progress(&self, queue: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(&self.sql.bench_progress)
            .bind(queue)
            .fetch_one(self.pool())
            .await?)
    }

    /// (finished, first start, last finish) of queue `queue`.
    pub async fn bench_window(
        &self,
        queue: &str,
    ) -> Result<(i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        Ok(sqlx::query_as(&self.sql.bench_window)
            .bind(queue)
            .fetch_one(self.pool())
            .await?)
    }

    /// Drop the whole (bench) schema.
    pub async fn bench_teardown(&self) -> Result<()> {
        sqlx::raw_sql(&self.sql.bench_teardown)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
